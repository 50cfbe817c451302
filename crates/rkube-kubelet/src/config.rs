//! The node agent's settings: one struct that `rkube server` and `rkube agent` fill
//! from their flags.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use rkube_net::Ipv4Cidr;

/// How the node agent runs.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The Node's name.
    pub node_name: String,
    /// The node's address (InternalIP; host-network pods' IP; NodePorts).
    pub node_ip: Ipv4Addr,
    /// Extra labels of the Node (`node-role.kubernetes.io/control-plane` on servers).
    pub node_labels: BTreeMap<String, String>,
    /// Where pod volumes and other kubelet files live (`<data-dir>/agent`).
    pub root_dir: PathBuf,
    /// Where container logs go (`/var/log/pods`).
    pub pod_log_dir: PathBuf,
    /// The cluster DNS Service IPs pods' resolv.conf points at.
    pub cluster_dns: Vec<Ipv4Addr>,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The cluster CIDR, which holds every node's podCIDR.
    pub cluster_cidr: Ipv4Cidr,
    /// The service CIDR.
    pub service_cidr: Ipv4Cidr,
    /// The pod bridge.
    pub bridge_name: String,
    /// Prefix of the nftables tables of the node (`<prefix>-podnet`, `<prefix>-proxy`).
    pub nft_table_prefix: String,
    /// The kubelet's port, reported as `daemonEndpoints.kubeletEndpoint.Port`.
    pub kubelet_port: u16,
    /// Pods this node takes (`pods` capacity).
    pub max_pods: u32,
    /// How often the Node's status is checked and, when changed, written.
    pub node_status_update_frequency: Duration,
    /// How long a Node status may go unwritten when nothing changes.
    pub node_status_report_frequency: Duration,
    /// The Lease's duration; it is renewed every quarter of it.
    pub node_lease_duration: Duration,
    /// The node's resolv.conf (for `dnsPolicy: Default` and upstream resolvers).
    pub resolv_conf: PathBuf,
    /// Memory kept free for the system: allocatable is capacity minus this (upstream's
    /// default hard eviction threshold, 100Mi); also the MemoryPressure threshold.
    pub eviction_memory_available: u64,
    /// Free share of the node's filesystem below which DiskPressure is reported (10%).
    pub eviction_nodefs_available_percent: u8,
    /// Answer NodePorts on 127.0.0.1 too.
    pub localhost_nodeports: bool,
    /// Whether pods may connect to addresses outside the cluster (see
    /// [`rkube_net::PodNetworkConfig::egress`]).
    pub pod_egress: bool,
}

impl KubeletConfig {
    /// The defaults of a node named `node_name` at `node_ip` keeping its data in
    /// `root_dir`.
    pub fn new(node_name: &str, node_ip: Ipv4Addr, root_dir: PathBuf) -> Self {
        KubeletConfig {
            node_name: node_name.to_string(),
            node_ip,
            node_labels: BTreeMap::new(),
            root_dir,
            pod_log_dir: PathBuf::from("/var/log/pods"),
            cluster_dns: vec![Ipv4Addr::new(10, 43, 0, 10)],
            cluster_domain: "cluster.local".into(),
            cluster_cidr: "10.42.0.0/16".parse().expect("valid"),
            service_cidr: "10.43.0.0/16".parse().expect("valid"),
            bridge_name: "rkube0".into(),
            nft_table_prefix: "rkube".into(),
            kubelet_port: 10250,
            max_pods: 110,
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(60),
            node_lease_duration: Duration::from_secs(40),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            eviction_memory_available: 100 << 20,
            eviction_nodefs_available_percent: 10,
            localhost_nodeports: true,
            pod_egress: true,
        }
    }

    /// The pod network's nftables table.
    pub fn podnet_table(&self) -> String {
        format!("{}-podnet", self.nft_table_prefix)
    }

    /// The service proxy's nftables table.
    pub fn proxy_table(&self) -> String {
        format!("{}-proxy", self.nft_table_prefix)
    }
}
