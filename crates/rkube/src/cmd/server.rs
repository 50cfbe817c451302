//! `rkube server`: the control plane and a node in one process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::pki::{self, Pki};
use rkube_apiserver::server::KUBE_VERSION;
use rkube_apiserver::{ApiServer, Config};
use rkube_scheduler::leader_election::{self, LeaderElectionConfig, run_elected};
use rkube_scheduler::node_ipam::{self, NodeIpamConfig};
use rkube_scheduler::node_lifecycle::{self, NodeLifecycleConfig};
use rkube_simnode::{SimNodeConfig, SimNodes};

/// Flags of `rkube server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where state, certificates and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,
    /// The port of the Kubernetes API (HTTPS).
    #[arg(long, default_value_t = 6443)]
    pub https_port: u16,
    /// The address the API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The node's IP (default: the first non-loopback IPv4 address of the host).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// The range of ClusterIPs.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// The range of NodePorts.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// The datastore: `sqlite` (`<data-dir>/state.db`) or `memory` (lost on exit).
    #[arg(long, default_value = "sqlite")]
    pub datastore: String,
    /// Extra names for the serving certificate.
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// Authorizers, in order: RBAC, AlwaysAllow (everyone may do anything, as
    /// upstream's test servers), AlwaysDeny.
    #[arg(long, default_value = "RBAC")]
    pub authorization_mode: String,
    /// Controllers to run, as kube-controller-manager's flag: `*` for all, `name` to
    /// enable one, `-name` to disable one (e.g. `*,-garbage-collector`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// The range of pod IPs; each node gets a subnet of it.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The prefix length of each node's pod subnet.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Do not run the scheduler in this server.
    #[arg(long)]
    pub disable_scheduler: bool,
    /// How long a node may go without a heartbeat before it is marked Unknown and its
    /// pods start to be evicted (e.g. `40s`, `2m`).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// Register this many simulated nodes (`sim-0`, ...), like kwok: pods bound to
    /// them are Running at once, without containers.
    #[arg(long, default_value_t = 0)]
    pub simulated_nodes: usize,
    /// CPU capacity of each simulated node.
    #[arg(long, default_value = "32")]
    pub simulated_node_cpu: String,
    /// Memory capacity of each simulated node.
    #[arg(long, default_value = "256Gi")]
    pub simulated_node_memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long, default_value = "110")]
    pub simulated_node_pods: String,
    /// Terminated pods kept before the oldest are deleted (0: keep them all).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Flags of the node this server runs (unless `--disable-agent`).
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Run the control plane only: no node (no containers, pod network, service
    /// proxy or cluster DNS) in this process.
    #[arg(long)]
    pub disable_agent: bool,
    /// The Node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The cluster DNS Service IP (default: the tenth address of --service-cidr).
    #[arg(long)]
    pub cluster_dns: Option<Ipv4Addr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The resolv.conf whose nameservers the cluster DNS forwards other names to,
    /// and which `dnsPolicy: Default` pods get.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Mirrors, credentials and insecure registries (k3s's registries.yaml shape).
    #[arg(long, default_value = "/etc/rkube/registries.yaml")]
    pub registries: PathBuf,
    /// The bridge pods attach to.
    #[arg(long, default_value = "rkube0")]
    pub pod_bridge: String,
    /// Prefix of the node's nftables tables (`<prefix>-podnet`, `<prefix>-proxy`).
    #[arg(long, default_value = "rkube")]
    pub nftables_prefix: String,
    /// The containers' runtime state (on a tmpfs: it goes at reboot, as they do).
    #[arg(long, default_value = "/run/rkube")]
    pub run_dir: PathBuf,
    /// The cgroup that holds every container's cgroup.
    #[arg(long, default_value = "/rkube")]
    pub cgroup_root: String,
    /// Where container logs are written.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// Pods connect only to pods, Services and this node, never out of the cluster.
    #[arg(long)]
    pub disable_pod_egress: bool,
    /// The kubelet's HTTPS port (logs, exec, attach, port-forward); 0 picks a free one.
    #[arg(long, default_value_t = rkube_kubelet::streaming::DEFAULT_PORT)]
    pub kubelet_port: u16,
}

