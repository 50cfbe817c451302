//! The service proxy: Services and their endpoints become one nftables table, in the
//! manner of kube-proxy's nftables mode.
//!
//! Each sync builds the wanted table from plain [`ServicePort`]s ([`rules`]) and loads
//! it in one `nft` transaction ([`transaction`]): the first sync replaces the whole
//! table, later ones rewrite only the chains and map elements that changed (so the
//! session-affinity sets of unchanged services keep their entries). [`ServiceProxy::run`]
//! coalesces updates and rate-limits syncs.

pub mod rules;
pub mod transaction;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cidr::Ipv4Cidr;
use crate::netns::Netns;
use crate::os::{
    Conntrack, ConntrackCommand, Nft, NftCommand, NftError, ProcSysctl, Sysctl, SysctlError,
    UdpFlows,
};
use rules::Ruleset;

/// A transport protocol a Service port can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The nftables name (`tcp`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint of a Service port, with its target port already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod address.
    pub ip: Ipv4Addr,
    /// The target port number.
    pub port: u16,
    /// Ready to take new connections.
    pub ready: bool,
    /// Serving (ready, terminating or not).
    pub serving: bool,
    /// The pod is terminating.
    pub terminating: bool,
    /// The node the endpoint runs on.
    pub node_name: Option<String>,
}

/// One port of one Service, with everything the proxy needs (kube-proxy's
/// "ServicePortName" plus its endpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePort {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (may be empty for a single-port Service).
    pub port_name: String,
    /// The protocol.
    pub protocol: Option<Protocol>,
    /// The ClusterIP (`None` for headless Services, which the proxy leaves alone).
    pub cluster_ip: Option<Ipv4Addr>,
    /// The Service port.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// ClientIP session affinity with this timeout (seconds).
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// The endpoints, ready or not.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// The protocol, TCP when unset.
    pub fn proto(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Tcp)
    }

    /// `namespace/name/protocol/port-name` (the port number when unnamed).
    pub fn key(&self) -> String {
        let port = if self.port_name.is_empty() {
            self.port.to_string()
        } else {
            self.port_name.clone()
        };
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.proto().as_str(),
            port
        )
    }
}

/// How the proxy works on this node.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The nftables table (family `ip`) the proxy owns (`rkube-proxy`).
    pub table: String,
    /// The cluster CIDR: traffic from outside it to a ClusterIP is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    /// The service CIDR: unknown addresses in it are dropped, not routed on.
    pub service_cidr: Ipv4Cidr,
    /// This node's name, to find its local endpoints.
    pub node_name: String,
    /// Addresses NodePorts answer on; empty means every local address.
    pub nodeport_ips: Vec<Ipv4Addr>,
    /// Also answer NodePorts on 127.0.0.1 (sets `route_localnet`, as kube-proxy does).
    pub localhost_nodeports: bool,
    /// Service IPs served by the node itself (the cluster DNS): left alone.
    pub node_local_ips: Vec<Ipv4Addr>,
    /// The least time between two syncs.
    pub min_sync_interval: Duration,
    /// The node's network namespace (the current one in production).
    pub netns: Netns,
}

impl ProxyConfig {
    /// The defaults for node `node_name`.
    pub fn new(node_name: &str) -> Self {
        Self {
            table: "rkube-proxy".into(),
            cluster_cidr: "10.42.0.0/16".parse().expect("valid"),
            service_cidr: "10.43.0.0/16".parse().expect("valid"),
            node_name: node_name.to_string(),
            nodeport_ips: Vec::new(),
            localhost_nodeports: true,
            node_local_ips: vec![Ipv4Addr::new(10, 43, 0, 10)],
            min_sync_interval: Duration::from_secs(1),
            netns: Netns::Current,
        }
    }
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is unusable; nothing was changed.
    #[error("proxy configuration: {0}")]
    Config(String),
    /// nft rejected the transaction; the table is as it was.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Setting a sysctl failed.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was replaced (first sync, or after a failure).
    pub full: bool,
    /// Service ports in the input.
    pub service_ports: usize,
    /// Chains written (created or rewritten).
    pub chains_written: usize,
    /// Size of the nft script.
    pub script_bytes: usize,
    /// Time spent, rendering and loading.
    pub duration: Duration,
}

/// The service proxy of one node.
pub struct ServiceProxy {
    config: ProxyConfig,
    nft: Arc<dyn Nft>,
    sysctl: Arc<dyn Sysctl>,
    conntrack: Arc<dyn Conntrack>,
    /// What the kernel has, as of the last successful sync; `None` forces a full sync.
    applied: Option<Ruleset>,
    sysctls_done: bool,
}

impl ServiceProxy {
    /// A proxy using the real `nft`, `/proc/sys` and `conntrack` in `config.netns`.
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyError> {
        let ns = config.netns.clone();
        Self::with_os(
            config,
            Arc::new(NftCommand::new(ns.clone())),
            Arc::new(ProcSysctl::new(ns.clone())),
            Arc::new(ConntrackCommand::new(ns)),
        )
    }

