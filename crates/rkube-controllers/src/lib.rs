//! rkube's controller manager: the controllers that make the cluster reconcile
//! itself, each a client of the API through `kube::Client`, over shared informers
//! and work queues, active on one server at a time through a Lease.

pub mod api_error;
pub mod clock;
pub mod controller_ref;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod endpoint_util;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod history;
pub mod informer;
pub mod job;
pub mod leader_election;
pub mod manager;
pub mod namespace;
pub mod node_util;
pub mod pod_util;
pub mod podgc;
pub mod queue;
pub mod replicaset;
pub mod root_ca;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttl_after_finished;
pub mod volume;
pub mod written;

pub use clock::{Clock, FakeClock, SystemClock};
pub use events::{EventRecorder, EventType};
pub use manager::{CONTROLLERS, ControllerContext, ControllerManager, ControllerManagerConfig};
