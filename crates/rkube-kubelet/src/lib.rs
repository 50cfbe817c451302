//! rkube's node agent (the kubelet): registers the node, runs the pods bound to it on
//! the container runtime and the pod network, reports their status, and serves
//! logs, exec, attach and port-forward to the API server.

pub mod lookup;
pub mod streaming;
