//! The CronJob controller: creates a Job `<cronjob>-<minutes since epoch>` from the
//! jobTemplate at each time the schedule names (in `timeZone`, UTC without one),
//! unless it is suspended, too late for `startingDeadlineSeconds`, or forbidden by
//! `concurrencyPolicy` (Forbid skips, Replace deletes the running Jobs first);
//! keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; deletes
//! finished Jobs beyond the history limits; words its events as upstream does.

pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::{Api, Client, Resource};
use rkube_api::cron::Schedule;

use crate::clock::Clock;
use crate::controller_ref::{self, controller_of};
use crate::events::EventRecorder;
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{object_key, split_key};
use crate::queue::WorkQueue;
use crate::written::LastWritten;
use schedule::{TOO_MANY_MISSED, ZonedSchedule, most_recent};

/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Errors of the CronJob controller.
#[derive(Debug, thiserror::Error)]
pub enum CronJobError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

pub struct CronJobController {
    client: Client,
    clock: Arc<dyn Clock>,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
    written: LastWritten<CronJob>,
}

async fn run(ctx: ControllerContext) {
    let cronjobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    let ctrl = Arc::new(CronJobController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        cronjobs: cronjobs.clone(),
        jobs: jobs.clone(),
        recorder: ctx.recorder("cronjob-controller"),
        queue: WorkQueue::new(),
        written: LastWritten::default(),
    });
    let mut cj_changes = cronjobs.subscribe();
    let mut job_changes = jobs.subscribe();
    let c = ctrl.clone();
    let cj_feed = async move {
        while let Some(ch) = cj_changes.recv().await {
            if let Change::Applied { new, .. } = ch {
                c.queue.add(object_key(new.as_ref()));
            }
        }
    };
    let c = ctrl.clone();
    let job_feed = async move {
        while let Some(ch) = job_changes.recv().await {
            let j = match ch {
                Change::Applied { new, .. } => new,
                Change::Deleted(j) => j,
            };
            if let Some(cj) = controller_ref::resolve(&c.cronjobs, &j.metadata) {
                c.queue.add(object_key(cj.as_ref()));
            }
        }
    };
    cronjobs.synced().await;
    jobs.synced().await;
    let c = ctrl.clone();
    let workers = ctrl.queue.run(ctx.config.workers, "cronjob", move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
    futures::join!(cj_feed, job_feed, workers);
}

/// `Complete` or `Failed`, once a Job has finished.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|ty| conds.iter().any(|c| c.type_ == *ty && c.status == "True"))
}

/// The name of the Job for a scheduled time (minutes since the epoch).
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or_default(),
        scheduled.as_second().div_euclid(60)
    )
}

/// RFC 3339 in the zone (`Z` for UTC), as Go prints it.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job to start for a scheduled time.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    let mut r = job.object_ref(&());
    r.field_path = None;
    r
}

