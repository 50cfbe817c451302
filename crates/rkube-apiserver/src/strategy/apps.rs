//! Strategies of apps/v1: deployments, replica sets, stateful sets, daemon sets.

use rkube_api::meta::default_path;
use serde_json::{Value, json};

use super::{Strategy, defaults, validation};
use crate::error::FieldError;

/// Validation every apps/v1 workload shares: selector, template, replicas.
fn workload(obj: &Value, errs: &mut Vec<FieldError>) {
    validation::selector_matches_template(obj, errs);
    validation::pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        errs,
    );
    validation::non_negative(obj, "/spec/replicas", "spec.replicas", errs);
    validation::labels(
        obj.pointer("/spec/template/metadata/labels"),
        "spec.template.metadata.labels",
        errs,
    );
}

fn workload_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    validation::immutable(new, old, "/spec/selector", "spec.selector", errs);
}

pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "replicas"], json!(1));
        let recreate =
            obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
        default_path(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
        if !recreate {
            default_path(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                json!("25%"),
            );
            default_path(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxSurge"],
                json!("25%"),
            );
        }
        default_path(obj, &["spec", "revisionHistoryLimit"], json!(10));
        default_path(obj, &["spec", "progressDeadlineSeconds"], json!(600));
        defaults::template(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        workload(obj, &mut errs);
        let ty = obj
            .pointer("/spec/strategy/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["RollingUpdate", "Recreate"].contains(&ty) {
            errs.push(FieldError::not_supported(
                "spec.strategy.type",
                ty,
                &["Recreate", "RollingUpdate"],
            ));
        }
        if ty == "Recreate" && obj.pointer("/spec/strategy/rollingUpdate").is_some() {
            errs.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        let zero = |v: Option<&Value>| match v {
            None => false,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s == "0" || s == "0%",
            _ => false,
        };
        if ty == "RollingUpdate"
            && zero(obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable"))
            && zero(obj.pointer("/spec/strategy/rollingUpdate/maxSurge"))
        {
            errs.push(FieldError::invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                0,
                "may not be 0 when `maxSurge` is 0",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        workload_update(new, old, &mut errs);
        errs
    }
}

pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "replicas"], json!(1));
        defaults::template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        workload(obj, &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        workload_update(new, old, &mut errs);
        errs
    }
}

pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "replicas"], json!(1));
        default_path(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
        let on_delete = obj
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            == Some("OnDelete");
        default_path(
            obj,
            &["spec", "updateStrategy", "type"],
            json!("RollingUpdate"),
        );
        if !on_delete {
            default_path(
                obj,
                &["spec", "updateStrategy", "rollingUpdate", "partition"],
                json!(0),
            );
        }
        default_path(obj, &["spec", "revisionHistoryLimit"], json!(10));
        default_path(
            obj,
            &["spec", "persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        if let Some(tpls) = obj
            .pointer_mut("/spec/volumeClaimTemplates")
            .and_then(Value::as_array_mut)
        {
            for t in tpls {
                default_path(t, &["apiVersion"], json!("v1"));
                default_path(t, &["kind"], json!("PersistentVolumeClaim"));
                default_path(t, &["spec", "volumeMode"], json!("Filesystem"));
                default_path(t, &["status", "phase"], json!("Pending"));
            }
        }
        defaults::template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0, "availableReplicas": 0});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        workload(obj, &mut errs);
        let policy = obj
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["OrderedReady", "Parallel"].contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.podManagementPolicy",
                policy,
                &["OrderedReady", "Parallel"],
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        workload_update(new, old, &mut errs);
        // Only replicas, template, updateStrategy, ordinals, minReadySeconds,
        // persistentVolumeClaimRetentionPolicy and revisionHistoryLimit may change.
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = spec.as_object_mut() {
                for k in [
                    "replicas",
                    "template",
                    "updateStrategy",
                    "ordinals",
                    "minReadySeconds",
                    "persistentVolumeClaimRetentionPolicy",
                    "revisionHistoryLimit",
                ] {
                    m.remove(k);
                }
            }
            spec
        };
        if strip(new) != strip(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }
}

pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let on_delete = obj
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            == Some("OnDelete");
        default_path(
            obj,
            &["spec", "updateStrategy", "type"],
            json!("RollingUpdate"),
        );
        if !on_delete {
            default_path(
                obj,
                &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
                json!(1),
            );
            default_path(
                obj,
                &["spec", "updateStrategy", "rollingUpdate", "maxSurge"],
                json!(0),
            );
        }
        default_path(obj, &["spec", "revisionHistoryLimit"], json!(10));
        defaults::template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({
            "currentNumberScheduled": 0,
            "desiredNumberScheduled": 0,
            "numberMisscheduled": 0,
            "numberReady": 0,
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        workload(obj, &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        workload_update(new, old, &mut errs);
        errs
    }
}
