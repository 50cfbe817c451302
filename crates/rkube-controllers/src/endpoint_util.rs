//! What the Endpoints and EndpointSlice controllers share: which pods back a
//! Service, which of their ports a Service port means (named target ports resolved
//! from container ports), and which pod changes matter.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::informer::Informer;
use crate::pod_util;

/// The label and annotation upstream puts on headless Services' endpoints.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The Service's selector as a matcher; `None` for a Service without one (its
/// endpoints are someone else's).
pub fn service_selector(svc: &Service) -> Option<rkube_api::selector::LabelSelector> {
    let sel = svc.spec.as_ref()?.selector.as_ref()?;
    Some(rkube_api::selector::LabelSelector::from_map(
        &sel.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    ))
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pod's IP (the first of `podIPs`, or `podIP`).
pub fn pod_ip(pod: &Pod) -> Option<String> {
    let s = pod.status.as_ref()?;
    s.pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| s.pod_ips.as_ref()?.first().map(|i| i.ip.clone()))
}

/// Whether a pod belongs in a Service's endpoints at all (upstream's
/// ShouldPodBeInEndpoints): it has an IP, is not being deleted (unless terminating
/// pods are wanted), and has not terminated for good under its restart policy.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = pod_util::phase(pod);
    match pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
    {
        "Never" => phase != "Failed" && phase != "Succeeded",
        "OnFailure" => phase != "Succeeded",
        _ => true,
    }
}

/// The pod port a Service port sends to: a number as is, a name looked up among
/// the containers' ports of the same protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .chain(
                    spec.init_containers
                        .iter()
                        .flatten()
                        .filter(|c| c.restart_policy.as_deref() == Some("Always")),
                )
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pod's hostname in the Service's DNS, when its subdomain is the Service.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let h = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then_some(h)
}

pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The Service's labels as its endpoints carry them (plus the headless mark).
pub fn endpoint_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Whether a pod changed in a way endpoints show.
pub fn pod_changed(old: &Pod, new: &Pod) -> bool {
    let ports = |p: &Pod| {
        p.spec.as_ref().map(|s| {
            s.containers
                .iter()
                .map(|c| c.ports.clone())
                .collect::<Vec<_>>()
        })
    };
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    let host = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone()))
    };
    old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || pod_ip(old) != pod_ip(new)
        || pod_util::is_ready(old) != pod_util::is_ready(new)
        || pod_util::phase(old) != pod_util::phase(new)
        || node(old) != node(new)
        || host(old) != host(new)
        || ports(old) != ports(new)
}

/// The Services of the pod's namespace that select it.
pub fn services_for(services: &Informer<Service>, pod: &Pod) -> Vec<Arc<Service>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    services
        .list_namespace(ns)
        .into_iter()
        .filter(|s| {
            service_selector(s)
                .is_some_and(|sel| pod_util::matches(&sel, pod.metadata.labels.as_ref()))
        })
        .collect()
}

/// The keys of Services a pod change concerns (before and after).
pub fn services_for_change(
    services: &Informer<Service>,
    change: &crate::informer::Change<Pod>,
) -> Vec<String> {
    use crate::informer::Change;
    let pods: Vec<&Pod> = match change {
        Change::Applied {
            old: Some(old),
            new,
        } => {
            if !pod_changed(old, new) {
                return Vec::new();
            }
            vec![old, new]
        }
        Change::Applied { old: None, new } => vec![new],
        Change::Deleted(p) => vec![p],
    };
    let mut keys: Vec<String> = pods
        .into_iter()
        .flat_map(|p| services_for(services, p))
        .map(|s| pod_util::object_key(s.as_ref()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}
            ]}]},
            "status": {"podIP": "10.42.0.5", "phase": "Running"}
        }))
        .unwrap()
    }

    fn port(target: serde_json::Value, protocol: &str) -> ServicePort {
        serde_json::from_value(json!({"port": 80, "targetPort": target, "protocol": protocol}))
            .unwrap()
    }

    #[test]
    fn named_ports_resolve_by_name_and_protocol() {
        let p = pod();
        assert_eq!(find_port(&p, &port(json!("http"), "TCP")), Some(8080));
        assert_eq!(find_port(&p, &port(json!("dns"), "UDP")), Some(53));
        assert_eq!(find_port(&p, &port(json!("dns"), "TCP")), None);
        assert_eq!(find_port(&p, &port(json!(9000), "TCP")), Some(9000));
    }

    #[test]
    fn terminated_and_ipless_pods_are_left_out() {
        let mut p = pod();
        assert!(should_be_in_endpoints(&p, false));
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_be_in_endpoints(&p, false));
        let mut p = pod();
        p.status.as_mut().unwrap().pod_ip = None;
        assert!(!should_be_in_endpoints(&p, false));
    }
}
