//! `rkube sim-nodes add`: registers simulated nodes in a running cluster (through its
//! kubeconfig) and keeps them alive until interrupted; they then go silent and the
//! control plane marks them Unknown, as it would real nodes that lost power.

use std::path::PathBuf;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rkube_simnode::{SimNodeConfig, SimNodes};

/// Flags of `rkube sim-nodes`.
#[derive(clap::Args, Debug)]
pub struct SimNodesArgs {
    #[command(subcommand)]
    command: SimNodesCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SimNodesCommand {
    /// Add simulated nodes to a running cluster; they live while this command runs.
    Add(AddArgs),
}

#[derive(clap::Args, Debug)]
struct AddArgs {
    /// How many nodes to add.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// The kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server URL, instead of the kubeconfig's.
    #[arg(long)]
    server: Option<String>,
    /// Node names are `<prefix><n>`, numbered after the existing ones.
    #[arg(long, default_value = "sim-")]
    name_prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value = "110")]
    pods: String,
}

pub fn run(args: SimNodesArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command {
        SimNodesCommand::Add(a) => rt.block_on(add(a)),
    }
}

fn kubeconfig_path(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").context("no --kubeconfig, $KUBECONFIG or $HOME")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

async fn add(args: AddArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let path = kubeconfig_path(args.kubeconfig)?;
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading the kubeconfig {}", path.display()))?;
    if let Some(server) = &args.server {
        config.cluster_url = server
            .parse()
            .with_context(|| format!("--server {server:?} is not a URL"))?;
    }
    let client = kube::Client::try_from(config).context("building the API client")?;
    let first_index = rkube_simnode::next_free_index(&client, &args.name_prefix).await?;
    let sim_config = SimNodeConfig {
        count: args.count,
        name_prefix: args.name_prefix.clone(),
        first_index,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        ..Default::default()
    };
    let first = sim_config.node_name(0);
    let last = sim_config.node_name(args.count - 1);
    let sim = SimNodes::start(client, sim_config).await?;
    println!(
        "{} simulated node(s) registered ({first} .. {last}); press Ctrl-C to stop them",
        sim.names().len()
    );
    super::server::shutdown_signal().await;
    Ok(())
}
