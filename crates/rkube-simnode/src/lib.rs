//! Simulated nodes, like kwok: Node objects with the capacity you choose, whose
//! heartbeats (Leases in `kube-node-lease`) and status a simulated kubelet keeps up,
//! and which "run" every pod bound to them at once: Running and Ready, with an IP
//! from the node's pod CIDR and container statuses, and deleted when their graceful
//! deletion starts. No containers, no network: the whole control plane can be tested
//! and benchmarked without root.
//!
//! Pod CIDRs come from the control plane's node IPAM (as for real nodes); a node
//! without one yet keeps its pods Pending until it gets one.

mod ipam;
mod kubelet;
mod node;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};

pub use ipam::PodIps;

/// Errors starting simulated nodes.
#[derive(Debug, thiserror::Error)]
pub enum SimNodeError {
    /// A capacity flag is not a quantity.
    #[error("invalid {what} {value:?}: {source}")]
    Quantity {
        what: &'static str,
        value: String,
        #[source]
        source: rkube_api::quantity::QuantityError,
    },
    /// The API refused to register a node.
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    /// Listing nodes failed.
    #[error("listing nodes: {0}")]
    List(#[source] kube::Error),
    /// A node name would not be valid.
    #[error("invalid node name prefix {0:?}: must be lowercase letters, digits and '-'")]
    Prefix(String),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimNodeConfig {
    pub count: usize,
    /// Nodes are named `<prefix><index>`.
    pub name_prefix: String,
    pub first_index: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
    /// Labels added to every node (besides hostname, os, arch, `type=simulated`).
    pub labels: BTreeMap<String, String>,
    /// How often each node renews its Lease (the kubelet's 10s).
    pub heartbeat_interval: Duration,
    pub lease_duration_seconds: i32,
    /// How often the Ready condition's heartbeat is refreshed when nothing changed
    /// (the kubelet's `nodeStatusReportFrequency`, 5 minutes).
    pub status_report_interval: Duration,
    /// Status updates of pods in flight at once.
    pub concurrency: usize,
}

impl Default for SimNodeConfig {
    fn default() -> Self {
        SimNodeConfig {
            count: 0,
            name_prefix: "sim-".into(),
            first_index: 0,
            cpu: "32".into(),
            memory: "256Gi".into(),
            pods: "110".into(),
            ephemeral_storage: "1Ti".into(),
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            status_report_interval: Duration::from_secs(300),
            concurrency: 64,
        }
    }
}

impl SimNodeConfig {
    /// Checks the capacity values and the name prefix.
    pub fn validate(&self) -> Result<(), SimNodeError> {
        for (what, value) in [
            ("--simulated-node-cpu", &self.cpu),
            ("--simulated-node-memory", &self.memory),
            ("--simulated-node-pods", &self.pods),
            (
                "--simulated-node-ephemeral-storage",
                &self.ephemeral_storage,
            ),
        ] {
            rkube_api::quantity::Quantity::parse(value).map_err(|source| {
                SimNodeError::Quantity {
                    what,
                    value: value.clone(),
                    source,
                }
            })?;
        }
        let ok = !self.name_prefix.is_empty()
            && self
                .name_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && self
                .name_prefix
                .starts_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(SimNodeError::Prefix(self.name_prefix.clone()));
        }
        Ok(())
    }

    pub fn node_name(&self, i: usize) -> String {
        format!("{}{}", self.name_prefix, self.first_index + i)
    }
}

/// The address a simulated node reports: on loopback (`127.1.0.1` for index 0), so
/// that nothing ever sends traffic off the machine on its behalf.
pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 1)).wrapping_add(index as u32))
}

/// One simulated node's state.
#[derive(Debug)]
pub(crate) struct SimNode {
    pub ip: Ipv4Addr,
    /// The node object as last seen on the watch.
    pub seen: Option<Arc<Node>>,
    pub ips: Option<PodIps>,
    /// A paused node is "dead": no heartbeats, its pods are left alone.
    pub paused: bool,
    /// The Lease the node last wrote (renewed without reading it first).
    pub lease: Option<k8s_openapi::api::coordination::v1::Lease>,
    /// A heartbeat of this node is in flight.
    pub beating: bool,
}

pub(crate) struct Shared {
    pub client: Client,
    pub config: SimNodeConfig,
    pub nodes: Mutex<HashMap<String, SimNode>>,
    pub wake: tokio::sync::Notify,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, SimNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Running simulated nodes; dropping this stops them (they then go silent, as a
/// machine that lost power would).
pub struct SimNodes {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimNodes {
    /// Registers the nodes and starts their heartbeats and kubelet.
    pub async fn start(client: Client, config: SimNodeConfig) -> Result<SimNodes, SimNodeError> {
        config.validate()?;
        let nodes = (0..config.count)
            .map(|i| {
                (
                    config.node_name(i),
                    SimNode {
                        ip: node_ip(config.first_index + i),
                        seen: None,
                        ips: None,
                        paused: false,
                        lease: None,
                        beating: false,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            client,
            config,
            nodes: Mutex::new(nodes),
            wake: tokio::sync::Notify::new(),
        });
        node::register_all(&shared).await?;
        let tasks = vec![
            tokio::spawn(node::watch_nodes(shared.clone())),
            tokio::spawn(node::heartbeats(shared.clone())),
            tokio::spawn(kubelet::run(shared.clone())),
        ];
        tracing::info!(count = shared.config.count, "simulated nodes registered");
        Ok(SimNodes { shared, tasks })
    }

    /// The names of the simulated nodes.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Stops a node's heartbeats and kubelet (simulates losing the node).
    pub fn pause(&self, name: &str) -> bool {
        self.set_paused(name, true)
    }

    /// Brings a paused node back.
    pub fn resume(&self, name: &str) -> bool {
        self.set_paused(name, false)
    }

    fn set_paused(&self, name: &str, paused: bool) -> bool {
        let found = match self.shared.lock().get_mut(name) {
            Some(n) => {
                n.paused = paused;
                true
            }
            None => false,
        };
        self.shared.wake.notify_one();
        found
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The first index after every existing `<prefix><n>` node (to add more nodes to a
/// running cluster without clashing).
pub async fn next_free_index(client: &Client, prefix: &str) -> Result<usize, SimNodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(SimNodeError::List)?;
    Ok(list
        .items
        .iter()
        .filter_map(|n| {
            n.metadata
                .name
                .as_deref()?
                .strip_prefix(prefix)?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_stay_on_loopback() {
        assert_eq!(node_ip(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(node_ip(1000), Ipv4Addr::new(127, 1, 3, 233));
        assert!(node_ip(100_000).is_loopback());
    }

    #[test]
    fn validation() {
        let mut c = SimNodeConfig::default();
        assert!(c.validate().is_ok());
        c.memory = "lots".into();
        assert!(matches!(c.validate(), Err(SimNodeError::Quantity { .. })));
        c.memory = "1Gi".into();
        c.name_prefix = "Sim_".into();
        assert!(matches!(c.validate(), Err(SimNodeError::Prefix(_))));
    }
}
