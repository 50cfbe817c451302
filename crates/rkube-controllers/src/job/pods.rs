//! A Job's pods: how they are made (the tracking finalizer, the completion index of
//! Indexed Jobs as annotation, label, hostname and `JOB_COMPLETION_INDEX`), and how
//! the controller reads them (active, succeeded, failed, when they finished).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::indexes::COMPLETION_INDEX;
use crate::controller_ref::controller_ref;
use crate::pod_util;

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// The pod's finalizers without the tracking one.
pub fn finalizers_without_tracking(pod: &Pod) -> Vec<String> {
    pod.metadata
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != TRACKING_FINALIZER)
        .collect()
}

/// Running or about to: not terminal, not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    pod_util::is_active(pod)
}

pub fn is_succeeded(pod: &Pod) -> bool {
    pod_util::phase(pod) == "Succeeded"
}

/// Failed, or deleted before it succeeded (an orphan that never reaches a phase
/// counts as a failure, as upstream counts it).
pub fn is_failed(pod: &Pod) -> bool {
    pod_util::phase(pod) == "Failed"
        || (pod.metadata.deletion_timestamp.is_some() && pod_util::phase(pod) != "Succeeded")
}

/// Being deleted but not finished yet.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && !matches!(pod_util::phase(pod), "Succeeded" | "Failed")
}

/// When a pod finished: the latest container finish, else its deletion, else `now`.
pub fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now)
}

/// Container restarts of a pod still running or pending (for `OnFailure` Jobs).
pub fn restarts(pod: &Pod) -> i32 {
    if !matches!(pod_util::phase(pod), "Running" | "Pending") {
        return 0;
    }
    let s = pod.status.as_ref();
    let count = |l: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        l.map(|l| l.iter().map(|c| c.restart_count).sum::<i32>())
            .unwrap_or(0)
    };
    count(s.and_then(|s| s.init_container_statuses.as_ref()))
        + count(s.and_then(|s| s.container_statuses.as_ref()))
}

/// A new pod of the Job; `index` for Indexed Jobs.
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let generate_name = match index {
        Some(i) => {
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            spec.hostname = Some(format!("{name}-{i}"));
            // The kubelet resolves the field reference to the annotation.
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let list = c.env.get_or_insert_with(Vec::new);
                if !list.iter().any(|e| e.name == env.name) {
                    list.push(env.clone());
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(mode: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u"},
            "spec": {"completionMode": mode, "completions": 3,
                "template": {"metadata": {"labels": {"job-name": "pi"}},
                    "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "perl", "env": [{"name": "A", "value": "1"}]}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn pods_carry_the_finalizer_and_their_index() {
        let p = new_pod(&job("NonIndexed"), None);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(has_finalizer(&p));
        assert!(p.metadata.annotations.is_none());
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((r.kind.as_str(), r.controller), ("Job", Some(true)));

        let p = new_pod(&job("Indexed"), Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
            "2"
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(
            env[1]
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert_eq!(super::super::indexes::of_pod(&p), Some(2));
    }

    #[test]
    fn deleted_pods_count_as_failed_unless_they_succeeded() {
        let pod = |phase: &str, deleted: bool| -> Pod {
            let mut v = json!({"metadata": {"name": "p"}, "status": {"phase": phase}});
            if deleted {
                v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
            }
            serde_json::from_value(v).unwrap()
        };
        assert!(is_failed(&pod("Running", true)));
        assert!(!is_failed(&pod("Succeeded", true)));
        assert!(is_failed(&pod("Failed", false)));
        assert!(is_terminating(&pod("Running", true)));
        assert!(!is_terminating(&pod("Failed", true)));
        assert!(is_active(&pod("Pending", false)));
        assert!(!is_active(&pod("Running", true)));
    }
}
