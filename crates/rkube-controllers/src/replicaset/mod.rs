//! The ReplicaSet controller: keeps `spec.replicas` pods matching the selector,
//! creating them from the template (`generateName: <rs>-`, controller owner
//! reference) in slow-start batches and deleting the ones upstream would delete
//! first; adopts orphans that match and releases pods that no longer do; never acts
//! on a cache that has not caught up with its own creations and deletions
//! (expectations); reports replicas, fullyLabeled, ready and available counts.

pub mod ranking;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::clock::Clock;
use crate::controller_ref::{self, Claim, controller_of};
use crate::events::EventRecorder;
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{self, object_key, split_key};
use crate::queue::WorkQueue;

/// At most this many pods are created or deleted in one sync.
const BURST_REPLICAS: usize = 500;
/// The first batch of a slow start.
const INITIAL_BATCH: usize = 1;
/// How long a pod's state change may wait for others, per pod of its ReplicaSet.
const STATUS_BATCH_PER_POD: Duration = Duration::from_micros(100);
/// The longest a pod's state change waits.
const STATUS_BATCH_MAX: Duration = Duration::from_millis(250);

/// How long the sync for a state change of one of `pods` pods may wait to take in
/// the changes of others (upstream's Job and EndpointSlice controllers batch pod
/// updates too). A sync walks every pod of the ReplicaSet, so a wait in proportion
/// bounds the share of time spent walking: a ReplicaSet of 3 pods syncs at once,
/// one of 1,000 gathers the changes of a tenth of a second.
fn status_batch(pods: usize) -> Duration {
    STATUS_BATCH_PER_POD
        .saturating_mul(pods as u32)
        .min(STATUS_BATCH_MAX)
}

/// Errors of the ReplicaSet controller.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

pub struct ReplicaSetController {
    client: Client,
    clock: Arc<dyn Clock>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    expectations: Expectations,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
}

async fn run(ctx: ControllerContext) {
    let replicasets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let ctrl = Arc::new(ReplicaSetController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        replicasets: replicasets.clone(),
        pods: pods.clone(),
        expectations: Expectations::new(),
        recorder: ctx.recorder("replicaset-controller"),
        queue: WorkQueue::new(),
    });
    let mut rs_changes = replicasets.subscribe();
    let mut pod_changes = pods.subscribe();
    let c = ctrl.clone();
    let rs_feed = async move {
        while let Some(ch) = rs_changes.recv().await {
            c.on_replicaset(ch);
        }
    };
    let c = ctrl.clone();
    let pod_feed = async move {
        while let Some(ch) = pod_changes.recv().await {
            c.on_pod(ch);
        }
    };
    replicasets.synced().await;
    pods.synced().await;
    let c = ctrl.clone();
    let workers = ctrl
        .queue
        .run(ctx.config.workers, "replicaset", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    futures::join!(rs_feed, pod_feed, workers);
}

impl ReplicaSetController {
    fn on_replicaset(&self, c: Change<ReplicaSet>) {
        match c {
            // Its status is this controller's own writing: nothing to act on.
            Change::Applied {
                old: Some(old),
                new,
            } if status_only(&old, &new) => {}
            Change::Applied { new, .. } => self.queue.add(object_key(new.as_ref())),
            Change::Deleted(rs) => {
                let key = object_key(rs.as_ref());
                self.expectations.forget(&key);
                self.queue.add(key);
            }
        }
    }

    /// The ReplicaSet a pod's controller reference points at, if it is in the cache.
    fn owner_of(&self, pod: &Pod) -> Option<Arc<ReplicaSet>> {
        controller_ref::resolve(&self.replicasets, &pod.metadata)
    }

    /// ReplicaSets of the pod's namespace whose selector matches it (for orphans).
    fn matching(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        controller_ref::selecting(&self.replicasets, ns, pod.metadata.labels.as_ref(), |rs| {
            rs.spec.as_ref().map(|s| &s.selector)
        })
    }

