//! `rkube server`: the control plane and a node in one process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use rkube_apiserver::pki::{self, Pki};
use rkube_apiserver::{ApiServer, Config};

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
    /// Terminated pods kept before the oldest are deleted (0: keep them all).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
}

/// The host's IPv4 addresses other than loopback, from the kernel's routing trie.
fn host_ipv4_addresses() -> Vec<Ipv4Addr> {
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']).trim();
        if let Ok(ip) = t.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
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
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {:?}", args.data_dir))?;
    let service_cidr: rkube_api::cidr::Ipv4Cidr = args
        .service_cidr
        .parse()
        .with_context(|| format!("--service-cidr {:?}", args.service_cidr))?;
    let node_port_range = parse_port_range(&args.service_node_port_range)?;
    let authorization_modes = rkube_apiserver::authz::Mode::parse_list(&args.authorization_mode)
        .map_err(|e| anyhow::anyhow!("--authorization-mode: {e}"))?;
    let host_ips = host_ipv4_addresses();
    let node_ip = args
        .node_ip
        .or_else(|| host_ips.first().copied())
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

    let config = Config {
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
    let controllers = start_controllers(&api, &args, &pki.ca.cert_pem)?;
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
    tokio::select! {
        _ = serving => anyhow::bail!("the API listener stopped"),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            controllers.shutdown().await;
            Ok(())
        }
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
    let client = kube::Client::new(api.local_service(user), "default");
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

async fn shutdown_signal() {
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
    fn port_ranges() {
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("3").is_err());
        assert!(parse_port_range("5-3").is_err());
    }
}
