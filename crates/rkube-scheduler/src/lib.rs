//! rkube's scheduler, and the controllers that look after nodes.
//!
//! The scheduler ([`scheduler`]) follows upstream kube-scheduler's design: a
//! [`queue`] with backoff, a [`cache`] of nodes and their pods where placements are
//! assumed before the binding is written, filter and score [`plugins`] (one module
//! each), [`preemption`], and binding through `pods/binding` — all through
//! `kube::Client`. [`leader_election`] keeps one active instance among servers that
//! share a datastore.
//!
//! The node controllers live here until the controller manager takes them:
//! [`node_ipam`] gives each node a pod CIDR, [`node_lifecycle`] marks nodes whose
//! kubelet went quiet and evicts their pods.

pub mod cache;
pub mod events;
pub mod framework;
pub mod informers;
pub mod labels;
pub mod leader_election;
pub mod node_info;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod scheduler;

pub use scheduler::{SchedulerConfig, SchedulerStats, run, run_with_stats};

/// The Lease that elects the active scheduler (in `kube-system`).
pub const SCHEDULER_LEASE: &str = "kube-scheduler";
/// The Lease that elects the active node controllers (in `kube-system`).
pub const NODE_CONTROLLER_LEASE: &str = "rkube-node-controller";