/// A duration flag: `40s`, `500ms`, `2m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 40s or 2m: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

/// A client of the API server inside this process, as `user` (an administrator).
fn local_client(api: &Arc<ApiServer>, user: &str) -> kube::Client {
    kube::Client::new(
        api.local_service(UserInfo::new(user, &["system:masters"])),
        "default",
    )
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("--service-node-port-range {s:?}: expected FROM-TO"))?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "--service-node-port-range {s:?}: FROM is above TO");
    Ok((a, b))
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args, started))
}

async fn serve(args: ServerArgs, started: Instant) -> anyhow::Result<()> {
    let service_cidr: rkube_api::cidr::Ipv4Cidr = args
        .service_cidr
        .parse()
        .with_context(|| format!("--service-cidr {:?}", args.service_cidr))?;
    let node_port_range = parse_port_range(&args.service_node_port_range)?;
    let cluster_cidr: rkube_api::cidr::Ipv4Cidr = args
        .cluster_cidr
        .parse()
        .with_context(|| format!("--cluster-cidr {:?}", args.cluster_cidr))?;
    let ipam = NodeIpamConfig::new(cluster_cidr, args.node_cidr_mask_size)?;
    let subnets = 1u64 << (args.node_cidr_mask_size - cluster_cidr.prefix()).min(63);
    anyhow::ensure!(
        args.simulated_nodes as u64 <= subnets,
        "--simulated-nodes {} needs a pod subnet per node, but --cluster-cidr {cluster_cidr} holds {subnets} /{} subnets: \
         use a larger --cluster-cidr (e.g. 10.64.0.0/14 holds 1024) or a longer --node-cidr-mask-size",
        args.simulated_nodes,
        args.node_cidr_mask_size
    );
    let sim_config = SimNodeConfig {
        count: args.simulated_nodes,
        cpu: args.simulated_node_cpu.clone(),
        memory: args.simulated_node_memory.clone(),
        pods: args.simulated_node_pods.clone(),
        ..Default::default()
    };
    sim_config.validate()?;
    let authorization_modes = rkube_apiserver::authz::Mode::parse_list(&args.authorization_mode)
        .map_err(|e| anyhow::anyhow!("--authorization-mode: {e}"))?;
    // Flags are checked before anything is written.
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {:?}", args.data_dir))?;
    let host_ips = rkube_kubelet::node::address::host_ipv4_addresses();
    // Not an address of a pod bridge (this node's, once it has run, or another's).
    let node_ip = args
        .node_ip
        .or_else(|| {
            let exclude = [&args.cluster_cidr, &args.service_cidr].map(|c| c.parse().ok());
            let exclude: Vec<rkube_net::Ipv4Cidr> = exclude.into_iter().flatten().collect();
            rkube_kubelet::node::address::default_node_ip(&exclude)
        })
        .unwrap_or(Ipv4Addr::LOCALHOST);

    let store: Arc<dyn rkube_store::Store> = match args.datastore.as_str() {
        // The API server's watch cache holds every object already; the store need not
        // keep a second copy of the latest values in memory.
        "sqlite" => Arc::new(
            rkube_store::sqlite::SqliteStore::open_with(
                args.data_dir.join("state.db"),
                rkube_store::sqlite::SqliteOptions {
                    latest_in_memory: false,
                    ..Default::default()
                },
            )
            .context("opening the datastore")?,
        ),
        "memory" => Arc::new(rkube_store::memory::MemoryStore::new()),
        other => anyhow::bail!("--datastore {other:?}: expected sqlite or memory"),
    };

    // Certificates and the admin kubeconfig.
    let tls_dir = args.data_dir.join("tls");
    let pki = Pki::load_or_create(&tls_dir).context("loading the cluster CA")?;
    let kubernetes_ip = service_cidr.nth(1);
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(h.trim().to_string());
    }
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(kubernetes_ip),
        IpAddr::V4(node_ip),
    ];
    for extra in &args.tls_san {
        match extra.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => names.push(extra.clone()),
        }
    }
    ips.extend(host_ips.iter().map(|ip| IpAddr::V4(*ip)));
    ips.sort();
    ips.dedup();
    let fingerprint = format!("{names:?}{ips:?}");
    let serving = pki
        .load_or_issue("serving-kube-apiserver", &fingerprint, |p| {
            p.issue_server("kube-apiserver", &names, &ips)
        })
        .context("issuing the serving certificate")?;
    let admin = pki
        .load_or_issue("client-admin", "system:admin/system:masters", |p| {
            p.issue_client("system:admin", &["system:masters"])
        })
        .context("issuing the admin certificate")?;
    let kubeconfig = args.data_dir.join("admin.kubeconfig");
    let server_url = format!("https://127.0.0.1:{}", args.https_port);
    pki::write_kubeconfig(&kubeconfig, &server_url, &pki.ca.cert_pem, &admin, "admin")
        .context("writing the admin kubeconfig")?;

    let kubelet_client = rkube_apiserver::kubelet::KubeletClientConfig {
        ca_pem: pki.ca.cert_pem.clone(),
        client: pki
            .kubelet_client()
            .context("issuing the kubelet client certificate")?,
    };
    let config = Config {
        kubelet_client: Some(kubelet_client),
        service_cidr,
        node_port_range,
        advertise_address: format!("{node_ip}:{}", args.https_port),
        service_account_key_dir: Some(tls_dir.clone()),
        authorization_modes,
        ..Config::default()
    };
    let api = ApiServer::new(config, store)
        .await
        .map_err(|e| anyhow::anyhow!("starting the API server: {e}"))?;
    // The control-plane components run on threads of their own, as upstream runs
    // them in processes of their own (see `OwnRuntime`).
    let manager_rt = OwnRuntime::start("kube-controller-manager")?;
    let scheduler_rt = match args.disable_scheduler {
        true => None,
        false => Some(OwnRuntime::start("kube-scheduler")?),
    };
    let controllers = {
        let _in = manager_rt.handle.enter();
        start_controllers(&api, &args, &pki.ca.cert_pem)?
    };
    let tls = rkube_apiserver::serve::server_config(&serving, &pki.ca.cert_pem)?;
    let addr = SocketAddr::new(args.bind_address, args.https_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(
        "rkube server ready in {:?}: API at https://{addr}",
        started.elapsed()
    );
    println!("export KUBECONFIG={}", kubeconfig.display());
    let serving = tokio::spawn(rkube_apiserver::serve::serve_https(
        api.clone(),
        listener,
        tls,
    ));

    let agent = if args.agent.disable_agent {
        None
    } else {
        let (agent, config) = node_agent(&api, &args, service_cidr, cluster_cidr, node_ip)?;
        let streaming = kubelet_server(&pki, &agent, &config, &host_ips).await?;
        let agent = agent.with_kubelet_port(streaming.local_addr().port());
        tokio::spawn(streaming.run());
        tracing::info!(node = %config.node_name, ip = %node_ip, "starting the node agent");
        Some(tokio::spawn(agent.run()))
    };
    let agent_stopped = async {
        match agent {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };

    // The control-plane components, each a client of the API, each elected so that
    // servers sharing a datastore run one of each.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let identity = leader_election::default_identity();
    let mut components = Vec::new();
    if let Some(rt) = &scheduler_rt {
        let _in = rt.handle.enter();
        let client = local_client(&api, "system:kube-scheduler");
        let config = rkube_scheduler::SchedulerConfig {
            identity: identity.clone(),
            ..Default::default()
        };
        let election =
            LeaderElectionConfig::new("kube-system", rkube_scheduler::SCHEDULER_LEASE, &identity);
        components.push(tokio::spawn(run_elected(
            client.clone(),
            election,
            stopped.clone(),
            move || rkube_scheduler::run(client.clone(), config.clone()),
        )));
    }
    // Node IPAM and node lifecycle belong to the controller manager.
    {
        let _in = manager_rt.handle.enter();
        let client = local_client(&api, "system:kube-controller-manager");
        let lifecycle = NodeLifecycleConfig {
            monitor_period: args.node_monitor_period,
            grace_period: args.node_monitor_grace_period,
        };
        let election = LeaderElectionConfig::new(
            "kube-system",
            rkube_scheduler::NODE_CONTROLLER_LEASE,
            &identity,
        );
        components.push(tokio::spawn(run_elected(
            client.clone(),
            election,
            stopped.clone(),
            move || {
                let (client, lifecycle) = (client.clone(), lifecycle.clone());
                async move {
                    tokio::join!(
                        node_ipam::run(client.clone(), ipam),
                        node_lifecycle::run(client, lifecycle)
                    );
                }
            },
        )));
    }
    let _simulated = if sim_config.count > 0 {
        // Simulated nodes stand for other machines: a thread of their own, too.
        let sim_rt = OwnRuntime::start("simulated-nodes")?;
        let api = api.clone();
        let sim = sim_rt
            .handle
            .spawn(async move {
                SimNodes::start(local_client(&api, "system:node:simulated"), sim_config).await
            })
            .await
            .context("the simulated nodes' start-up task failed")?
            .context("starting simulated nodes")?;
        tracing::info!("{} simulated nodes registered", args.simulated_nodes);
        // The nodes stop (dropped first) before their runtime does.
        Some((sim, sim_rt))
    } else {
        None
    };

    tokio::select! {
        _ = serving => anyhow::bail!("the API listener stopped"),
        res = agent_stopped => match res {
            Ok(Err(e)) => anyhow::bail!("the node agent stopped: {e}"),
            _ => anyhow::bail!("the node agent stopped"),
        },
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            // Components release their leases so another server takes over at once.
            let _ = stop.send(true);
            controllers.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(components)).await;
            Ok(())
        }
    }
}

