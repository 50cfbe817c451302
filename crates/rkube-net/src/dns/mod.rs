//! Cluster DNS: answers the cluster domain from Services, endpoints and pods, and
//! forwards every other name to the node's upstream resolvers.
//!
//! [`ClusterDns`] holds the current [`zone::Zone`] (swapped whole on each
//! [`ClusterDns::update`]) and serves it over UDP and TCP on the kube-dns Service IP.
//! Wire format is hickory-proto's; the serving loop is ours (a lookup is a hash-map
//! read, so it runs inline; only forwarded questions get a task).

mod forward;
mod server;
pub mod zone;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::cidr::Ipv4Cidr;
use crate::netns::Netns;
use crate::proxy::Protocol;

pub use server::DnsServer;
use zone::Zone;

/// A named port of a Service or endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPort {
    /// The port name (SRV records exist only for named ports).
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The port number.
    pub port: u16,
}

/// One endpoint of a headless Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEndpoint {
    /// The address.
    pub ip: Ipv4Addr,
    /// `endpoints[].hostname` (set for pods with a hostname and this subdomain).
    pub hostname: Option<String>,
    /// Ready (or published while not ready).
    pub ready: bool,
    /// The endpoint's ports, names resolved to numbers.
    pub ports: Vec<DnsPort>,
}

/// A Service as DNS sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsService {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIPs; empty for a headless Service.
    pub cluster_ips: Vec<Ipv4Addr>,
    /// `spec.externalName` of an ExternalName Service.
    pub external_name: Option<String>,
    /// The Service's ports.
    pub ports: Vec<DnsPort>,
    /// Endpoints (used for headless Services).
    pub endpoints: Vec<DnsEndpoint>,
}

/// A pod as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPod {
    /// Namespace.
    pub namespace: String,
    /// The pod IP.
    pub ip: Ipv4Addr,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// The pod is ready.
    pub ready: bool,
}

/// Everything the cluster zone is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsData {
    /// Services.
    pub services: Vec<DnsService>,
    /// Pods.
    pub pods: Vec<DnsPod>,
}

/// How the DNS server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Where to listen, UDP and TCP (the kube-dns Service IP, port 53).
    pub listen: Vec<SocketAddr>,
    /// Resolvers for names outside the cluster domain.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of cluster records (and the SOA minimum).
    pub ttl: u32,
    /// Reverse lookups for these prefixes are answered here, not forwarded.
    pub reverse_cidrs: Vec<Ipv4Cidr>,
    /// How long to wait for an upstream before trying the next.
    pub upstream_timeout: Duration,
    /// The namespace to listen in (the node's; the current one in production).
    pub netns: Netns,
}

impl DnsConfig {
    /// The defaults: `cluster.local` on 10.43.0.10:53, forwarding to `upstreams`.
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            domain: "cluster.local".into(),
            listen: vec![SocketAddr::from((Ipv4Addr::new(10, 43, 0, 10), 53))],
            upstreams,
            ttl: 5,
            reverse_cidrs: vec![
                "10.42.0.0/16".parse().expect("valid"),
                "10.43.0.0/16".parse().expect("valid"),
            ],
            upstream_timeout: Duration::from_secs(2),
            netns: Netns::Current,
        }
    }
}

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("DNS configuration: {0}")]
    Config(String),
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
}

/// The cluster DNS: the zone and its configuration.
pub struct ClusterDns {
    config: DnsConfig,
    zone: RwLock<Arc<Zone>>,
}

impl ClusterDns {
    /// A server with an empty zone.
    pub fn new(config: DnsConfig) -> Result<Arc<Self>, DnsError> {
        let domain = config.domain.trim_end_matches('.');
        if domain.is_empty() || !domain.split('.').all(|l| !l.is_empty() && l.len() <= 63) {
            return Err(DnsError::Config(format!(
                "invalid cluster domain {:?}",
                config.domain
            )));
        }
        let zone = Zone::build(&config.domain, &config.reverse_cidrs, &DnsData::default());
        Ok(Arc::new(Self {
            config,
            zone: RwLock::new(Arc::new(zone)),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Replaces the zone with one built from `data`.
    pub fn update(&self, data: &DnsData) {
        let zone = Arc::new(Zone::build(
            &self.config.domain,
            &self.config.reverse_cidrs,
            data,
        ));
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = zone;
    }

    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers one raw query from the zone, as a UDP query would be; `None` when the
    /// question would be forwarded upstream (or cannot be answered at all).
    pub fn answer_local(&self, query: &[u8]) -> Option<Vec<u8>> {
        server::answer_zone_only(self, query)
    }

    /// Binds the listeners (in the configured namespace) and serves until the
    /// returned server is dropped.
    pub async fn serve(self: &Arc<Self>) -> Result<DnsServer, DnsError> {
        server::serve(self.clone()).await
    }
}

#[cfg(test)]
mod tests;
