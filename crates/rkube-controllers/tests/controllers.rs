//! Controllers against a real in-process API server.

#[path = "controllers/common.rs"]
mod common;
#[path = "controllers/cronjob.rs"]
mod cronjob;
#[path = "controllers/daemonset.rs"]
mod daemonset;
#[path = "controllers/deployment.rs"]
mod deployment;
#[path = "controllers/endpoints.rs"]
mod endpoints;
#[path = "controllers/framework.rs"]
mod framework;
#[path = "controllers/garbage_collector.rs"]
mod garbage_collector;
#[path = "controllers/job.rs"]
mod job;
#[path = "controllers/namespace.rs"]
mod namespace;
#[path = "controllers/podgc.rs"]
mod podgc;
#[path = "controllers/replicaset.rs"]
mod replicaset;
#[path = "controllers/serviceaccount.rs"]
mod serviceaccount;
#[path = "controllers/statefulset.rs"]
mod statefulset;
#[path = "controllers/volume.rs"]
mod volume;
