//! The Job controller: runs pods until `completions` of them succeed (or, in Indexed
//! mode, one per index), at most `parallelism` at once; counts each finished pod
//! exactly once through the `batch.kubernetes.io/job-tracking` finalizer and
//! `status.uncountedTerminatedPods`, as upstream does; retries failed pods after an
//! exponential backoff until `backoffLimit` (BackoffLimitExceeded), stops at
//! `activeDeadlineSeconds` (DeadlineExceeded), honours `suspend`, and finishes with
//! the Complete or Failed condition that `kubectl wait` reads.

pub mod indexes;
pub mod pods;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use serde_json::json;

use crate::clock::Clock;
use crate::controller_ref::{self, controller_of, patch_metadata_field};
use crate::events::EventRecorder;
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{object_key, split_key};
use crate::queue::WorkQueue;
use crate::written::LastWritten;

/// Errors of the Job controller.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

/// Failures since the last success, for the backoff before new pods.
#[derive(Clone, Copy, Debug, Default)]
struct BackoffRecord {
    failures: u32,
    last_failure: Option<Timestamp>,
}

/// The first retry delay after a pod failure (doubled per failure since the last
/// success), and the longest.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

impl BackoffRecord {
    fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure.filter(|_| self.failures > 0) else {
            return Duration::ZERO;
        };
        let exp = (self.failures - 1).min(16);
        let delay = POD_FAILURE_BACKOFF
            .checked_mul(1 << exp)
            .unwrap_or(MAX_POD_FAILURE_BACKOFF)
            .min(MAX_POD_FAILURE_BACKOFF);
        let since = now.duration_since(last);
        if since.is_negative() {
            return delay;
        }
        delay.saturating_sub(since.unsigned_abs())
    }
}

pub struct JobController {
    client: Client,
    clock: Arc<dyn Clock>,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    expectations: Expectations,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
    /// Pods (by uid) whose finalizer removal was sent and not yet seen.
    releasing: Mutex<HashSet<String>>,
    /// The last Job written per key, until the cache catches up.
    written: LastWritten<Job>,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
    /// Pods that hold the tracking finalizer without a Job that will count them.
    orphans: WorkQueue<String>,
}

async fn run(ctx: ControllerContext) {
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    let ctrl = Arc::new(JobController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        expectations: Expectations::new(),
        backoff: Mutex::new(HashMap::new()),
        releasing: Mutex::new(HashSet::new()),
        written: LastWritten::default(),
        recorder: ctx.recorder("job-controller"),
        queue: WorkQueue::new(),
        orphans: WorkQueue::new(),
    });
    let mut job_changes = jobs.subscribe();
    let mut pod_changes = pods.subscribe();
    let c = ctrl.clone();
    let job_feed = async move {
        while let Some(ch) = job_changes.recv().await {
            match ch {
                Change::Applied { new, .. } => c.queue.add(object_key(new.as_ref())),
                Change::Deleted(j) => {
                    let key = object_key(j.as_ref());
                    c.expectations.forget(&key);
                    c.backoff.lock().expect("backoff lock").remove(&key);
                    // Its pods lose their finalizers.
                    let ns = j.metadata.namespace.as_deref().unwrap_or_default();
                    for p in c.pods.list_namespace(ns) {
                        if pods::has_finalizer(&p)
                            && controller_of(&p.metadata).map(|r| &r.uid) == j.metadata.uid.as_ref()
                        {
                            c.orphans.add(object_key(p.as_ref()));
                        }
                    }
                }
            }
        }
    };
    let c = ctrl.clone();
    let pod_feed = async move {
        while let Some(ch) = pod_changes.recv().await {
            c.on_pod(ch);
        }
    };
    jobs.synced().await;
    pods.synced().await;
    let c = ctrl.clone();
    let workers = ctrl.queue.run(ctx.config.workers, "job", move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
    let c = ctrl.clone();
    let orphan_workers = ctrl.orphans.run(1, "job-orphan-pods", move |key| {
        let c = c.clone();
        async move { c.sync_orphan(&key).await }
    });
    futures::join!(job_feed, pod_feed, workers, orphan_workers);
}

