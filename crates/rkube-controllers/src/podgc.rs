//! Pod garbage collection, as upstream's podgc runs it every twenty seconds:
//! terminated pods beyond `--terminated-pod-gc-threshold` go, evicted then
//! oldest first; terminating pods on a node that is not ready and tainted
//! `node.kubernetes.io/out-of-service` are deleted for good; pods bound to a
//! node that no longer exists go once the node has been missing for the
//! quarantine and the API confirms it (marked Failed with the DisruptionTarget
//! condition first); unscheduled pods stuck being deleted are deleted for good.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;

use crate::clock::Clock;
use crate::informer::Informer;
use crate::manager::ControllerContext;
use crate::pod_util;

/// How often the collector runs (upstream's gcCheckPeriod).
pub const PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing before its pods are collected.
pub const QUARANTINE: SignedDuration = SignedDuration::from_secs(40);
/// The taint an administrator puts on a dead node to let its pods go.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// Errors of the pod garbage collector.
#[derive(Debug, thiserror::Error)]
pub enum PodGcError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let gc = PodGarbageCollector::new(&ctx, ctx.config.terminated_pod_gc_threshold, QUARANTINE);
        let period = ctx.config.pod_gc_period;
        gc.synced().await;
        loop {
            if let Err(e) = gc.gc_once().await {
                tracing::warn!("pod garbage collector: {e}");
            }
            tokio::time::sleep(period).await;
        }
    })
}

pub struct PodGarbageCollector {
    client: Client,
    clock: Arc<dyn Clock>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    /// Terminated pods kept; 0 turns their collection off.
    threshold: usize,
    quarantine: SignedDuration,
    /// Nodes seen missing, and since when.
    missing_since: Mutex<HashMap<String, Timestamp>>,
}

/// Terminated: Succeeded or Failed.
fn terminated(p: &Pod) -> bool {
    matches!(pod_util::phase(p), "Succeeded" | "Failed")
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Evicted pods first, then the oldest, then by name.
fn collection_order(pods: &mut [Arc<Pod>]) {
    let evicted = |p: &Pod| {
        p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
        })
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

impl PodGarbageCollector {
    pub fn new(ctx: &ControllerContext, threshold: usize, quarantine: SignedDuration) -> Self {
        PodGarbageCollector {
            client: ctx.client.clone(),
            clock: ctx.clock.clone(),
            pods: ctx.informers.get::<Pod>(),
            nodes: ctx.informers.get::<Node>(),
            threshold,
            quarantine,
            missing_since: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until the caches are filled.
    pub async fn synced(&self) {
        self.pods.synced().await;
        self.nodes.synced().await;
    }

    /// One pass over the cached pods: terminated ones beyond the threshold,
    /// terminating ones on out-of-service nodes, orphans, then unscheduled
    /// terminating ones. Every pod is tried; the first error is returned.
    pub async fn gc_once(&self) -> Result<(), PodGcError> {
        let pods = self.pods.list();
        let mut first_err = None;
        let mut note = |r: Result<(), PodGcError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        for pod in self.terminated_to_collect(&pods) {
            note(self.mark_failed_and_delete(&pod, None).await);
        }
        for pod in self.terminating_out_of_service(&pods) {
            note(self.mark_failed_and_delete(&pod, None).await);
        }
        let (orphans, lookup) = self.orphans(&pods).await;
        note(lookup);
        let gone = disruption_condition(self.clock.now());
        for pod in orphans {
            note(self.mark_failed_and_delete(&pod, Some(&gone)).await);
        }
        for pod in pods
            .iter()
            .filter(|p| terminating(p) && node_name(p).is_empty())
        {
            note(self.mark_failed_and_delete(pod, None).await);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn terminated_to_collect(&self, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        if self.threshold == 0 {
            return Vec::new();
        }
        let mut done: Vec<Arc<Pod>> = pods.iter().filter(|p| terminated(p)).cloned().collect();
        if done.len() <= self.threshold {
            return Vec::new();
        }
        let excess = done.len() - self.threshold;
        collection_order(&mut done);
        done.truncate(excess);
        done
    }

    /// Terminating pods whose node is not ready and tainted out-of-service: no
    /// kubelet will finish them.
    fn terminating_out_of_service(&self, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        let mut out: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| terminating(p) && !node_name(p).is_empty())
            .filter(|p| {
                self.nodes.get(None, node_name(p)).is_some_and(|n| {
                    !node_ready(&n)
                        && crate::node_util::taints(&n)
                            .iter()
                            .any(|t| t.key == OUT_OF_SERVICE_TAINT)
                })
            })
            .cloned()
            .collect();
        collection_order(&mut out);
        out
    }

    /// Pods bound to nodes missing for the quarantine and gone from the API,
    /// and the first error met asking the API.
    async fn orphans(&self, pods: &[Arc<Pod>]) -> (Vec<Arc<Pod>>, Result<(), PodGcError>) {
        let known: HashSet<String> = self
            .nodes
            .list()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let now = self.clock.now();
        let missing: HashSet<&str> = pods
            .iter()
            .map(|p| node_name(p))
            .filter(|n| !n.is_empty() && !known.contains(*n))
            .collect();
        let due: Vec<String> = {
            let mut since = self.missing_since.lock().expect("missing lock");
            since.retain(|n, _| missing.contains(n.as_str()));
            for n in &missing {
                since.entry(n.to_string()).or_insert(now);
            }
            since
                .iter()
                .filter(|(_, t)| now.duration_since(**t) >= self.quarantine)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        let mut result = Ok(());
        for n in due {
            match api.get_opt(&n).await {
                Ok(None) => {
                    gone.insert(n);
                }
                Ok(Some(_)) => {
                    // The cache was behind: the quarantine starts over if it goes.
                    self.missing_since.lock().expect("missing lock").remove(&n);
                }
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e.into());
                    }
                }
            }
        }
        let orphans = pods
            .iter()
            .filter(|p| gone.contains(node_name(p)))
            .cloned()
            .collect();
        (orphans, result)
    }

    /// Marks a pod Failed (with `condition`, if any) unless it already
    /// finished, then deletes it at once.
    async fn mark_failed_and_delete(
        &self,
        pod: &Pod,
        condition: Option<&PodCondition>,
    ) -> Result<(), PodGcError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if !terminated(pod) {
            let mut status = json!({"phase": "Failed"});
            if let Some(c) = condition {
                // Conditions merge by type: only this one is set.
                status["conditions"] = json!([c]);
            }
            let patch = Patch::Strategic(json!({"status": status}));
            match api
                .patch_status(name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {}
                Err(e) if crate::api_error::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::info!("pod garbage collector: force deleting {ns}/{name}");
        match api.delete(name, &dp).await {
            // Gone already, or the name now belongs to another pod.
            Err(e) if matches!(crate::api_error::code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }
}

/// The condition an orphaned pod is failed with.
fn disruption_condition(now: Timestamp) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some("PodGC: node no longer exists".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": "Failed", "reason": reason}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn evicted_and_old_pods_are_collected_first() {
        let mut pods = vec![
            pod("new-y", "2025-01-03T00:00:00Z", None),
            pod("new-x", "2025-01-03T00:00:00Z", None),
            pod("old", "2025-01-01T00:00:00Z", None),
            pod("evicted", "2025-01-04T00:00:00Z", Some("Evicted")),
        ];
        collection_order(&mut pods);
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["evicted", "old", "new-x", "new-y"]);
    }
}
