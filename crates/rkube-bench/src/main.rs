//! `rkube-bench`: benchmarks that start real `rkube server` processes and print
//! figures. Run after `cargo build --release --workspace --bins`:
//!
//! ```text
//! target/release/rkube-bench api
//! target/release/rkube-bench scheduler --nodes 1000 --pods 30000
//! target/release/rkube-bench pods          # as root: real containers on a node
//! ```

use clap::{Parser, Subcommand};

mod api;
mod pods;
mod process;
mod scheduler;
mod stats;

#[derive(Parser)]
#[command(name = "rkube-bench", about = "Benchmarks of rkube that print figures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API server: start-up time, idle memory, create throughput, LIST and watch fan-out.
    Api(api::Args),
    /// Scheduler on simulated nodes: pods scheduled per second, latency, server memory.
    Scheduler(scheduler::Args),
    /// A real node (root): pod startup latency, a Deployment becoming Ready, memory
    /// with pods running.
    Pods(pods::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Api(args) => rt.block_on(api::run(args)),
        Command::Scheduler(args) => rt.block_on(scheduler::run(args)),
        Command::Pods(args) => rt.block_on(pods::run(args)),
    }
}
