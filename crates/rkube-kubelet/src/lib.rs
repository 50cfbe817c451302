//! rkube's node agent (the kubelet): registers the node, runs the pods bound to it on
//! the container runtime and the pod network, reports their status, and serves
//! logs, exec, attach and port-forward to the API server.
//!
//! * [`agent::NodeAgent`]: a whole node — Node registration and heartbeats, the
//!   service proxy, the pod network, the cluster DNS, and the kubelet.
//! * [`kubelet::Kubelet`]: the pods bound to the node, one [`pod_worker`] each.
//! * One module per concern, named as upstream names it: [`images`], [`probes`],
//!   [`volumes`], [`env`], [`dns`], [`hosts`], [`qos`], [`status`],
//!   [`status_manager`], [`events`], [`node`].

pub mod agent;
pub mod backoff;
pub mod config;
pub mod dns;
pub mod env;
pub mod events;
pub mod fieldpath;
pub mod handlers;
pub mod hosts;
pub mod images;
pub mod kubelet;
pub mod lookup;
pub mod node;
pub mod objects;
pub mod pod_registry;
pub mod pod_worker;
pub mod probes;
pub mod qos;
pub mod status;
pub mod status_manager;
pub mod streaming;
pub mod volumes;

pub use agent::{AgentError, NodeAgent};
pub use config::KubeletConfig;

/// The Kubernetes version the kubelet reports.
pub const KUBELET_VERSION: &str = "v1.33.0";
