//! The downward API: pod fields (`fieldRef`) and container resources
//! (`resourceFieldRef`) as strings, for environment variables and downwardAPI volumes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, Pod};

use rkube_api::quantity;

/// Facts about a pod that are not in its spec.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    /// The pod's IPs (empty until its network is set up).
    pub pod_ips: Vec<Ipv4Addr>,
    /// The node's IP.
    pub host_ip: Option<Ipv4Addr>,
    /// Node allocatable CPU in millicores (stands in for a missing CPU limit).
    pub node_cpu_milli: i64,
    /// Node allocatable memory in bytes (stands in for a missing memory limit).
    pub node_memory: i64,
    /// Node allocatable ephemeral storage in bytes.
    pub node_ephemeral_storage: i64,
}

/// Why a field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    /// The path names no supported field.
    #[error("unsupported fieldPath: {0}")]
    Unsupported(String),
    /// The resource names no supported resource.
    #[error("unsupported container resource: {0}")]
    UnsupportedResource(String),
    /// `resourceFieldRef.containerName` names no container of the pod.
    #[error("container {0} not found")]
    NoContainer(String),
    /// The divisor is not a positive quantity.
    #[error("invalid divisor {0:?}")]
    Divisor(String),
}

/// Go's `strconv.Quote` for the label and annotation files.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn map_lines(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['app']` → `("metadata.labels", Some("app"))`.
fn subscript(path: &str) -> (&str, Option<&str>) {
    if let Some((base, rest)) = path.split_once('[')
        && let Some(key) = rest.strip_suffix(']')
    {
        let key = key
            .strip_prefix('\'')
            .and_then(|k| k.strip_suffix('\''))
            .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
            .unwrap_or(key);
        return (base, Some(key));
    }
    (path, None)
}

fn join_ips(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of a `fieldRef.fieldPath`.
pub fn field_value(pod: &Pod, path: &str, facts: &PodFacts) -> Result<String, FieldPathError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let (base, key) = subscript(path);
    Ok(match (base, key) {
        ("metadata.name", None) => m.name.clone().unwrap_or_default(),
        ("metadata.namespace", None) => m.namespace.clone().unwrap_or_default(),
        ("metadata.uid", None) => m.uid.clone().unwrap_or_default(),
        ("metadata.labels", None) => map_lines(m.labels.as_ref()),
        ("metadata.annotations", None) => map_lines(m.annotations.as_ref()),
        ("metadata.labels", Some(k)) => m
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_default(),
        ("metadata.annotations", Some(k)) => m
            .annotations
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_default(),
        ("spec.nodeName", None) => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        ("spec.serviceAccountName", None) => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        ("status.hostIP", None) => facts.host_ip.map(|i| i.to_string()).unwrap_or_default(),
        ("status.hostIPs", None) => facts.host_ip.map(|i| i.to_string()).unwrap_or_default(),
        ("status.podIP", None) => facts
            .pod_ips
            .first()
            .map(|i| i.to_string())
            .unwrap_or_default(),
        ("status.podIPs", None) => join_ips(&facts.pod_ips),
        _ => return Err(FieldPathError::Unsupported(path.to_string())),
    })
}

/// The value of a `resourceFieldRef` for container `c`: the limit or request divided
/// by `divisor` and rounded up; a missing limit is the node's allocatable amount.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    facts: &PodFacts,
) -> Result<String, FieldPathError> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| FieldPathError::UnsupportedResource(resource.to_string()))?;
    let r = c.resources.as_ref();
    let list = match kind {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => return Err(FieldPathError::UnsupportedResource(resource.to_string())),
    };
    let given = list.and_then(|l| l.get(name)).map(|q| q.0.as_str());
    let divisor = divisor.filter(|d| !d.is_empty()).unwrap_or("1");
    let bad_div = || FieldPathError::Divisor(divisor.to_string());
    let ceil_div = |a: i64, b: i64| (a + b - 1).div_euclid(b);
    match name {
        "cpu" => {
            let milli = match given {
                Some(q) => quantity::milli_value(q).unwrap_or(0),
                None if kind == "limits" => facts.node_cpu_milli,
                None => 0,
            };
            let d = quantity::milli_value(divisor).map_err(|_| bad_div())?;
            if d <= 0 {
                return Err(bad_div());
            }
            Ok(ceil_div(milli, d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let node = if name == "memory" {
                facts.node_memory
            } else {
                facts.node_ephemeral_storage
            };
            let v = match given {
                Some(q) => quantity::value(q).unwrap_or(0),
                None if kind == "limits" => node,
                None => 0,
            };
            let d = quantity::value(divisor).map_err(|_| bad_div())?;
            if d <= 0 {
                return Err(bad_div());
            }
            Ok(ceil_div(v, d).to_string())
        }
        _ => Err(FieldPathError::UnsupportedResource(resource.to_string())),
    }
}

/// The container a `resourceFieldRef.containerName` names (for volumes).
pub fn container_named<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, FieldPathError> {
    pod.spec
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| FieldPathError::NoContainer(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"app": "web", "tier": "front\"end"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [
                {"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn fields() {
        let p = pod();
        let f = PodFacts {
            pod_ips: vec![Ipv4Addr::new(10, 42, 0, 9)],
            host_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..Default::default()
        };
        let v = |path: &str| field_value(&p, path, &f).unwrap();
        assert_eq!(v("metadata.name"), "p");
        assert_eq!(v("metadata.labels['app']"), "web");
        assert_eq!(v("metadata.labels"), "app=\"web\"\ntier=\"front\\\"end\"");
        assert_eq!(v("status.podIP"), "10.42.0.9");
        assert_eq!(v("status.hostIP"), "192.0.2.1");
        assert_eq!(v("spec.nodeName"), "n1");
        assert!(field_value(&p, "spec.containers", &f).is_err());
    }

    #[test]
    fn resources() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let f = PodFacts {
            node_cpu_milli: 2000,
            node_memory: 1 << 30,
            ..Default::default()
        };
        assert_eq!(
            resource_value(c, "limits.memory", None, &f).unwrap(),
            "67108864"
        );
        assert_eq!(
            resource_value(c, "limits.memory", Some("1Mi"), &f).unwrap(),
            "64"
        );
        assert_eq!(resource_value(c, "requests.cpu", None, &f).unwrap(), "1");
        assert_eq!(
            resource_value(c, "requests.cpu", Some("1m"), &f).unwrap(),
            "250"
        );
        assert_eq!(resource_value(c, "limits.cpu", None, &f).unwrap(), "2");
        assert!(resource_value(c, "limits.gpu", None, &f).is_err());
    }
}
