//! One sync of one Job, in upstream's order: note the pods that finished since the
//! last sync in `uncountedTerminatedPods`, decide whether the Job failed (backoff
//! limit, deadline) or succeeded, create or delete pods toward the wanted number
//! of active ones, then take the finalizers off the noted pods and move them into
//! the counts, and finish the Job once no pod is left uncounted.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::pods::{self, has_finalizer};
use super::{BackoffRecord, JobController, JobError, indexes};
use crate::controller_ref;
use crate::pod_util::{self, object_key, split_key};
use crate::replicaset::{ranking, slow_start_batch};

/// At most this many pods are created or deleted in one sync.
const BURST: usize = 500;

/// Whether a Job has its final condition.
pub fn is_finished(job: &Job) -> bool {
    conditions(job)
        .iter()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn conditions(job: &Job) -> Vec<JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn condition<'a>(s: &'a JobStatus, ty: &str) -> Option<&'a JobCondition> {
    s.conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
}

/// Sets a condition (replacing one of the same type whose status differs).
fn set_condition(
    s: &mut JobStatus,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let list = s.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = list.iter_mut().find(|c| c.type_ == ty) {
        if c.status == status {
            return;
        }
        *c = JobCondition::default();
        c.type_ = ty.into();
        fill(c, status, reason, message, now);
        return;
    }
    let mut c = JobCondition {
        type_: ty.into(),
        ..Default::default()
    };
    fill(&mut c, status, reason, message, now);
    list.push(c);
}

fn fill(c: &mut JobCondition, status: &str, reason: &str, message: &str, now: Timestamp) {
    c.status = status.into();
    c.reason = Some(reason.into());
    c.message = Some(message.into());
    c.last_probe_time = Some(Time(now));
    c.last_transition_time = Some(Time(now));
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// How a Job's run ends.
#[derive(Clone, Debug, PartialEq)]
enum Finish {
    Failed { reason: String, message: String },
    Complete,
}

const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";
const COMPLETIONS_REASON: &str = "CompletionsReached";
const COMPLETIONS_MESSAGE: &str = "Reached expected number of succeeded pods";

impl JobController {
    pub(super) async fn sync(&self, key: &str) -> Result<Option<Duration>, JobError> {
        let (ns, name) = split_key(key);
        let Some(cached) = self.jobs.get(ns, name) else {
            self.expectations.forget(key);
            self.written.forget(key);
            return Ok(None);
        };
        let job = self.written.newest(key, cached);
        let ns = ns.unwrap_or_default();
        let spec = job.spec.clone().unwrap_or_default();
        if spec
            .managed_by
            .as_deref()
            .is_some_and(|m| m != "kubernetes.io/job-controller")
        {
            return Ok(None);
        }
        let Ok(selector) = pod_util::selector(spec.selector.as_ref()) else {
            tracing::warn!("job {key}: invalid selector");
            return Ok(None);
        };
        // Read before the pods: a cache that caught up after the listing would
        // otherwise pass for one that had when it was listed.
        let satisfied = self.expectations.satisfied(key);
        // Likewise the finalizers on their way off: a pod whose removal is seen
        // after this point may still show its finalizer in the listing.
        let releasing = self.releasing.lock().expect("releasing lock").clone();
        let candidates = self
            .pods
            .list_claimable(ns, job.metadata.uid.as_deref().unwrap_or_default());
        let all_pods = controller_ref::claim(&self.client, job.as_ref(), candidates, |p: &Pod| {
            !selector.is_empty() && pod_util::matches(&selector, p.metadata.labels.as_ref())
        })
        .await?;
        if is_finished(&job) {
            // Finished: what is left only loses its finalizer.
            for p in all_pods.iter().filter(|p| has_finalizer(p)) {
                if pods::is_active(p) {
                    self.delete_pod(&job, p).await?;
                }
                self.remove_finalizer(p).await?;
            }
            return Ok(None);
        }
        let mut run = JobRun::new(self, job.clone(), key);
        run.satisfied = satisfied;
        run.releasing = releasing;
        run.note_finished(&all_pods);
        run.decide(&all_pods);
        tracing::debug!(
            "job {key} at {:?}: {} pods, finish {:?}, succeeded {}, failed {}",
            job.metadata.resource_version,
            all_pods.len(),
            run.finish,
            run.succeeded(),
            run.failed()
        );
        let manage = run.manage(&all_pods).await;
        run.track(&all_pods).await?;
        manage?;
        Ok(run.requeue)
    }
}

/// The state of one sync.
struct JobRun<'a> {
    ctrl: &'a JobController,
    job: Arc<Job>,
    key: String,
    api: Api<Job>,
    pods_api: Api<Pod>,
    now: Timestamp,
    status: JobStatus,
    uncounted: UncountedTerminatedPods,
    /// Whether `uncounted` gained uids this sync.
    noted: bool,
    /// Terminal pods whose finalizer comes off this sync.
    release: Vec<Arc<Pod>>,
    succeeded_indexes: BTreeSet<i32>,
    /// Whether the pods were listed after the cache had seen this controller's
    /// own creations and deletions.
    satisfied: bool,
    /// Pods whose finalizer removal was sent, as of before the listing.
    releasing: HashSet<String>,
    /// The failures since the last success, with what this sync noted.
    backoff: BackoffRecord,
    finish: Option<Finish>,
    /// Active pods created (+) and deleted (-) this sync.
    active_delta: i32,
    deleted: i32,
    requeue: Option<Duration>,
}

