//! `rkube shim`: the per-container parent process. Internal: the runtime starts it.

use std::ffi::OsString;

/// Arguments of `rkube shim`, passed through to the runtime as they are.
#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// `run <container-dir>` or `exec <container-dir> <process.json> [--tty] [--resize <fifo>]`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub fn run(args: ShimArgs) -> anyhow::Result<()> {
    // Runs before any thread or async runtime exists, as libcontainer requires.
    std::process::exit(rkube_runtime::shim::main(args.args))
}