    /// A proxy over the given OS operations.
    pub fn with_os(
        config: ProxyConfig,
        nft: Arc<dyn Nft>,
        sysctl: Arc<dyn Sysctl>,
        conntrack: Arc<dyn Conntrack>,
    ) -> Result<Self, ProxyError> {
        if !crate::pod_network::valid_nft_name(&config.table) {
            return Err(ProxyError::Config(format!(
                "invalid nftables table name {:?}",
                config.table
            )));
        }
        if config.cluster_cidr.covers(&config.service_cidr)
            || config.service_cidr.covers(&config.cluster_cidr)
        {
            return Err(ProxyError::Config(format!(
                "service CIDR {} overlaps cluster CIDR {}",
                config.service_cidr, config.cluster_cidr
            )));
        }
        Ok(Self {
            config,
            nft,
            sysctl,
            conntrack,
            applied: None,
            sysctls_done: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Makes the table match `services`, in one transaction.
    pub async fn sync(&mut self, services: &[ServicePort]) -> Result<SyncStats, ProxyError> {
        let start = Instant::now();
        if !self.sysctls_done {
            if self.config.localhost_nodeports {
                // Lets 127.0.0.1:NodePort be DNATed to a pod; the table drops packets
                // to 127/8 from elsewhere that this would otherwise admit.
                self.sysctl.set("net.ipv4.conf.all.route_localnet", "1")?;
            }
            self.sysctl.set("net.ipv4.ip_forward", "1")?;
            self.sysctls_done = true;
        }
        let wanted = Ruleset::build_from(&self.config, services, self.applied.as_ref());
        let (script, chains_written) = match &self.applied {
            Some(old) => transaction::incremental(&self.config.table, old, &wanted),
            None => transaction::full(&self.config, &wanted),
        };
        let full = self.applied.is_none();
        // Until this succeeds the kernel state is unknown: a failure means the next
        // sync replaces the whole table.
        let previous = self.applied.take();
        if !script.is_empty() {
            self.nft.apply(&script).await?;
        }
        if let Some(old) = &previous {
            for flows in stale_udp_flows(old, &wanted) {
                if let Err(e) = self.conntrack.delete_udp(&flows).await {
                    tracing::warn!(error = %e, ?flows, "forgetting stale UDP flows failed");
                }
            }
        }
        self.applied = Some(wanted);
        Ok(SyncStats {
            full,
            service_ports: services.len(),
            chains_written,
            script_bytes: script.len(),
            duration: start.elapsed(),
        })
    }

    /// Syncs whenever `updates` changes, at most once per `min_sync_interval`; updates
    /// arriving meanwhile are coalesced into the next sync. A failed sync is retried
    /// (as a full one) after the interval. Returns when the sender is dropped.
    pub async fn run(mut self, mut updates: watch::Receiver<Arc<Vec<ServicePort>>>) {
        let mut retry = false;
        loop {
            if !retry && updates.changed().await.is_err() {
                return;
            }
            let services = updates.borrow_and_update().clone();
            let started = Instant::now();
            match self.sync(&services).await {
                Ok(stats) => {
                    retry = false;
                    tracing::debug!(?stats, "service proxy synced");
                }
                Err(e) => {
                    retry = true;
                    tracing::warn!(error = %e, "service proxy sync failed; retrying");
                }
            }
            let rest = self
                .config
                .min_sync_interval
                .saturating_sub(started.elapsed());
            tokio::time::sleep(rest).await;
        }
    }

    /// Deletes the proxy's table.
    pub async fn remove(&mut self) -> Result<(), ProxyError> {
        let t = &self.config.table;
        self.applied = None;
        self.nft
            .apply(&format!("add table ip {t}\ndelete table ip {t}\n"))
            .await?;
        Ok(())
    }
}

/// Endpoints a Service port sends new traffic to (ready, or serving-terminating when
/// none is ready).
fn usable_ips(sp: &ServicePort) -> std::collections::BTreeSet<Ipv4Addr> {
    let ready: std::collections::BTreeSet<_> = sp
        .endpoints
        .iter()
        .filter(|e| e.ready)
        .map(|e| e.ip)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    sp.endpoints
        .iter()
        .filter(|e| e.serving && e.terminating)
        .map(|e| e.ip)
        .collect()
}

/// UDP has no connection end: conntrack keeps sending a client's datagrams to an
/// endpoint that is gone, or keeps rejecting them after a Service got endpoints, until
/// the entry times out. As kube-proxy does, such entries are deleted after a sync.
fn stale_udp_flows(old: &Ruleset, new: &Ruleset) -> Vec<UdpFlows> {
    let mut out = std::collections::BTreeSet::new();
    for (key, of) in &old.fragments {
        let sp = &of.input;
        if sp.proto() != Protocol::Udp
            || new.fragments.get(key).is_some_and(|nf| Arc::ptr_eq(nf, of))
        {
            continue;
        }
        let new_sp = new.fragments.get(key).map(|nf| &nf.input);
        let before = usable_ips(sp);
        let after = new_sp.map(usable_ips).unwrap_or_default();
        let dsts: Vec<Ipv4Addr> = sp
            .cluster_ip
            .iter()
            .chain(&sp.external_ips)
            .chain(&sp.load_balancer_ips)
            .copied()
            .collect();
        for gone in before.difference(&after) {
            for dst in &dsts {
                out.insert(UdpFlows {
                    dst: Some(*dst),
                    dport: sp.port,
                    reply_src: Some(*gone),
                });
            }
            if let Some(np) = sp.node_port {
                out.insert(UdpFlows {
                    dst: None,
                    dport: np,
                    reply_src: Some(*gone),
                });
            }
        }
        if before.is_empty() && !after.is_empty() {
            for dst in &dsts {
                out.insert(UdpFlows {
                    dst: Some(*dst),
                    dport: sp.port,
                    reply_src: None,
                });
            }
            if let Some(np) = sp.node_port {
                out.insert(UdpFlows {
                    dst: None,
                    dport: np,
                    reply_src: None,
                });
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests;