/// A thread with an async runtime of its own, for one control-plane component; the
/// runtime stops when this is dropped.
///
/// A component's in-process API calls run on its thread, so the kernel shares the
/// CPUs between the components and the API server's other callers, as between
/// upstream's processes. On one shared runtime the scheduler's loop was one task
/// among hundreds of controller and node writes: under load it bound pods seconds
/// after they were created, and watches of outside clients fell as far behind.
struct OwnRuntime {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OwnRuntime {
    fn start(name: &str) -> anyhow::Result<OwnRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("starting the async runtime of {name}"))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                })
            })
            .with_context(|| format!("starting the thread of {name}"))?;
        Ok(OwnRuntime {
            handle,
            _stop: stop,
        })
    }
}

/// The controller manager, as an in-process client of the API server, standing for
/// the `kube-controller-manager` lease under an identity kept in the data dir (so a
/// restarted server takes its own lease back at once).
fn start_controllers(
    api: &std::sync::Arc<ApiServer>,
    args: &ServerArgs,
    ca_pem: &str,
) -> anyhow::Result<rkube_controllers::ControllerManager> {
    let id_file = args.data_dir.join("controller-manager.id");
    let id = match std::fs::read_to_string(&id_file) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&id_file, &id).with_context(|| format!("writing {id_file:?}"))?;
            id
        }
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "rkube".into());
    let user =
        rkube_apiserver::auth::UserInfo::new("system:kube-controller-manager", &["system:masters"]);
    let agent = format!("kube-controller-manager/{KUBE_VERSION} (linux/amd64) rkube");
    let client = kube::Client::new(api.local_service(user).with_user_agent(&agent), "default");
    let config = rkube_controllers::ControllerManagerConfig {
        controllers: args.controllers.clone(),
        leader_election: Some(
            rkube_controllers::leader_election::LeaderElectionConfig::controller_manager(format!(
                "{host}_{id}"
            )),
        ),
        root_ca_pem: Some(ca_pem.to_string()),
        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
        ..Default::default()
    };
    rkube_controllers::ControllerManager::start(client, config)
        .map_err(|e| anyhow::anyhow!("--controllers: {e}"))
}