impl<'a> JobRun<'a> {
    fn new(ctrl: &'a JobController, job: Arc<Job>, key: &str) -> Self {
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let status = job.status.clone().unwrap_or_default();
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        let succeeded_indexes = indexes::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions,
        );
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let backoff = ctrl
            .backoff
            .lock()
            .expect("backoff lock")
            .get(key)
            .copied()
            .unwrap_or_default();
        JobRun {
            backoff,
            satisfied: false,
            releasing: HashSet::new(),
            ctrl,
            api: Api::namespaced(ctrl.client.clone(), &ns),
            pods_api: Api::namespaced(ctrl.client.clone(), &ns),
            key: key.to_string(),
            now: ctrl.clock.now(),
            status,
            uncounted,
            noted: false,
            release: Vec::new(),
            succeeded_indexes,
            finish: None,
            active_delta: 0,
            deleted: 0,
            requeue: None,
            job,
        }
    }

    fn spec(&self) -> k8s_openapi::api::batch::v1::JobSpec {
        self.job.spec.clone().unwrap_or_default()
    }

    fn indexed(&self) -> bool {
        self.spec().completion_mode.as_deref() == Some("Indexed")
    }

    fn suspended(&self) -> bool {
        self.spec().suspend == Some(true)
    }

    fn listed(list: &Option<Vec<String>>, uid: &str) -> bool {
        list.as_ref().is_some_and(|l| l.iter().any(|u| u == uid))
    }

    /// Notes the pods that finished since the last sync (once each, by uid).
    fn note_finished(&mut self, all: &[Arc<Pod>]) {
        let completions = self.spec().completions.unwrap_or(0);
        // The record changes only once the noted pods are written (a sync that
        // fails before would note them again).
        let mut record = self.backoff;
        // Indexes noted but not yet counted.
        for p in all {
            if Self::listed(&self.uncounted.succeeded, &uid(p))
                && let Some(i) = indexes::of_pod(p)
            {
                self.succeeded_indexes.insert(i);
            }
        }
        let releasing = std::mem::take(&mut self.releasing);
        let suspended = self.suspended();
        for p in all.iter().filter(|p| has_finalizer(p)) {
            let u = uid(p);
            if releasing.contains(&u) {
                // Its finalizer is already coming off; the cache is behind.
                continue;
            }
            if Self::listed(&self.uncounted.succeeded, &u)
                || Self::listed(&self.uncounted.failed, &u)
            {
                self.release.push(p.clone());
                continue;
            }
            if pods::is_succeeded(p) {
                let counts = !self.indexed()
                    || indexes::of_pod(p)
                        .is_some_and(|i| i < completions && self.succeeded_indexes.insert(i));
                if counts {
                    self.uncounted
                        .succeeded
                        .get_or_insert_with(Vec::new)
                        .push(u);
                    self.noted = true;
                    record.failures = 0;
                }
                self.release.push(p.clone());
            } else if suspended && pods::is_terminating(p) {
                // Stopped by the suspension, not a failure.
                self.release.push(p.clone());
            } else if pods::is_failed(p) {
                self.uncounted.failed.get_or_insert_with(Vec::new).push(u);
                self.noted = true;
                record.failures += 1;
                let at = pods::finish_time(p, self.now);
                record.last_failure = Some(record.last_failure.map_or(at, |l| l.max(at)));
                self.release.push(p.clone());
            }
        }
        self.backoff = record;
    }

    fn succeeded(&self) -> i32 {
        self.status.succeeded.unwrap_or(0)
            + self
                .uncounted
                .succeeded
                .as_ref()
                .map_or(0, |l| l.len() as i32)
    }

    fn failed(&self) -> i32 {
        self.status.failed.unwrap_or(0)
            + self.uncounted.failed.as_ref().map_or(0, |l| l.len() as i32)
    }

    /// Whether the Job failed or succeeded, from what is known now. A decision
    /// already written (FailureTarget, SuccessCriteriaMet) stands.
    fn decide(&mut self, all: &[Arc<Pod>]) {
        if let Some(c) = condition(&self.status, "FailureTarget") {
            self.finish = Some(Finish::Failed {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            });
            return;
        }
        if condition(&self.status, "SuccessCriteriaMet").is_some() {
            self.finish = Some(Finish::Complete);
            return;
        }
        let spec = self.spec();
        let suspended = self.suspended();
        let was_suspended = condition(&self.status, "Suspended").is_some();
        if !suspended && (self.status.start_time.is_none() || was_suspended) {
            // A resumed Job's deadline counts from the resumption.
            self.status.start_time = Some(Time(self.now));
        }
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let active: Vec<&Arc<Pod>> = all.iter().filter(|p| pods::is_active(p)).collect();
        let restarts: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active.iter().map(|p| pods::restarts(p)).sum()
        } else {
            0
        };
        let past_restarts = restarts > 0 && (backoff_limit == 0 || restarts >= backoff_limit);
        if self.failed() > backoff_limit || past_restarts {
            self.finish = Some(Finish::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: BACKOFF_MESSAGE.into(),
            });
            return;
        }
        if !suspended
            && let (Some(deadline), Some(start)) =
                (spec.active_deadline_seconds, &self.status.start_time)
        {
            let ends = start
                .0
                .checked_add(jiff::SignedDuration::from_secs(deadline));
            match ends {
                Ok(end) if end <= self.now => {
                    self.finish = Some(Finish::Failed {
                        reason: "DeadlineExceeded".into(),
                        message: DEADLINE_MESSAGE.into(),
                    });
                    return;
                }
                Ok(end) => self.want_requeue(end.duration_since(self.now).unsigned_abs()),
                Err(_) => {}
            }
        }
        let complete = match spec.completions {
            Some(c) if self.indexed() => self.succeeded_indexes.len() as i32 >= c,
            Some(c) => self.succeeded() >= c,
            // A work queue: done once one pod succeeded and none is running.
            None => self.succeeded() > 0 && active.is_empty(),
        };
        if complete {
            self.finish = Some(Finish::Complete);
        }
    }

    fn want_requeue(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// How many pods should be running.
    fn want_active(&self, active: i32) -> i32 {
        let spec = self.spec();
        if self.suspended() || self.finish.is_some() {
            return 0;
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        match spec.completions {
            None if self.succeeded() > 0 => active.min(parallelism),
            None => parallelism,
            Some(c) => {
                let done = if self.indexed() {
                    self.succeeded_indexes.len() as i32
                } else {
                    self.succeeded()
                };
                (c - done).clamp(0, parallelism)
            }
        }
    }

    /// Creates or deletes pods toward the wanted number of active ones.
    async fn manage(&mut self, all: &[Arc<Pod>]) -> Result<(), JobError> {
        let mut active: Vec<Arc<Pod>> =
            all.iter().filter(|p| pods::is_active(p)).cloned().collect();
        if !self.satisfied && self.finish.is_none() {
            return Ok(());
        }
        let mut doomed: Vec<Arc<Pod>> = Vec::new();
        if self.indexed() {
            // Pods of an index that is done, out of range, or taken twice go first.
            let completions = self.spec().completions.unwrap_or(0);
            let mut seen = HashSet::new();
            active.retain(|p| {
                let keep = indexes::of_pod(p).is_some_and(|i| {
                    i < completions && !self.succeeded_indexes.contains(&i) && seen.insert(i)
                });
                if !keep {
                    doomed.push(p.clone());
                }
                keep
            });
        }
        let want = self.want_active(active.len() as i32) as usize;
        if active.len() > want {
            let n = (active.len() - want).min(BURST);
            doomed.extend(ranking::pods_to_delete(&active, &active, n, self.now));
        }
        if !doomed.is_empty() {
            let n = doomed.len();
            self.ctrl
                .expectations
                .expect_deletions(&self.key, doomed.iter().map(|p| object_key(p.as_ref())));
            let mut first_err = None;
            for p in &doomed {
                match self.ctrl.delete_pod(&self.job, p).await {
                    Ok(()) => {}
                    Err(e) => {
                        self.ctrl
                            .expectations
                            .deletion_observed(&self.key, &object_key(p.as_ref()));
                        first_err.get_or_insert(e);
                    }
                }
            }
            self.active_delta -= n as i32;
            self.deleted += n as i32;
            if let Some(e) = first_err {
                return Err(e);
            }
            return Ok(());
        }
        if active.len() >= want {
            return Ok(());
        }
        let remaining = self.backoff.remaining(self.now);
        if !remaining.is_zero() {
            self.want_requeue(remaining);
            return Ok(());
        }
        let n = (want - active.len()).min(BURST);
        let plan: Vec<Option<i32>> = if self.indexed() {
            let completions = self.spec().completions.unwrap_or(0);
            let busy: HashSet<i32> = active.iter().filter_map(|p| indexes::of_pod(p)).collect();
            (0..completions)
                .filter(|i| !self.succeeded_indexes.contains(i) && !busy.contains(i))
                .take(n)
                .map(Some)
                .collect()
        } else {
            vec![None; n]
        };
        let n = plan.len();
        tracing::debug!(
            "job {}: creating {n} pods ({plan:?}), {} active of {want}",
            self.key,
            active.len()
        );
        self.ctrl.expectations.expect_creations(&self.key, n);
        let next = AtomicUsize::new(0);
        let (created, err) = slow_start_batch(n, 1, || {
            let index = plan[next.fetch_add(1, Ordering::SeqCst)];
            let pod = pods::new_pod(&self.job, index);
            let api = self.pods_api.clone();
            let job = self.job.clone();
            let rec = self.ctrl.recorder.clone();
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        rec.normal(
                            job.as_ref(),
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        rec.warning(
                            job.as_ref(),
                            "FailedCreate",
                            format!("Error creating: {}", crate::api_error::message(&e)),
                        );
                        Err(e)
                    }
                }
            }
        })
        .await;
        for _ in created..n {
            self.ctrl.expectations.creation_observed(&self.key);
        }
        self.active_delta += created as i32;
        if let Some(e) = err {
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes what this sync learnt: first the noted pods (so a crash never counts
    /// one twice), then takes their finalizers off and moves them into the counts.
    async fn track(&mut self, all: &[Arc<Pod>]) -> Result<(), JobError> {
        let active = all.iter().filter(|p| pods::is_active(p)).count() as i32 + self.active_delta;
        let ready = all
            .iter()
            .filter(|p| pods::is_active(p) && pod_util::is_ready(p))
            .count() as i32;
        let terminating =
            all.iter().filter(|p| pods::is_terminating(p)).count() as i32 + self.deleted;
        self.status.active = Some(active.max(0));
        self.status.ready = Some(ready);
        self.status.terminating = Some(terminating.max(0));
        self.set_interim_conditions();
        self.status.uncounted_terminated_pods = Some(self.uncounted.clone());
        if self.noted {
            self.write().await?;
            self.ctrl
                .backoff
                .lock()
                .expect("backoff lock")
                .insert(self.key.clone(), self.backoff);
        }
        // Finalizers off the noted pods; those whose finalizer is gone are counted.
        let results = join_all(self.release.iter().map(|p| self.ctrl.remove_finalizer(p))).await;
        let mut released: HashSet<String> = HashSet::new();
        let mut first_err = None;
        for (p, r) in self.release.iter().zip(results) {
            match r {
                Ok(()) => {
                    released.insert(uid(p));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Noted pods no longer in the cache have lost their finalizer already.
        let present: HashSet<String> = all
            .iter()
            .filter(|p| has_finalizer(p))
            .map(|p| uid(p))
            .collect();
        let counted = |u: &String| released.contains(u) || !present.contains(u);
        let mut succeeded = self.status.succeeded.unwrap_or(0);
        let mut failed = self.status.failed.unwrap_or(0);
        let su = self.uncounted.succeeded.take().unwrap_or_default();
        let fu = self.uncounted.failed.take().unwrap_or_default();
        let (done_s, left_s): (Vec<String>, Vec<String>) = su.into_iter().partition(counted);
        let (done_f, left_f): (Vec<String>, Vec<String>) = fu.into_iter().partition(counted);
        succeeded += done_s.len() as i32;
        failed += done_f.len() as i32;
        self.uncounted = UncountedTerminatedPods {
            succeeded: Some(left_s),
            failed: Some(left_f),
        };
        self.status.succeeded = Some(succeeded);
        self.status.failed = Some(failed);
        if self.indexed() {
            // Indexes are recorded once their pods are counted.
            let mut counted_idx = indexes::parse(
                self.status.completed_indexes.as_deref().unwrap_or(""),
                i32::MAX,
            );
            for p in all {
                if done_s.contains(&uid(p))
                    && let Some(i) = indexes::of_pod(p)
                {
                    counted_idx.insert(i);
                }
            }
            self.status.completed_indexes = Some(indexes::format(&counted_idx));
        }
        self.status.uncounted_terminated_pods = Some(self.uncounted.clone());
        let all_counted = self.uncounted.succeeded.as_ref().is_none_or(Vec::is_empty)
            && self.uncounted.failed.as_ref().is_none_or(Vec::is_empty);
        let holding = all
            .iter()
            .filter(|p| has_finalizer(p) && !released.contains(&uid(p)))
            .count();
        if all_counted && holding == 0 && self.status.active == Some(0) {
            self.set_final_condition();
        }
        self.write().await?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Suspended, FailureTarget, SuccessCriteriaMet: what is decided before the end.
    fn set_interim_conditions(&mut self) {
        let now = self.now;
        let suspended = self.suspended();
        let was = condition(&self.status, "Suspended").is_some();
        if self.finish.is_none() && suspended && !was {
            set_condition(
                &mut self.status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            self.ctrl
                .recorder
                .normal(self.job.as_ref(), "Suspended", "Job suspended");
        } else if !suspended && was {
            set_condition(
                &mut self.status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            self.ctrl
                .recorder
                .normal(self.job.as_ref(), "Resumed", "Job resumed");
        }
        // An existing condition of the same status is kept as it is.
        match self.finish.clone() {
            Some(Finish::Failed { reason, message }) => set_condition(
                &mut self.status,
                "FailureTarget",
                "True",
                &reason,
                &message,
                now,
            ),
            Some(Finish::Complete) => set_condition(
                &mut self.status,
                "SuccessCriteriaMet",
                "True",
                COMPLETIONS_REASON,
                COMPLETIONS_MESSAGE,
                now,
            ),
            None => {}
        }
    }

    /// Failed or Complete, once every pod is counted.
    fn set_final_condition(&mut self) {
        let now = self.now;
        match self.finish.clone() {
            Some(Finish::Failed { reason, message }) => {
                set_condition(&mut self.status, "Failed", "True", &reason, &message, now);
                self.ctrl
                    .recorder
                    .warning(self.job.as_ref(), &reason, message);
            }
            Some(Finish::Complete) => {
                set_condition(
                    &mut self.status,
                    "Complete",
                    "True",
                    COMPLETIONS_REASON,
                    COMPLETIONS_MESSAGE,
                    now,
                );
                self.status.completion_time = Some(Time(now));
                self.ctrl
                    .recorder
                    .normal(self.job.as_ref(), "Completed", "Job completed");
            }
            None => {}
        }
    }

    async fn write(&mut self) -> Result<(), JobError> {
        if self.job.status.as_ref() == Some(&self.status) {
            return Ok(());
        }
        // Against the version the counts were computed from: a conflict means the
        // cache was behind, and the sync starts over rather than count twice.
        let mut obj = (*self.job).clone();
        obj.status = Some(self.status.clone());
        let name = obj.metadata.name.clone().unwrap_or_default();
        match self
            .api
            .replace_status(&name, &PostParams::default(), &obj)
            .await
        {
            Ok(j) => {
                self.job = Arc::new(j);
                self.ctrl.written.record(&self.key, self.job.clone());
                Ok(())
            }
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl JobController {
    /// Deletes one of the Job's pods (its finalizer keeps it until counted).
    pub(super) async fn delete_pod(&self, job: &Job, pod: &Pod) -> Result<(), JobError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                self.recorder
                    .normal(job, "SuccessfulDelete", format!("Deleted pod: {name}"));
                Ok(())
            }
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => {
                self.recorder.warning(
                    job,
                    "FailedDelete",
                    format!("Error deleting: {}", crate::api_error::message(&e)),
                );
                Err(e.into())
            }
        }
    }
}