    fn on_pod(&self, c: Change<Pod>) {
        match c {
            Change::Applied { old: None, new } => {
                if new.metadata.deletion_timestamp.is_some() {
                    // Seen for the first time already being deleted (a restart).
                    return self.pod_deleted(&new);
                }
                if let Some(rs) = self.owner_of(&new) {
                    let key = object_key(rs.as_ref());
                    self.expectations.creation_observed(&key);
                    self.enqueue_observed(&rs, key);
                } else if controller_of(&new.metadata).is_none() {
                    for rs in self.matching(&new) {
                        self.queue.add(object_key(rs.as_ref()));
                    }
                }
            }
            Change::Applied {
                old: Some(old),
                new,
            } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let labels_changed = old.metadata.labels != new.metadata.labels;
                if new.metadata.deletion_timestamp.is_some() {
                    self.pod_deleted(&new);
                    if labels_changed {
                        self.pod_deleted(&old);
                    }
                    return;
                }
                let old_ref = controller_of(&old.metadata);
                let new_ref = controller_of(&new.metadata);
                let ref_changed = old_ref.map(|r| &r.uid) != new_ref.map(|r| &r.uid);
                if ref_changed && let Some(rs) = self.owner_of(&old) {
                    self.queue.add(object_key(rs.as_ref()));
                }
                if let Some(rs) = self.owner_of(&new) {
                    let key = object_key(rs.as_ref());
                    let min_ready = rs
                        .spec
                        .as_ref()
                        .and_then(|s| s.min_ready_seconds)
                        .unwrap_or(0);
                    let wait_available =
                        min_ready > 0 && !pod_util::is_ready(&old) && pod_util::is_ready(&new);
                    if wait_available {
                        // Look again when the pod becomes available.
                        self.queue
                            .add_after(key.clone(), Duration::from_secs(min_ready as u64 + 1));
                    }
                    if labels_changed
                        || ref_changed
                        || wait_available
                        || pod_util::is_active(&old) != pod_util::is_active(&new)
                    {
                        self.queue.add(key);
                    } else {
                        // A change of the pod's state that only moves the status
                        // counts is gathered with others.
                        self.enqueue_batched(&rs, key);
                    }
                    return;
                }
                if new_ref.is_none() && (labels_changed || ref_changed) {
                    for rs in self.matching(&new) {
                        self.queue.add(object_key(rs.as_ref()));
                    }
                }
            }
            Change::Deleted(pod) => self.pod_deleted(&pod),
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        if let Some(rs) = self.owner_of(pod) {
            let key = object_key(rs.as_ref());
            self.expectations.deletion_observed(&key, &object_key(pod));
            self.enqueue_observed(&rs, key);
        }
    }

    /// Queues a ReplicaSet that saw one of its pods come or go: at once when that
    /// was the last creation or deletion it waited for (or one it did not make),
    /// else after a batch time, as a sync could only recount its pods meanwhile.
    fn enqueue_observed(&self, rs: &ReplicaSet, key: String) {
        if self.expectations.satisfied(&key) {
            self.queue.add(key);
        } else {
            self.enqueue_batched(rs, key);
        }
    }

