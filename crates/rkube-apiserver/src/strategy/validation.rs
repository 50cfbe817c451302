//! Validation shared by several kinds: object metadata, pod specs, selectors.

use rkube_api::meta;
use rkube_api::selector::LabelSelector;
use serde_json::Value;

use crate::error::FieldError;

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Labels: keys are qualified names, values label values.
pub fn labels(labels: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        for e in meta::validate_qualified_name(k) {
            errs.push(FieldError::invalid(path, k.as_str(), e));
        }
        match v.as_str() {
            Some(s) => {
                for e in meta::validate_label_value(s) {
                    errs.push(FieldError::invalid(path, s, e));
                }
            }
            None => errs.push(FieldError::invalid(
                format!("{path}.{k}"),
                v.clone(),
                "must be a string",
            )),
        }
    }
}

/// `metadata`: labels, annotations, owner references, finalizers.
pub fn object_meta(obj: &Value, errs: &mut Vec<FieldError>) {
    labels(meta::labels(obj), "metadata.labels", errs);
    if let Some(ann) = meta::annotations(obj) {
        let mut total = 0;
        for (k, v) in ann {
            for e in meta::validate_qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", k.as_str(), e));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                TOTAL_ANNOTATION_SIZE_LIMIT,
            ));
        }
    }
    for (i, r) in meta::owner_references(obj).iter().enumerate() {
        let p = format!("metadata.ownerReferences[{i}]");
        for f in ["apiVersion", "kind", "name", "uid"] {
            if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::invalid(
                    format!("{p}.{f}"),
                    "",
                    format!("{f} must not be empty"),
                ));
            }
        }
    }
    let controllers = meta::owner_references(obj)
        .iter()
        .filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .count();
    if controllers > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            Value::Null,
            "Only one reference can have Controller set to true",
        ));
    }
    for (i, f) in meta::finalizers(obj).iter().enumerate() {
        for e in meta::validate_qualified_name(f) {
            errs.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                f.as_str(),
                e,
            ));
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A pod spec at `path` (`spec` for pods, `spec.template.spec` for workloads).
pub fn pod_spec(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        errs.push(FieldError::required(path, ""));
        return;
    };
    let mut names: Vec<String> = Vec::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(c) if c.is_empty() => {
            errs.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(_) => {}
    }
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let p = format!("{path}.{list}[{i}]");
            container(c, &p, &mut names, errs);
        }
    }
    if let Some(policy) = str_at(spec, "restartPolicy")
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(policy) = str_at(spec, "dnsPolicy")
        && !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            policy,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ));
    }
    let mut vol_names: Vec<&str> = Vec::new();
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in vols.iter().enumerate() {
            let p = format!("{path}.volumes[{i}]");
            match str_at(v, "name") {
                None | Some("") => errs.push(FieldError::required(format!("{p}.name"), "")),
                Some(n) => {
                    for e in meta::validate_dns1123_label(n) {
                        errs.push(FieldError::invalid(format!("{p}.name"), n, e));
                    }
                    if vol_names.contains(&n) {
                        errs.push(FieldError::duplicate(format!("{p}.name"), n));
                    }
                    vol_names.push(n);
                }
            }
        }
    }
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) else {
                continue;
            };
            for (j, m) in mounts.iter().enumerate() {
                let p = format!("{path}.{list}[{i}].volumeMounts[{j}]");
                let name = str_at(m, "name").unwrap_or("");
                if !vol_names.contains(&name) {
                    errs.push(FieldError {
                        kind: crate::error::FieldErrorType::NotFound,
                        field: format!("{p}.name"),
                        value: Some(Value::String(name.to_string())),
                        detail: String::new(),
                    });
                }
                if str_at(m, "mountPath").is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("{p}.mountPath"), ""));
                }
            }
        }
    }
}

fn container(c: &Value, p: &str, names: &mut Vec<String>, errs: &mut Vec<FieldError>) {
    match str_at(c, "name") {
        None | Some("") => errs.push(FieldError::required(format!("{p}.name"), "")),
        Some(n) => {
            for e in meta::validate_dns1123_label(n) {
                errs.push(FieldError::invalid(format!("{p}.name"), n, e));
            }
            if names.iter().any(|x| x == n) {
                errs.push(FieldError::duplicate(format!("{p}.name"), n));
            }
            names.push(n.to_string());
        }
    }
    if str_at(c, "image").is_none_or(|s| s.trim().is_empty()) {
        errs.push(FieldError::required(format!("{p}.image"), ""));
    }
    if let Some(policy) = str_at(c, "imagePullPolicy")
        && !["Always", "IfNotPresent", "Never"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            format!("{p}.imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_array) {
        for (j, port) in ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            match port.get("containerPort").and_then(Value::as_i64) {
                Some(n) if (1..=65535).contains(&n) => {}
                Some(n) => errs.push(FieldError::invalid(
                    format!("{pp}.containerPort"),
                    n,
                    "must be between 1 and 65535, inclusive",
                )),
                None => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            }
            if let Some(proto) = str_at(port, "protocol")
                && !["TCP", "UDP", "SCTP"].contains(&proto)
            {
                errs.push(FieldError::not_supported(
                    format!("{pp}.protocol"),
                    proto,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
    }
}

/// A workload's `spec.selector` must be non-empty and select its template's labels.
pub fn selector_matches_template(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(sel) = obj.pointer("/spec/selector") else {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    };
    let selector = match LabelSelector::from_object(sel) {
        Ok(s) => s,
        Err(e) => {
            errs.push(FieldError::invalid("spec.selector", sel.clone(), e.0));
            return;
        }
    };
    if selector.is_empty() {
        errs.push(FieldError::invalid(
            "spec.selector",
            sel.clone(),
            "empty selector is invalid for deployment",
        ));
        return;
    }
    let labels = obj.pointer("/spec/template/metadata/labels");
    if !selector.matches(labels) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().unwrap_or(Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
}

/// A non-negative integer field, if present.
pub fn non_negative(obj: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            field,
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// A field that may not change on update.
pub fn immutable(new: &Value, old: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    let a = new.pointer(pointer);
    let b = old.pointer(pointer);
    if a != b {
        errs.push(FieldError::invalid(
            field,
            a.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}
