//! Strategy of CustomResourceDefinitions. rkube establishes a CRD as soon as it is
//! stored, so its status (accepted names, conditions, stored versions) is set here.

use rkube_api::meta::{self, default_path};
use serde_json::{Value, json};

use super::Strategy;
use crate::error::FieldError;

pub struct CrdStrategy;

fn now() -> String {
    crate::time::now_rfc3339()
}

/// The status of an established CRD.
fn established_status(obj: &Value, old: Option<&Value>) -> Value {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<String> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut stored: Vec<String> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let t = old
        .and_then(|o| o.pointer("/status/conditions/0/lastTransitionTime"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(now);
    json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": t},
        ],
        "storedVersions": stored,
    })
}

impl Strategy for CrdStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "conversion", "strategy"], json!("None"));
        if let Some(kind) = obj
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            default_path(
                obj,
                &["spec", "names", "listKind"],
                json!(format!("{kind}List")),
            );
            default_path(
                obj,
                &["spec", "names", "singular"],
                json!(kind.to_lowercase()),
            );
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = established_status(obj, None);
        let mut finalizers = meta::finalizers(obj);
        if !finalizers
            .iter()
            .any(|f| f == crate::crd::CLEANUP_FINALIZER)
        {
            finalizers.push(crate::crd::CLEANUP_FINALIZER.to_string());
        }
        meta::metadata_mut(obj).insert("finalizers".into(), json!(finalizers));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        new["status"] = established_status(new, Some(old));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let str_at = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
        let group = str_at("/spec/group");
        let plural = str_at("/spec/names/plural");
        if group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
        if plural.is_empty() {
            errs.push(FieldError::required("spec.names.plural", ""));
        }
        if str_at("/spec/names/kind").is_empty() {
            errs.push(FieldError::required("spec.names.kind", ""));
        }
        let name = meta::name(obj).unwrap_or("");
        if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        let scope = str_at("/spec/scope");
        if !["Namespaced", "Cluster"].contains(&scope) {
            errs.push(FieldError::not_supported(
                "spec.scope",
                scope,
                &["Cluster", "Namespaced"],
            ));
        }
        let versions = obj.pointer("/spec/versions").and_then(Value::as_array);
        match versions {
            None => errs.push(FieldError::required(
                "spec.versions",
                "must have exactly one version marked as storage version",
            )),
            Some(vs) => {
                let storage = vs
                    .iter()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .count();
                if storage != 1 {
                    errs.push(FieldError::invalid(
                        "spec.versions",
                        Value::Array(vs.clone()),
                        "must have exactly one version marked as storage version",
                    ));
                }
            }
        }
        errs
    }
}
