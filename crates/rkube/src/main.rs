//! The `rkube` binary: parses the command line and hands over to one subcommand.

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

/// jemalloc instead of glibc's malloc: the control plane allocates and frees
/// many small JSON values per request, and glibc spent close to a third of the
/// server's CPU on it under the scheduler benchmark (`rkube-bench scheduler`:
/// 365 vs 586 pods/s). See docs/architecture.md for the figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Kubernetes in one binary.
#[derive(Parser)]
#[command(name = "rkube", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control plane (and, unless disabled, a node) in this process.
    Server(Box<cmd::server::ServerArgs>),
    /// Simulated nodes (like kwok) for a running cluster.
    SimNodes(cmd::sim_nodes::SimNodesArgs),
    /// Manage the node's images: pull, import, list, remove.
    Image(cmd::image::ImageArgs),
    /// Internal: the parent process of one container (started by the runtime).
    #[command(hide = true)]
    Shim(cmd::shim::ShimArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => cmd::server::run(*args),
        Command::SimNodes(args) => cmd::sim_nodes::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Shim(args) => cmd::shim::run(args),
    }
}
