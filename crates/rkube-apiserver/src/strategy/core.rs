//! Strategies of the core group: namespaces, pods, services, secrets, configmaps,
//! nodes, events, volumes and claims, replication controllers, service accounts.

use base64::Engine;
use rkube_api::meta::{self, default_path, path_str};
use serde_json::{Value, json};

use super::{Strategy, defaults, validation};
use crate::error::FieldError;

fn s(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        meta::validate_dns1123_label(name)
    }

    fn default(&self, obj: &mut Value) {
        // Every namespace carries its name as a label (upstream's NamespaceDefaultLabelName).
        if let Some(name) = meta::name(obj).map(str::to_string) {
            let m = meta::metadata_mut(obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        default_path(obj, &["spec", "finalizers"], json!(["kubernetes"]));
        obj["status"] = json!({"phase": "Active"});
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers only change through /finalize.
        match old.pointer("/spec") {
            Some(spec) => new["spec"] = spec.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("spec");
                }
            }
        }
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn fields(&self, obj: &Value) -> Vec<(String, String)> {
        vec![("status.phase".into(), s(obj, "/status/phase"))]
    }
}

pub struct PodStrategy;

/// The QoS class a pod gets from its containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            spec.get("initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let has = |m: Option<&serde_json::Map<String, Value>>, k: &str| {
            m.is_some_and(|m| m.contains_key(k))
        };
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let differs = has(req, r) && req.and_then(|m| m.get(r)) != lim.and_then(|m| m.get(r));
            if !has(lim, r) || differs {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            defaults::pod_spec(spec);
            default_path(spec, &["enableServiceLinks"], json!(true));
        }
        // Requests default to limits when only limits are given.
        if let Some(cs) = obj
            .pointer_mut("/spec/containers")
            .and_then(Value::as_array_mut)
        {
            for c in cs {
                if let Some(limits) = c.pointer("/resources/limits").cloned()
                    && let Some(lim) = limits.as_object()
                {
                    for (k, v) in lim {
                        default_path(c, &["resources", "requests", k], v.clone());
                    }
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = obj.get("spec").map(qos_class).unwrap_or("BestEffort");
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validation::pod_spec(obj.get("spec"), "spec", &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        // A pod's spec is immutable apart from images, activeDeadlineSeconds,
        // tolerations (additions) and terminationGracePeriodSeconds.
        let mut a = new.get("spec").cloned().unwrap_or(Value::Null);
        let mut b = old.get("spec").cloned().unwrap_or(Value::Null);
        for spec in [&mut a, &mut b] {
            for list in ["containers", "initContainers"] {
                if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("image");
                        }
                    }
                }
            }
            if let Some(m) = spec.as_object_mut() {
                m.remove("activeDeadlineSeconds");
                m.remove("tolerations");
                m.remove("terminationGracePeriodSeconds");
                m.remove("nodeName");
            }
        }
        if a != b {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        let old_node = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let new_node = new
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !old_node.is_empty() && old_node != new_node {
            errs.push(FieldError::forbidden(
                "spec.nodeName",
                "field is immutable once set",
            ));
        }
        errs
    }

    fn field_names(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn fields(&self, obj: &Value) -> Vec<(String, String)> {
        let host_network = obj
            .pointer("/spec/hostNetwork")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        vec![
            ("spec.nodeName".into(), s(obj, "/spec/nodeName")),
            ("spec.restartPolicy".into(), s(obj, "/spec/restartPolicy")),
            ("spec.schedulerName".into(), s(obj, "/spec/schedulerName")),
            (
                "spec.serviceAccountName".into(),
                s(obj, "/spec/serviceAccountName"),
            ),
            ("spec.hostNetwork".into(), host_network.to_string()),
            ("status.phase".into(), s(obj, "/status/phase")),
            ("status.podIP".into(), s(obj, "/status/podIP")),
            (
                "status.nominatedNodeName".into(),
                s(obj, "/status/nominatedNodeName"),
            ),
        ]
    }
}

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        meta::validate_dns1035_label(name)
    }

    fn default(&self, obj: &mut Value) {
        let ty = path_str(obj, &["spec", "type"])
            .unwrap_or("ClusterIP")
            .to_string();
        default_path(obj, &["spec", "type"], json!("ClusterIP"));
        default_path(obj, &["spec", "sessionAffinity"], json!("None"));
        if ty != "ExternalName" {
            default_path(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            default_path(obj, &["spec", "externalTrafficPolicy"], json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            default_path(obj, &["spec", "allocateLoadBalancerNodePorts"], json!(true));
        }
        if obj.pointer("/spec/sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
            default_path(
                obj,
                &[
                    "spec",
                    "sessionAffinityConfig",
                    "clientIP",
                    "timeoutSeconds",
                ],
                json!(10800),
            );
        }
        if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                default_path(p, &["protocol"], json!("TCP"));
                if p.get("targetPort").is_none_or(Value::is_null)
                    && let Some(port) = p.get("port").cloned()
                {
                    p["targetPort"] = port;
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ty = s(obj, "/spec/type");
        let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
        if !types.contains(&ty.as_str()) {
            errs.push(FieldError::not_supported("spec.type", ty.clone(), &types));
        }
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
        let headless = s(obj, "/spec/clusterIP") == "None";
        if ports.is_none_or(Vec::is_empty) && ty != "ExternalName" && !headless {
            errs.push(FieldError::required("spec.ports", ""));
        }
        let many = ports.is_some_and(|p| p.len() > 1);
        let mut names: Vec<String> = Vec::new();
        for (i, p) in ports.into_iter().flatten().enumerate() {
            let pp = format!("spec.ports[{i}]");
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            if many && name.is_empty() {
                errs.push(FieldError::required(format!("{pp}.name"), ""));
            }
            if !name.is_empty() {
                for e in meta::validate_dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{pp}.name"), name, e));
                }
                if names.iter().any(|n| n == name) {
                    errs.push(FieldError::duplicate(format!("{pp}.name"), name));
                }
                names.push(name.to_string());
            }
            match p.get("port").and_then(Value::as_i64) {
                Some(n) if (1..=65535).contains(&n) => {}
                Some(n) => errs.push(FieldError::invalid(
                    format!("{pp}.port"),
                    n,
                    "must be between 1 and 65535, inclusive",
                )),
                None => errs.push(FieldError::required(format!("{pp}.port"), "")),
            }
            if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                && !["TCP", "UDP", "SCTP"].contains(&proto)
            {
                errs.push(FieldError::not_supported(
                    format!("{pp}.protocol"),
                    proto,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
            match p.get("targetPort") {
                Some(Value::Number(n)) => {
                    let n = n.as_i64().unwrap_or(0);
                    if !(1..=65535).contains(&n) {
                        errs.push(FieldError::invalid(
                            format!("{pp}.targetPort"),
                            n,
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
                Some(Value::String(t))
                    if t.len() > 15
                        || t.is_empty()
                        || !t.chars().any(|c| c.is_ascii_alphabetic()) =>
                {
                    errs.push(FieldError::invalid(
                        format!("{pp}.targetPort"),
                        t.as_str(),
                        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    ));
                }
                _ => {}
            }
            if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
                && ty == "ClusterIP"
                && np != 0
            {
                errs.push(FieldError::forbidden(
                    format!("{pp}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        if ty == "ExternalName" && s(obj, "/spec/externalName").is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        }
        if let Some(sel) = obj.pointer("/spec/selector") {
            validation::labels(Some(sel), "spec.selector", &mut errs);
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let old_ip = s(old, "/spec/clusterIP");
        let new_ip = s(new, "/spec/clusterIP");
        let new_ty = s(new, "/spec/type");
        if !old_ip.is_empty() && old_ip != new_ip && new_ty != "ExternalName" && !new_ip.is_empty()
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                new_ip.as_str(),
                "may not change once set",
            ));
        }
        errs
    }
}

pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        default_path(obj, &["type"], json!("Opaque"));
        // stringData is write-only: merged into data.
        if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
            && let Some(sd) = sd.as_object()
        {
            let data = obj
                .as_object_mut()
                .map(|m| m.entry("data").or_insert_with(|| json!({})));
            if let Some(Value::Object(data)) = data {
                for (k, v) in sd {
                    let raw = v.as_str().unwrap_or_default();
                    data.insert(
                        k.clone(),
                        json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    );
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        data_keys(obj, "data", &mut errs);
        let total: usize = obj
            .get("data")
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_str).map(str::len).sum())
            .unwrap_or(0);
        if total > 1024 * 1024 * 4 / 3 + 4 {
            errs.push(FieldError::too_long("data", 1024 * 1024));
        }
        if let Some(d) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in d {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    errs.push(FieldError::invalid(
                        format!("data[{k}]"),
                        v.clone(),
                        "must be base64-encoded",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        validation::immutable(new, old, "/type", "type", &mut errs);
        if old.get("immutable").and_then(Value::as_bool) == Some(true) {
            validation::immutable(new, old, "/data", "data", &mut errs);
        }
        errs
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn fields(&self, obj: &Value) -> Vec<(String, String)> {
        vec![("type".into(), s(obj, "/type"))]
    }
}

/// Keys of `data`/`binaryData` must be valid config keys.
fn data_keys(obj: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = obj.get(field).and_then(Value::as_object) else {
        return;
    };
    for k in m.keys() {
        let ok = !k.is_empty()
            && k.len() <= 253
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && k != "."
            && k != ".."
            && !k.starts_with("..");
        if !ok {
            errs.push(FieldError::invalid(
                format!("{field}[{k}]"),
                k.as_str(),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
}

pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        data_keys(obj, "data", &mut errs);
        data_keys(obj, "binaryData", &mut errs);
        if let (Some(d), Some(b)) = (
            obj.get("data").and_then(Value::as_object),
            obj.get("binaryData").and_then(Value::as_object),
        ) {
            for k in d.keys().filter(|k| b.contains_key(*k)) {
                errs.push(FieldError::invalid(
                    format!("data[{k}]"),
                    k.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
        }
        let size: usize = obj.get("data").map(|d| d.to_string().len()).unwrap_or(0)
            + obj
                .get("binaryData")
                .map(|d| d.to_string().len())
                .unwrap_or(0);
        if size > 1024 * 1024 + 1024 {
            errs.push(FieldError::too_long("data", 1024 * 1024));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if old.get("immutable").and_then(Value::as_bool) == Some(true) {
            validation::immutable(new, old, "/data", "data", &mut errs);
            validation::immutable(new, old, "/binaryData", "binaryData", &mut errs);
        }
        errs
    }
}

pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn field_names(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn fields(&self, obj: &Value) -> Vec<(String, String)> {
        let u = obj
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        vec![("spec.unschedulable".into(), u.to_string())]
    }
}

pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn validate_name(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }

    fn field_names(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
        ]
    }

    fn fields(&self, obj: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        // core/v1 events name it involvedObject, events.k8s.io/v1 regarding: offer both.
        let io = obj.get("involvedObject").or_else(|| obj.get("regarding"));
        for f in [
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        ] {
            let v = io
                .and_then(|o| o.get(f))
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.push((format!("involvedObject.{f}"), v.to_string()));
            out.push((format!("regarding.{f}"), v.to_string()));
        }
        out.push(("reason".into(), s(obj, "/reason")));
        out.push(("reportingComponent".into(), s(obj, "/reportingComponent")));
        out.push(("source".into(), s(obj, "/source/component")));
        out.push(("type".into(), s(obj, "/type")));
        out
    }
}

pub struct PvcStrategy;

impl Strategy for PvcStrategy {
    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "volumeMode"], json!("Filesystem"));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj
            .pointer("/spec/accessModes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            errs.push(FieldError::required(
                "spec.accessModes",
                "at least 1 access mode is required",
            ));
        }
        if obj.pointer("/spec/resources/requests/storage").is_none() {
            errs.push(FieldError::required("spec.resources[storage]", ""));
        }
        errs
    }
}

pub struct PvStrategy;

impl Strategy for PvStrategy {
    fn default(&self, obj: &mut Value) {
        default_path(
            obj,
            &["spec", "persistentVolumeReclaimPolicy"],
            json!("Retain"),
        );
        default_path(obj, &["spec", "volumeMode"], json!("Filesystem"));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }
}

pub struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "replicas"], json!(1));
        // A missing selector defaults to the template's labels.
        if obj.pointer("/spec/selector").is_none()
            && let Some(l) = obj.pointer("/spec/template/metadata/labels").cloned()
        {
            obj["spec"]["selector"] = l;
        }
        defaults::template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validation::pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut errs,
        );
        errs
    }
}

pub struct PodTemplateStrategy;

impl Strategy for PodTemplateStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.pointer_mut("/template/spec") {
            defaults::pod_spec(spec);
        }
    }
}

pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "a"}]})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})),
            "Burstable"
        );
    }

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut s = json!({"stringData": {"user": "mongo"}});
        SecretStrategy.default(&mut s);
        assert_eq!(s, json!({"type": "Opaque", "data": {"user": "bW9uZ28="}}));
    }

    #[test]
    fn service_ports_default_target_port_and_protocol() {
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        ServiceStrategy.default(&mut svc);
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(svc["spec"]["type"], "ClusterIP");
    }
}
