//! Strategies of batch/v1: jobs and cron jobs.

use rkube_api::meta::{self, default_path};
use serde_json::{Value, json};

use super::{Strategy, defaults, validation};
use crate::error::FieldError;

pub struct JobStrategy;

/// The labels a Job puts on its pods and selects them by (unless `manualSelector`).
fn job_labels(obj: &Value) -> Option<serde_json::Map<String, Value>> {
    let uid = meta::uid(obj)?;
    let name = meta::name(obj)?;
    let mut m = serde_json::Map::new();
    m.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
    m.insert("batch.kubernetes.io/job-name".into(), json!(name));
    m.insert("controller-uid".into(), json!(uid));
    m.insert("job-name".into(), json!(name));
    Some(m)
}

impl Strategy for JobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let completions_set = obj
            .pointer("/spec/completions")
            .is_some_and(|v| !v.is_null());
        let parallelism_set = obj
            .pointer("/spec/parallelism")
            .is_some_and(|v| !v.is_null());
        if !completions_set && !parallelism_set {
            obj["spec"]["completions"] = json!(1);
        }
        default_path(obj, &["spec", "parallelism"], json!(1));
        default_path(obj, &["spec", "backoffLimit"], json!(6));
        default_path(obj, &["spec", "completionMode"], json!("NonIndexed"));
        default_path(obj, &["spec", "suspend"], json!(false));
        default_path(
            obj,
            &["spec", "podReplacementPolicy"],
            json!("TerminatingOrFailed"),
        );
        if obj.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed") {
            default_path(obj, &["spec", "backoffLimitPerIndex"], Value::Null);
        }
        defaults::template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
        let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
        if !manual && let Some(labels) = job_labels(obj) {
            let uid_label = labels["batch.kubernetes.io/controller-uid"].clone();
            obj["spec"]["selector"] =
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid_label}});
            let tpl_labels = obj.pointer_mut("/spec/template/metadata").map(|m| {
                meta::ensure_object(m)
                    .entry("labels")
                    .or_insert_with(|| json!({}))
            });
            if let Some(Value::Object(l)) = tpl_labels {
                for (k, v) in labels {
                    l.insert(k, v);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validation::pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut errs,
        );
        let policy = obj
            .pointer("/spec/template/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["OnFailure", "Never"].contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                policy,
                &["OnFailure", "Never"],
            ));
        }
        for f in [
            "parallelism",
            "completions",
            "backoffLimit",
            "activeDeadlineSeconds",
        ] {
            validation::non_negative(obj, &format!("/spec/{f}"), &format!("spec.{f}"), &mut errs);
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        validation::immutable(new, old, "/spec/selector", "spec.selector", &mut errs);
        validation::immutable(new, old, "/spec/completions", "spec.completions", &mut errs);
        validation::immutable(
            new,
            old,
            "/spec/completionMode",
            "spec.completionMode",
            &mut errs,
        );
        let suspended = old.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        if !suspended {
            validation::immutable(new, old, "/spec/template", "spec.template", &mut errs);
        }
        errs
    }
}

pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
        default_path(obj, &["spec", "suspend"], json!(false));
        default_path(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
        default_path(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
        if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
            defaults::pod_spec(spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let schedule = obj
            .pointer("/spec/schedule")
            .and_then(Value::as_str)
            .unwrap_or("");
        if schedule.is_empty() {
            errs.push(FieldError::required("spec.schedule", ""));
        } else if let Err(e) = rkube_api::cron::Schedule::parse(schedule) {
            errs.push(FieldError::invalid(
                "spec.schedule",
                schedule,
                e.to_string(),
            ));
        }
        validation::pod_spec(
            obj.pointer("/spec/jobTemplate/spec/template/spec"),
            "spec.jobTemplate.spec.template.spec",
            &mut errs,
        );
        let policy = obj
            .pointer("/spec/concurrencyPolicy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["Allow", "Forbid", "Replace"].contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.concurrencyPolicy",
                policy,
                &["Allow", "Forbid", "Replace"],
            ));
        }
        errs
    }
}