/// The node of this server: the kubelet's settings from the flags, and the agent over
/// an in-process client with the node's identity.
fn node_agent(
    api: &Arc<ApiServer>,
    args: &ServerArgs,
    service_cidr: rkube_api::cidr::Ipv4Cidr,
    cluster_cidr: rkube_api::cidr::Ipv4Cidr,
    node_ip: Ipv4Addr,
) -> anyhow::Result<(rkube_kubelet::NodeAgent, rkube_kubelet::KubeletConfig)> {
    let a = &args.agent;
    let node_name = match &a.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name (or give --node-name)")?
            .trim()
            .to_lowercase(),
    };
    let problems = rkube_api::meta::validate_dns1123_subdomain(&node_name);
    anyhow::ensure!(
        problems.is_empty(),
        "node name {node_name:?} is not a valid Node name ({}): give --node-name",
        problems.join("; ")
    );
    let cluster_dns = a.cluster_dns.unwrap_or_else(|| service_cidr.nth(10));
    anyhow::ensure!(
        service_cidr.contains(cluster_dns),
        "--cluster-dns {cluster_dns} is not inside --service-cidr {service_cidr}"
    );
    let mut config =
        rkube_kubelet::KubeletConfig::new(&node_name, node_ip, args.data_dir.join("agent"));
    config.node_labels.insert(
        "node-role.kubernetes.io/control-plane".into(),
        "true".into(),
    );
    config.pod_log_dir = a.pod_log_dir.clone();
    config.cluster_dns = vec![cluster_dns];
    config.cluster_domain = a.cluster_domain.clone();
    config.cluster_cidr = cluster_cidr.to_string().parse()?;
    config.service_cidr = service_cidr.to_string().parse()?;
    config.bridge_name = a.pod_bridge.clone();
    config.nft_table_prefix = a.nftables_prefix.clone();
    config.resolv_conf = a.resolv_conf.clone();
    config.pod_egress = !a.disable_pod_egress;
    config.kubelet_port = a.kubelet_port;
    let mut runtime = rkube_runtime::RuntimeConfig::new(&args.data_dir);
    runtime.run_root = a.run_dir.clone();
    runtime.cgroup_parent = a.cgroup_root.clone();
    runtime.registries = rkube_runtime::image::registries::RegistriesConfig::load(&a.registries)?;
    let user = UserInfo::new(
        &format!("system:node:{node_name}"),
        &["system:nodes", "system:masters"],
    );
    let user_agent = format!(
        "kubelet/{} (linux/amd64) rkube",
        rkube_kubelet::KUBELET_VERSION
    );
    let client = kube::Client::new(
        api.local_service(user).with_user_agent(&user_agent),
        "default",
    );
    let agent = rkube_kubelet::NodeAgent::new(client, config.clone(), runtime)
        .context("starting the node agent")?;
    Ok((agent, config))
}

