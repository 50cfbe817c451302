//! rkube's node networking: the pod network, the service proxy and the cluster DNS.
//!
//! The low layer takes plain Rust structs and knows nothing of Kubernetes objects:
//! [`PodNetwork`] wires a sandbox's network namespace to the node bridge and hands out
//! its address; [`ServiceProxy`] turns a list of [`ServicePort`]s into one nftables table;
//! [`ClusterDns`] answers `cluster.local` from a [`DnsData`] snapshot. The [`k8s`]
//! module is the thin layer that feeds them from Services, EndpointSlices and Pods
//! watched through a `kube::Client`.
//!
//! OS work (netlink, `nft`, sysctls) sits behind the small traits in [`os`], each with a
//! recording fake, so the logic is unit-tested without root.

pub mod cidr;
pub mod dns;
pub mod ipam;
pub mod k8s;
pub mod names;
pub mod netns;
pub mod os;
pub mod pod_network;
pub mod proxy;
pub mod resolv_conf;

pub use cidr::Ipv4Cidr;
pub use dns::{ClusterDns, DnsConfig, DnsData};
pub use proxy::{ProxyConfig, ServicePort, ServiceProxy};

pub use ipam::Ipam;
pub use netns::Netns;
pub use pod_network::{PodNetwork, PodNetworkConfig};
