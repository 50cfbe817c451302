//! The labels the kubelet puts on sandboxes and containers in the runtime: how a
//! restarted kubelet finds which pod and which container each one is, which attempt
//! it was, and from which spec it was made.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

/// The pod's UID.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// The pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// The pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The container's name in the pod spec.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// How many times the container had been restarted when this instance was made.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// A hash of the container's spec (a changed spec restarts the container).
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// `init`, `sidecar` or `regular`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
/// The host file bound at the termination message path.
pub const TERMINATION_LOG: &str = "io.kubernetes.container.terminationLog";
/// The sandbox's attempt number.
pub const SANDBOX_ATTEMPT: &str = "io.kubernetes.sandbox.attempt";

/// The labels every sandbox and container of `pod` carries.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
        (POD_NAME.to_string(), m.name.clone().unwrap_or_default()),
        (
            POD_NAMESPACE.to_string(),
            m.namespace.clone().unwrap_or_default(),
        ),
    ])
}

/// A stable hash of the parts of a container spec that need a new container when
/// they change (everything but resources, which upstream resizes in place).
pub fn container_hash(c: &Container) -> String {
    let mut c = c.clone();
    c.resources = None;
    c.resize_policy = None;
    let json = serde_json::to_string(&c).unwrap_or_default();
    format!("{:016x}", rkube_net::names::fnv1a(&json))
}

/// A label parsed as a number, 0 when missing.
pub fn number(labels: &BTreeMap<String, String>, key: &str) -> u32 {
    labels.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}