/// The start time a finished Job sorts by (its start, else its creation).
fn started(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

impl CronJobController {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, CronJobError> {
        let (ns, name) = split_key(key);
        let Some(cached) = self.cronjobs.get(ns, name) else {
            self.written.forget(key);
            return Ok(None);
        };
        let cj = self.written.newest(key, cached);
        let ns = ns.unwrap_or_default();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(ns)
            .into_iter()
            .filter(|j| controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        let now = self.clock.now();
        self.reconcile_active(&cj, &jobs, &mut status).await?;
        let requeue = self.schedule(&cj, &mut status, now).await?;
        self.cleanup(&cj, &jobs, &mut status).await?;
        if cj.status.as_ref() != Some(&status) {
            // Only this controller writes the status, and what it did (a Job
            // created, one deleted) stands: after a conflict with a change of the
            // spec or metadata, the status goes onto the fresh object as it is.
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            if let Some(written) =
                controller_ref::write_status(&api, cj.as_ref(), |o| o.status = Some(status.clone()))
                    .await?
            {
                self.written.record(key, Arc::new(written));
            }
        }
        Ok(requeue)
    }

    /// Brings `status.active` and `lastSuccessfulTime` in line with the Jobs.
    async fn reconcile_active(
        &self,
        cj: &CronJob,
        jobs: &[Arc<Job>],
        status: &mut CronJobStatus,
    ) -> Result<(), CronJobError> {
        let mut children = HashSet::new();
        for j in jobs {
            let juid = j.metadata.uid.clone().unwrap_or_default();
            children.insert(juid.clone());
            let active = status.active.get_or_insert_with(Vec::new);
            let listed = active
                .iter()
                .any(|r| r.uid.as_deref() == Some(juid.as_str()));
            let done = finished(j);
            if !listed && done.is_none() {
                if let Some(at) = self.forgotten(cj, j) {
                    // Created by a pass whose status write was lost: it is ours and
                    // running (Forbid must see it).
                    active.push(job_ref(j));
                    if status.last_schedule_time.as_ref().is_none_or(|t| t.0 < at) {
                        status.last_schedule_time = Some(Time(at));
                    }
                } else {
                    let jname = j.metadata.name.clone().unwrap_or_default();
                    self.recorder.warning(
                        cj,
                        "UnexpectedJob",
                        format!("Saw a job that the controller did not create or forgot: {jname}"),
                    );
                }
            } else if listed && let Some(cond) = done {
                active.retain(|r| r.uid.as_deref() != Some(juid.as_str()));
                self.recorder.normal(
                    cj,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {cond}",
                        j.metadata.name.as_deref().unwrap_or_default()
                    ),
                );
            }
            if done == Some("Complete")
                && let Some(t) = j.status.as_ref().and_then(|s| s.completion_time.clone())
                && status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| l.0 < t.0)
            {
                status.last_successful_time = Some(t);
            }
        }
        // Listed Jobs that are gone (checked against the API, not the cache).
        let missing: Vec<ObjectReference> = status
            .active
            .iter()
            .flatten()
            .filter(|r| !children.contains(r.uid.as_deref().unwrap_or_default()))
            .cloned()
            .collect();
        let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        for r in missing {
            let name = r.name.clone().unwrap_or_default();
            let gone = match api.get_opt(&name).await? {
                None => true,
                Some(j) => j.metadata.uid != r.uid,
            };
            if gone {
                self.recorder
                    .normal(cj, "MissingJob", format!("Active job went missing: {name}"));
                if let Some(active) = status.active.as_mut() {
                    active.retain(|a| a.uid != r.uid);
                }
            }
        }
        if status.active.as_ref().is_some_and(Vec::is_empty) {
            status.active = None;
        }
        Ok(())
    }

    /// The scheduled time of a Job this controller made (its name and stamp say
    /// so), as opposed to one made by hand from the CronJob.
    fn forgotten(&self, cj: &CronJob, job: &Job) -> Option<Timestamp> {
        let stamp = job
            .metadata
            .annotations
            .as_ref()?
            .get(SCHEDULED_TIMESTAMP)?;
        let at: Timestamp = stamp.parse().ok()?;
        (job.metadata.name.as_deref() == Some(job_name(cj, at).as_str())).then_some(at)
    }

    /// Starts the Job due now, if any; when to look again.
    async fn schedule(
        &self,
        cj: &CronJob,
        status: &mut CronJobStatus,
        now: Timestamp,
    ) -> Result<Option<Duration>, CronJobError> {
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let tz = match spec.time_zone.as_deref() {
            None => TimeZone::UTC,
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.recorder.warning(
                        cj,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {name:?}: {e}"),
                    );
                    return Ok(None);
                }
            },
        };
        let sched = match Schedule::parse(&spec.schedule) {
            Ok(s) => ZonedSchedule { schedule: s, tz },
            Err(e) => {
                self.recorder.warning(
                    cj,
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let next_in = |t: Timestamp| -> Option<Duration> {
            let next = sched.next(t)?;
            let d = next.duration_since(now);
            // A little past the start, so the clock has surely reached it.
            Some(d.unsigned_abs() + Duration::from_millis(100))
        };
        let mut earliest = status
            .last_schedule_time
            .as_ref()
            .or(cj.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
            .unwrap_or(now);
        if let Some(deadline) = spec.starting_deadline_seconds
            && let Ok(limit) = now.checked_sub(SignedDuration::from_secs(deadline))
            && limit > earliest
        {
            earliest = limit;
        }
        let (due, missed) = most_recent(&sched, earliest, now);
        tracing::debug!(
            "cronjob {}: now {now}, earliest {earliest}, due {due:?}, active {:?}",
            cj.metadata.name.as_deref().unwrap_or_default(),
            status
                .active
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        );
        if missed > TOO_MANY_MISSED {
            self.recorder.warning(
                cj,
                "TooManyMissedTimes",
                format!(
                    "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                ),
            );
        }
        let Some(scheduled) = due else {
            return Ok(next_in(now));
        };
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(SignedDuration::from_secs(deadline))
                .is_ok_and(|t| t < now)
        {
            self.recorder.normal(
                cj,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
                ),
            );
            return Ok(next_in(now));
        }
        let name = job_name(cj, scheduled);
        let active = status.active.clone().unwrap_or_default();
        if active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled)
        {
            return Ok(next_in(now));
        }
        let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                self.recorder.normal(
                    cj,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                );
                return Ok(next_in(now));
            }
            Some("Replace") => {
                for r in &active {
                    let jname = r.name.clone().unwrap_or_default();
                    self.delete_job(cj, &api, &jname).await?;
                    if let Some(a) = status.active.as_mut() {
                        a.retain(|x| x.uid != r.uid);
                    }
                }
            }
            _ => {}
        }
        let job = job_from_template(cj, scheduled, &sched.tz);
        let created = match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.recorder
                    .normal(cj, "SuccessfulCreate", format!("Created job {name}"));
                j
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Made by an earlier pass whose status write was lost: ours if it
                // points at us.
                let existing = api.get(&name).await?;
                if controller_of(&existing.metadata).map(|r| &r.uid) != cj.metadata.uid.as_ref() {
                    return Ok(next_in(now));
                }
                existing
            }
            Err(e) => {
                self.recorder.warning(
                    cj,
                    "FailedCreate",
                    format!("Error creating job: {}", crate::api_error::message(&e)),
                );
                return Err(e.into());
            }
        };
        let refs = status.active.get_or_insert_with(Vec::new);
        if !refs.iter().any(|r| r.uid == created.metadata.uid) {
            refs.push(job_ref(&created));
        }
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next_in(now))
    }

    async fn delete_job(
        &self,
        cj: &CronJob,
        api: &Api<Job>,
        name: &str,
    ) -> Result<(), CronJobError> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                self.recorder
                    .normal(cj, "SuccessfulDelete", format!("Deleted job {name}"));
                Ok(())
            }
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => {
                self.recorder.warning(
                    cj,
                    "FailedDelete",
                    format!("Deleted job: {}", crate::api_error::message(&e)),
                );
                Err(e.into())
            }
        }
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn cleanup(
        &self,
        cj: &CronJob,
        jobs: &[Arc<Job>],
        status: &mut CronJobStatus,
    ) -> Result<(), CronJobError> {
        let spec = cj.spec.clone().unwrap_or_default();
        let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else {
                continue;
            };
            let mut done: Vec<&Arc<Job>> = jobs
                .iter()
                .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
                .collect();
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            if excess == 0 {
                continue;
            }
            done.sort_by_key(|j| started(j));
            for j in &done[..excess] {
                let name = j.metadata.name.clone().unwrap_or_default();
                self.delete_job(cj, &api, &name).await?;
                if let Some(a) = status.active.as_mut() {
                    a.retain(|r| r.uid != j.metadata.uid);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_are_named_and_stamped_for_their_schedule() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap();
        let at: Timestamp = "2025-01-01T10:05:00Z".parse().unwrap();
        let job = job_from_template(&cj, at, &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28928765"));
        assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "hello");
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
            "2025-01-01T10:05:00Z"
        );
        let r = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((r.kind.as_str(), r.controller), ("CronJob", Some(true)));
        let seoul = TimeZone::get("Asia/Seoul").unwrap();
        assert_eq!(
            job_from_template(&cj, at, &seoul)
                .metadata
                .annotations
                .unwrap()[SCHEDULED_TIMESTAMP],
            "2025-01-01T19:05:00+09:00"
        );
    }
}
