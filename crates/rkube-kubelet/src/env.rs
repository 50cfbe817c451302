//! A container's environment as upstream's kubelet makes it: `envFrom` (ConfigMaps and
//! Secrets, with prefixes), then `env` (values with `$(VAR)` expansion, and
//! `valueFrom` field, resource, ConfigMap and Secret references), then the Service
//! variables (`MY_SERVICE_SERVICE_HOST`, docker-link style `MY_SERVICE_PORT_80_TCP`...)
//! for names not already set.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, Service};

use crate::fieldpath::{self, PodFacts};
use crate::objects::ClusterObjects;

/// Why a container's configuration cannot be made (its waiting reason is
/// CreateContainerConfigError with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Expands `$(VAR)` references from `lookup`; `$$` is a literal `$`; unknown
/// references stay as written (upstream's `expansion.Expand`).
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn env_name(svc: &str) -> String {
    svc.to_ascii_uppercase().replace('-', "_")
}

/// The Service variables for `services` (those with a ClusterIP).
pub fn service_env(services: &[Arc<Service>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in sorted {
        let Some(spec) = &s.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = env_name(s.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.as_deref().unwrap_or("TCP").to_string()
        };
        out.push((
            format!("{name}_PORT"),
            format!(
                "{}://{ip}:{}",
                proto(first).to_ascii_lowercase(),
                first.port
            ),
        ));
        for p in ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_ascii_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", pr.to_ascii_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), pr.to_ascii_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// An ordered environment where setting a name again replaces it in place.
#[derive(Default)]
struct Env {
    list: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, k: String, v: String) {
        match self.index.get(&k) {
            Some(&i) => self.list[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.list.len());
                self.list.push((k, v));
            }
        }
    }
    fn get(&self, k: &str) -> Option<&String> {
        self.index.get(k).map(|&i| &self.list[i].1)
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty() && !k.contains('=') && k.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn not_found(kind: &str, name: &str) -> ConfigError {
    ConfigError(format!("{kind} \"{name}\" not found"))
}

fn api_error(e: kube::Error) -> ConfigError {
    ConfigError(e.to_string())
}

/// The environment of container `c` of `pod`. `services` are the Services whose
/// variables the container gets (the pod's namespace, if `enableServiceLinks`, and
/// the `kubernetes` Service).
pub async fn container_env(
    pod: &Pod,
    c: &Container,
    objects: &ClusterObjects,
    facts: &PodFacts,
    services: &[Arc<Service>],
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Env::default();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match objects.configmap(ns, &r.name).await.map_err(api_error)? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        let key = format!("{prefix}{k}");
                        if valid_env_name(&key) {
                            env.set(key, v.clone());
                        }
                    }
                }
                None if optional => {}
                None => return Err(not_found("configmap", &r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match objects.secret(ns, &r.name).await.map_err(api_error)? {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        let key = format!("{prefix}{k}");
                        if valid_env_name(&key) {
                            env.set(key, String::from_utf8_lossy(&v.0).into_owned());
                        }
                    }
                }
                None if optional => {}
                None => return Err(not_found("secret", &r.name)),
            }
        }
    }
    let service_vars = service_env(services);
    let service_map: HashMap<&str, &str> = service_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                Some(
                    fieldpath::field_value(pod, &f.field_path, facts)
                        .map_err(|e| ConfigError(e.to_string()))?,
                )
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => fieldpath::container_named(pod, n)
                        .map_err(|e| ConfigError(e.to_string()))?,
                    None => c,
                };
                Some(
                    fieldpath::resource_value(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        facts,
                    )
                    .map_err(|e| ConfigError(e.to_string()))?,
                )
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match objects.configmap(ns, &r.name).await.map_err(api_error)? {
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    None if optional => None,
                    None => return Err(not_found("configmap", &r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match objects.secret(ns, &r.name).await.map_err(api_error)? {
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    None if optional => None,
                    None => return Err(not_found("secret", &r.name)),
                }
            } else {
                None
            }
        } else {
            let raw = e.value.clone().unwrap_or_default();
            Some(expand(&raw, &|name| {
                env.get(name)
                    .cloned()
                    .or_else(|| service_map.get(name).map(|v| v.to_string()))
            }))
        };
        if let Some(v) = value {
            env.set(e.name.clone(), v);
        }
    }
    for (k, v) in service_vars {
        if env.get(&k).is_none() {
            env.set(k, v);
        }
    }
    Ok(env.list)
}

/// `command` and `args` with `$(VAR)` expanded from the container's environment.
pub fn expand_command(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    words
        .iter()
        .map(|w| expand(w, &|n| map.get(n).map(|v| v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion() {
        let look = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)", &look), "x-$(B)");
        assert_eq!(expand("$$(A) $$ $", &look), "$(A) $ $");
        assert_eq!(expand("$(A", &look), "$(A");
        assert_eq!(expand("héllo $(A)", &look), "héllo x");
    }

    #[test]
    fn service_variables() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "my-service", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        }))
        .unwrap();
        let env: HashMap<String, String> = service_env(&[Arc::new(svc), Arc::new(headless)])
            .into_iter()
            .collect();
        assert_eq!(env["MY_SERVICE_SERVICE_HOST"], "10.43.0.20");
        assert_eq!(env["MY_SERVICE_SERVICE_PORT"], "8080");
        assert_eq!(env["MY_SERVICE_SERVICE_PORT_HTTP"], "8080");
        assert_eq!(env["MY_SERVICE_PORT"], "tcp://10.43.0.20:8080");
        assert_eq!(env["MY_SERVICE_PORT_53_UDP"], "udp://10.43.0.20:53");
        assert_eq!(env["MY_SERVICE_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(env["MY_SERVICE_PORT_8080_TCP_ADDR"], "10.43.0.20");
        assert!(!env.keys().any(|k| k.starts_with("DB_")));
    }
}