    /// Queues a ReplicaSet after the batch time of its size (see `status_batch`).
    fn enqueue_batched(&self, rs: &ReplicaSet, key: String) {
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        let n = self.pods.count_controlled_by(uid);
        self.queue.add_after(key, status_batch(n));
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, ReplicaSetError> {
        let (ns, name) = split_key(key);
        let Some(rs) = self.replicasets.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let spec = rs.spec.clone().unwrap_or_default();
        let Ok(selector) = pod_util::selector(Some(&spec.selector)) else {
            tracing::warn!("replicaset {key}: invalid selector");
            return Ok(None);
        };
        let needs_sync = self.expectations.satisfied(key);
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        let active: Vec<Arc<Pod>> = self
            .pods
            .list_claimable(ns, uid)
            .into_iter()
            .filter(|p| pod_util::is_active(p))
            .collect();
        let pods = self.claim_pods(&rs, &selector, active).await?;
        let mut manage_error = None;
        if needs_sync
            && rs.metadata.deletion_timestamp.is_none()
            && let Err(e) = self.manage_replicas(&pods, &rs, key).await
        {
            manage_error = Some(e);
        }
        let now = self.clock.now();
        let status = calculate_status(&rs, &pods, manage_error.as_ref(), now);
        let status = self.update_status(&rs, status).await?;
        if let Some(e) = manage_error {
            return Err(e);
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let want = spec.replicas.unwrap_or(1);
        if min_ready > 0
            && status.ready_replicas.unwrap_or(0) == want
            && status.available_replicas.unwrap_or(0) != want
        {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    /// The active pods this ReplicaSet owns after adopting matching orphans and
    /// releasing owned pods that stopped matching.
    async fn claim_pods(
        &self,
        rs: &ReplicaSet,
        selector: &rkube_api::selector::LabelSelector,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, ReplicaSetError> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut owned = Vec::new();
        let mut can_adopt: Option<bool> = None;
        for pod in pods {
            let matches =
                !selector.is_empty() && pod_util::matches(selector, pod.metadata.labels.as_ref());
            match controller_ref::classify(&uid, deleting, matches, &pod.metadata) {
                Claim::Owned => owned.push(pod),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.fresh_and_alive(rs).await?);
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    match controller_ref::adopt(&api, &pod, controller_ref::controller_ref(rs))
                        .await
                    {
                        Ok(p) => owned.push(Arc::new(p)),
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release => match controller_ref::release(&api, &pod, &uid).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Ok(owned)
    }

    /// Whether the ReplicaSet, read from the API rather than the cache, is still the
    /// same object and not being deleted (upstream's check before adopting).
    async fn fresh_and_alive(&self, rs: &ReplicaSet) -> Result<bool, ReplicaSetError> {
        let api: Api<ReplicaSet> = Api::namespaced(
            self.client.clone(),
            rs.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let fresh = api
            .get_opt(rs.metadata.name.as_deref().unwrap_or_default())
            .await?;
        Ok(fresh.is_some_and(|f| {
            f.metadata.uid == rs.metadata.uid && f.metadata.deletion_timestamp.is_none()
        }))
    }

    async fn manage_replicas(
        &self,
        pods: &[Arc<Pod>],
        rs: &ReplicaSet,
        key: &str,
    ) -> Result<(), ReplicaSetError> {
        let want = rs
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as usize;
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if pods.len() < want {
            let n = (want - pods.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, n);
            let template = pod_from_template(rs);
            let (created, err) = slow_start_batch(n, INITIAL_BATCH, || {
                let (ns, template) = (&ns, template.clone());
                async move {
                    match crate::pod_util::create(&self.client, ns, &template).await {
                        Ok(name) => {
                            self.recorder.normal(
                                rs,
                                "SuccessfulCreate",
                                format!("Created pod: {name}"),
                            );
                            Ok(())
                        }
                        Err(e) => {
                            self.recorder.warning(
                                rs,
                                "FailedCreate",
                                format!("Error creating: {}", crate::api_error::message(&e)),
                            );
                            Err(e)
                        }
                    }
                }
            })
            .await;
            // Pods never created will never be observed.
            for _ in created..n {
                self.expectations.creation_observed(key);
            }
            if let Some(e) = err {
                return Err(e.into());
            }
        } else if pods.len() > want {
            let n = (pods.len() - want).min(BURST_REPLICAS);
            let related = self.related_pods(rs);
            let doomed = ranking::pods_to_delete(pods, &related, n, self.clock.now());
            self.expectations
                .expect_deletions(key, doomed.iter().map(|p| object_key(p.as_ref())));
            let results = join_all(doomed.iter().map(|p| {
                let api = api.clone();
                async move {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let r = api.delete(&name, &DeleteParams::default()).await;
                    (p, name, r)
                }
            }))
            .await;
            let mut first_err = None;
            for (p, name, r) in results {
                match r {
                    Ok(_) => {
                        self.recorder
                            .normal(rs, "SuccessfulDelete", format!("Deleted pod: {name}"))
                    }
                    Err(e) => {
                        self.expectations
                            .deletion_observed(key, &object_key(p.as_ref()));
                        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                            self.recorder.warning(
                                rs,
                                "FailedDelete",
                                format!("Error deleting: {}", crate::api_error::message(&e)),
                            );
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Pods of every ReplicaSet with the same controller (the same Deployment).
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let mut owners = vec![rs.metadata.uid.clone().unwrap_or_default()];
        if let Some(c) = controller_of(&rs.metadata) {
            for other in self.replicasets.list_namespace(ns) {
                if controller_of(&other.metadata).is_some_and(|o| o.uid == c.uid) {
                    owners.push(other.metadata.uid.clone().unwrap_or_default());
                }
            }
        }
        owners
            .iter()
            .flat_map(|uid| self.pods.list_controlled_by(uid))
            .collect()
    }

    /// Writes the status if it changed; returns the status now in place.
    async fn update_status(
        &self,
        rs: &ReplicaSet,
        status: ReplicaSetStatus,
    ) -> Result<ReplicaSetStatus, ReplicaSetError> {
        if rs.status.as_ref() == Some(&status) {
            return Ok(status);
        }
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let mut obj = rs.clone();
        for attempt in 0..2 {
            obj.status = Some(status.clone());
            match api.replace_status(name, &PostParams::default(), &obj).await {
                Ok(_) => return Ok(status),
                Err(kube::Error::Api(e)) if e.code == 409 && attempt == 0 => {
                    match api.get_opt(name).await? {
                        Some(fresh) if fresh.metadata.uid == rs.metadata.uid => obj = fresh,
                        _ => return Ok(status),
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(status),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(status)
    }
}

/// Whether a ReplicaSet changed in its status alone.
fn status_only(old: &ReplicaSet, new: &ReplicaSet) -> bool {
    let rest = |m: &ObjectMeta| ObjectMeta {
        resource_version: None,
        managed_fields: None,
        ..m.clone()
    };
    old.spec == new.spec && rest(&old.metadata) == rest(&new.metadata)
}

/// A pod built from the ReplicaSet's template.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                rs.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref::controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Runs `f` `count` times in batches of 1, 2, 4, ...; stops after a batch with a
/// failure. Returns how many succeeded and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    while batch > 0 {
        let results = join_all((0..batch).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(batch * 2);
    }
    (successes, None)
}

/// The status a ReplicaSet's pods give it.
fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_error: Option<&ReplicaSetError>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let no_labels = BTreeMap::new();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&no_labels);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for p in pods {
        let labels = p.metadata.labels.as_ref().unwrap_or(&no_labels);
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if pod_util::is_ready(p) {
            ready += 1;
            if pod_util::is_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let mut status = rs.status.clone().unwrap_or_default();
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas = Some(fully_labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.observed_generation = rs.metadata.generation;
    let mut conditions = status.conditions.take().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(e) if !has_failure => {
            let verb = if pods.len() < spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(verb.into()),
                message: Some(match e {
                    ReplicaSetError::Api(e) => crate::api_error::message(e),
                }),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn slow_start_doubles_and_stops_at_a_failure() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n == 4 { Err("boom") } else { Ok(()) } }
        })
        .await;
        // Batches of 1, 2, then 4 (the fifth call fails): 7 calls, 6 successes.
        assert_eq!(calls.load(Ordering::SeqCst), 7);
        assert_eq!(ok, 6);
        assert_eq!(err, Some("boom"));
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), ()>(()) }
        })
        .await;
        assert_eq!((ok, err, calls.load(Ordering::SeqCst)), (10, None, 10));
    }

    #[test]
    fn status_changes_wait_in_proportion_to_the_pods_a_sync_walks() {
        assert_eq!(status_batch(0), Duration::ZERO);
        assert_eq!(status_batch(3), Duration::from_micros(300));
        assert_eq!(status_batch(1000), Duration::from_millis(100));
        assert_eq!(status_batch(100_000), STATUS_BATCH_MAX);
    }

    #[test]
    fn a_status_write_alone_is_no_reason_to_sync() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}
        }))
        .unwrap();
        let mut written = rs.clone();
        written.metadata.resource_version = Some("6".into());
        written.status = Some(ReplicaSetStatus {
            replicas: 2,
            ..Default::default()
        });
        assert!(status_only(&rs, &written));
        let mut scaled = written.clone();
        scaled.spec.as_mut().unwrap().replicas = Some(3);
        assert!(!status_only(&written, &scaled));
        let mut relabeled = written.clone();
        relabeled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(!status_only(&written, &relabeled));
    }

    #[test]
    fn pods_come_from_the_template_with_a_controller_reference() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap();
        let p = pod_from_template(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.metadata.labels.unwrap()["app"], "web");
        let r = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (
                r.kind.as_str(),
                r.uid.as_str(),
                r.controller,
                r.block_owner_deletion
            ),
            ("ReplicaSet", "u1", Some(true), Some(true))
        );
    }
}
