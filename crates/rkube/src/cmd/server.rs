//! `rkube server`: the control plane and a node in one process.

use std::path::PathBuf;

/// Flags of `rkube server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where state, certificates and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,
    /// The port of the Kubernetes API (HTTPS).
    #[arg(long, default_value_t = 6443)]
    pub https_port: u16,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "rkube server is not built yet (data dir {:?})",
        args.data_dir
    )
}