impl JobController {
    fn owner_of(&self, pod: &Pod) -> Option<Arc<Job>> {
        controller_ref::resolve(&self.jobs, &pod.metadata)
    }

    fn on_pod(&self, c: Change<Pod>) {
        let seen_released = match &c {
            Change::Applied { new, .. } => (!pods::has_finalizer(new)).then(|| new.clone()),
            Change::Deleted(p) => Some(p.clone()),
        };
        if let Some(p) = seen_released
            && let Some(uid) = &p.metadata.uid
        {
            self.releasing.lock().expect("releasing lock").remove(uid);
        }
        match c {
            Change::Applied { old, new } => {
                if let Some(old) = &old
                    && old.metadata.resource_version == new.metadata.resource_version
                {
                    return;
                }
                let Some(job) = self.owner_of(&new) else {
                    if pods::has_finalizer(&new) {
                        self.orphans.add(object_key(new.as_ref()));
                    }
                    return;
                };
                let key = object_key(job.as_ref());
                let deleting = new.metadata.deletion_timestamp.is_some();
                let was_deleting = old
                    .as_ref()
                    .is_some_and(|o| o.metadata.deletion_timestamp.is_some());
                if old.is_none() && !deleting {
                    self.expectations.creation_observed(&key);
                } else if deleting && !was_deleting {
                    self.expectations
                        .deletion_observed(&key, &object_key(new.as_ref()));
                }
                self.queue.add(key);
            }
            Change::Deleted(p) => {
                if let Some(job) = self.owner_of(&p) {
                    let key = object_key(job.as_ref());
                    self.expectations
                        .deletion_observed(&key, &object_key(p.as_ref()));
                    self.queue.add(key);
                }
            }
        }
    }

    /// Removes the tracking finalizer of a pod no live, unfinished Job will count
    /// (its Job is gone, or finished, or it has none).
    async fn sync_orphan(&self, key: &str) -> Result<Option<Duration>, JobError> {
        let (ns, name) = split_key(key);
        let Some(pod) = self.pods.get(ns, name) else {
            return Ok(None);
        };
        if !pods::has_finalizer(&pod) {
            return Ok(None);
        }
        let ns = ns.unwrap_or_default();
        if let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "Job") {
            let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
            if let Some(job) = api.get_opt(&r.name).await?
                && job.metadata.uid.as_deref() == Some(r.uid.as_str())
                && !sync::is_finished(&job)
            {
                tracing::debug!("job-orphan-pods: {key} stays with its job");
                // Its Job counts it.
                self.queue.add(object_key(&job));
                return Ok(None);
            }
        }
        tracing::debug!("job-orphan-pods: releasing {key}");
        self.remove_finalizer(&pod).await?;
        Ok(None)
    }

    /// Takes the tracking finalizer off a pod (provided it is the version seen).
    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), JobError> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        match patch_metadata_field(
            &api,
            &pod.metadata,
            "finalizers",
            json!(pods::finalizers_without_tracking(pod)),
        )
        .await
        {
            Ok(p) => {
                if pods::has_finalizer(pod)
                    && !pods::has_finalizer(&p)
                    && let Some(uid) = p.metadata.uid
                {
                    self.releasing.lock().expect("releasing lock").insert(uid);
                }
                Ok(())
            }
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_the_last_failure() {
        let at: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let later = |s: i64| at.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        let mut r = BackoffRecord::default();
        assert_eq!(r.remaining(at), Duration::ZERO);
        r.failures = 1;
        r.last_failure = Some(at);
        assert_eq!(r.remaining(later(4)), Duration::from_secs(6));
        r.failures = 3;
        assert_eq!(r.remaining(later(10)), Duration::from_secs(30));
        r.failures = 30;
        assert_eq!(r.remaining(at), MAX_POD_FAILURE_BACKOFF);
        assert_eq!(r.remaining(later(400)), Duration::ZERO);
    }
}
