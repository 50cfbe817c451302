//! The node agent: everything a node runs, started in the order each part needs —
//! the runtime, the Node object (status and Lease heartbeats from then on), the
//! service proxy, then, once the control plane gave the node a podCIDR, the pod
//! network, the cluster DNS on its Service IP, host-gw routes to other nodes, and the
//! kubelet's pod workers. `rkube server` runs it beside the control plane;
//! `rkube agent` runs it alone against a remote API server: it only ever talks to
//! the API through its `kube::Client`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use rkube_net::{ClusterDns, DnsConfig, PodNetwork, PodNetworkConfig, ProxyConfig, ServiceProxy};
use rkube_runtime::{OciRuntime, Runtime, RuntimeConfig};
use tokio::sync::watch;

use crate::config::KubeletConfig;
use crate::dns::NodeDns;
use crate::events::EventRecorder;
use crate::images::ImageManager;
use crate::kubelet::{Ctx, Kubelet};
use crate::lookup::PodLookup;
use crate::node::{self, NodeState, capacity};
use crate::objects::ClusterObjects;
use crate::pod_registry::PodRegistry;
use crate::probes::ProbeResults;
use crate::status_manager::StatusManager;
use crate::volumes::VolumeManager;

/// Why the node agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The container runtime could not open its state.
    #[error("container runtime: {0}")]
    Runtime(#[from] rkube_runtime::RuntimeError),
    /// Registering the Node failed.
    #[error(transparent)]
    Node(#[from] node::NodeError),
    /// The pod network could not be set up.
    #[error(transparent)]
    Network(#[from] rkube_net::pod_network::PodNetworkError),
    /// The service proxy's settings are unusable.
    #[error(transparent)]
    Proxy(#[from] rkube_net::proxy::ProxyError),
    /// The cluster DNS could not start.
    #[error(transparent)]
    Dns(#[from] rkube_net::dns::DnsError),
    /// A directory could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Everything a node runs.
pub struct NodeAgent {
    client: Client,
    config: KubeletConfig,
    runtime: Arc<dyn Runtime>,
    registry: Arc<PodRegistry>,
}

impl NodeAgent {
    /// Opens the runtime; nothing runs until [`NodeAgent::run`].
    pub fn new(
        client: Client,
        config: KubeletConfig,
        runtime: RuntimeConfig,
    ) -> Result<Self, AgentError> {
        for d in [&config.root_dir, &config.pod_log_dir] {
            std::fs::create_dir_all(d).map_err(|source| AgentError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let runtime: Arc<dyn Runtime> = Arc::new(OciRuntime::new(runtime)?);
        Ok(NodeAgent {
            client,
            config,
            runtime,
            registry: Arc::default(),
        })
    }

    /// The kubelet port the Node advertises (where its streaming server listens).
    pub fn with_kubelet_port(mut self, port: u16) -> Self {
        self.config.kubelet_port = port;
        self
    }

    /// The node's API client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Where the streaming server finds this node's pods.
    pub fn lookup(&self) -> Arc<dyn PodLookup> {
        self.registry.clone()
    }

    /// The container runtime (exec, attach and logs of the streaming server).
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    /// Runs the node until the process ends. Returns only if a part cannot start.
    pub async fn run(self) -> Result<(), AgentError> {
        let cfg = self.config.clone();
        let client = self.client.clone();
        let resources = capacity::resources(
            &cfg.root_dir,
            cfg.eviction_memory_available,
            cfg.eviction_nodefs_available_percent,
        );
        let (network_ready, network_ready_rx) = watch::channel(false);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| cfg.node_name.clone());
        let state = Arc::new(NodeState {
            config: cfg.clone(),
            resources: resources.clone(),
            identity: capacity::identity(),
            hostname,
            network_ready: network_ready_rx,
        });
        // The API may still be coming up (an agent joining): retry registration.
        let mut delay = Duration::from_millis(100);
        loop {
            match node::register(&client, &state, self.runtime.as_ref()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "node registration failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(7));
                }
            }
        }
        tracing::info!(node = %cfg.node_name, "node registered");
        tokio::spawn(node::report_status(
            client.clone(),
            state.clone(),
            self.runtime.clone(),
        ));
        tokio::spawn(node::lease::run(
            client.clone(),
            cfg.node_name.clone(),
            cfg.node_lease_duration,
        ));

        if let Some(ip) = cfg.cluster_dns.first()
            && let Err(e) = rkube_net::k8s::ensure_dns_service(&client, *ip).await
        {
            tracing::warn!(error = %e, "creating the kube-dns Service failed");
        }

        // Services work on the node whatever its pods do.
        let mut proxy_cfg = ProxyConfig::new(&cfg.node_name);
        proxy_cfg.table = cfg.proxy_table();
        proxy_cfg.cluster_cidr = cfg.cluster_cidr;
        proxy_cfg.service_cidr = cfg.service_cidr;
        proxy_cfg.localhost_nodeports = cfg.localhost_nodeports;
        proxy_cfg.node_local_ips = cfg.cluster_dns.clone();
        let proxy = ServiceProxy::new(proxy_cfg)?;
        tokio::spawn(rkube_net::k8s::run_service_proxy(client.clone(), proxy));

        let pod_cidr = node::wait_for_pod_cidr(&client, &cfg.node_name).await?;
        let mut net_cfg = PodNetworkConfig::new(pod_cidr, &cfg.root_dir);
        net_cfg.bridge = cfg.bridge_name.clone();
        net_cfg.cluster_cidr = cfg.cluster_cidr;
        net_cfg.service_cidr = cfg.service_cidr;
        net_cfg.local_service_ips = cfg.cluster_dns.clone();
        net_cfg.nft_table = cfg.podnet_table();
        net_cfg.egress = cfg.pod_egress;
        let network = Arc::new(PodNetwork::new(net_cfg).await?);
        tracing::info!(%pod_cidr, bridge = %cfg.bridge_name, "pod network ready");
        let _ = network_ready.send(true);

        // The DNS IP is on the bridge now, so the DNS can bind it.
        let exclude: Vec<IpAddr> = cfg.cluster_dns.iter().map(|ip| IpAddr::V4(*ip)).collect();
        let upstreams = rkube_net::resolv_conf::nameservers(
            &std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default(),
            &exclude,
        );
        let mut dns_cfg = DnsConfig::new(upstreams);
        dns_cfg.domain = cfg.cluster_domain.clone();
        dns_cfg.listen = cfg
            .cluster_dns
            .iter()
            .map(|ip| SocketAddr::new(IpAddr::V4(*ip), 53))
            .collect();
        dns_cfg.reverse_cidrs = vec![cfg.cluster_cidr, cfg.service_cidr];
        let dns = ClusterDns::new(dns_cfg)?;
        let dns_server = dns.serve().await?;
        tokio::spawn(rkube_net::k8s::run_cluster_dns(client.clone(), dns));
        tokio::spawn(rkube_net::k8s::run_node_routes(
            client.clone(),
            network.clone(),
            cfg.node_name.clone(),
        ));

        let (objects, drive) = ClusterObjects::start(client.clone());
        tokio::spawn(drive);
        let host_resolv = std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default();
        let ctx = Ctx {
            images: ImageManager::new(self.runtime.clone()),
            volumes: VolumeManager::new(
                cfg.root_dir.clone(),
                objects.clone(),
                resources.allocatable_memory,
            ),
            objects,
            probes: Arc::new(ProbeResults::default()),
            status: StatusManager::new(client.clone()),
            events: EventRecorder::new(client.clone(), &cfg.node_name),
            registry: self.registry.clone(),
            resources,
            dns: NodeDns {
                cluster_dns: cfg.cluster_dns.clone(),
                cluster_domain: cfg.cluster_domain.clone(),
                host_resolv_conf: host_resolv,
            },
            network,
            runtime: self.runtime.clone(),
            client,
            config: cfg,
        };
        Kubelet::new(ctx).run().await;
        drop(dns_server);
        Ok(())
    }
}