/// The node's kubelet port: logs, exec, attach and port-forward of its pods, for the
/// API server (its kubelet-client certificate) and for callers the API server
/// authenticates and authorizes (webhook mode, as upstream's kubelet).
async fn kubelet_server(
    pki: &Pki,
    agent: &rkube_kubelet::NodeAgent,
    config: &rkube_kubelet::KubeletConfig,
    host_ips: &[Ipv4Addr],
) -> anyhow::Result<rkube_kubelet::streaming::StreamingServer> {
    use rkube_kubelet::streaming::{ServingTls, StreamingConfig, StreamingServer};
    let node = &config.node_name;
    let mut ips: Vec<IpAddr> = vec![IpAddr::V4(config.node_ip), IpAddr::V4(Ipv4Addr::LOCALHOST)];
    ips.extend(host_ips.iter().map(|ip| IpAddr::V4(*ip)));
    ips.sort();
    ips.dedup();
    let cert = pki
        .kubelet_serving(node, &ips)
        .context("issuing the kubelet's serving certificate")?;
    let tls = ServingTls {
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        client_ca_pem: pki.ca.cert_pem.clone(),
    };
    let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.kubelet_port);
    // Callers' tokens are reviewed and their requests authorized as the node.
    let streaming = StreamingConfig::new(address, node, tls).webhook(agent.client());
    StreamingServer::bind(streaming, agent.lookup(), agent.runtime())
        .await
        .with_context(|| format!("serving the kubelet port {address}"))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("3").is_err());
        assert!(parse_port_range("5-3").is_err());
    }
}
