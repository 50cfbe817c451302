//! The kubelet's streaming endpoint (port 10250): container logs, exec, attach and
//! port-forward, in the protocols kubectl speaks through the API server.
