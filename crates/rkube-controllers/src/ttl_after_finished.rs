//! TTL after finished: deletes a Job that finished (Complete or Failed) once its
//! `ttlSecondsAfterFinished` have passed since it did, pods first (foreground),
//! after checking against the API that the Job is still the one that expired.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::{Api, Client};

use crate::clock::Clock;
use crate::informer::{Change, feed};
use crate::manager::ControllerContext;
use crate::pod_util::{object_key, split_key};
use crate::queue::WorkQueue;

/// Errors of the TTL-after-finished controller.
#[derive(Debug, thiserror::Error)]
pub enum TtlError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

/// When a Job finished: the transition time of its Complete or Failed condition.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))?
}

/// When a Job expires, if it has a TTL and finished.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    finished_at(job)?
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .ok()
}

struct TtlController {
    client: Client,
    clock: Arc<dyn Clock>,
    jobs: Arc<crate::informer::Informer<Job>>,
}

async fn run(ctx: ControllerContext) {
    let jobs = ctx.informers.get::<Job>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let feed = feed(jobs.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } if expires_at(&new).is_some() => Some(object_key(new.as_ref())),
        _ => None,
    });
    jobs.synced().await;
    let ctrl = Arc::new(TtlController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        jobs,
    });
    let workers = queue.run(ctx.config.workers, "ttl-after-finished", move |key| {
        let c = ctrl.clone();
        async move { c.sync(&key).await }
    });
    futures::join!(feed, workers);
}

impl TtlController {
    /// How long until `job` expires; zero once it has.
    fn remaining(&self, job: &Job) -> Option<Duration> {
        let at = expires_at(job)?;
        let left = at.duration_since(self.clock.now());
        Some(if left.is_negative() {
            Duration::ZERO
        } else {
            left.unsigned_abs()
        })
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, TtlError> {
        let (ns, name) = split_key(key);
        let Some(job) = self.jobs.get(ns, name) else {
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        match self.remaining(&job) {
            None => return Ok(None),
            Some(left) if !left.is_zero() => return Ok(Some(left)),
            Some(_) => {}
        }
        // The cache may be behind a change of the TTL: decide on the Job as it is.
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns.unwrap_or_default());
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(None);
        };
        match self.remaining(&fresh) {
            None => return Ok(None),
            Some(left) if !left.is_zero() => return Ok(Some(left)),
            Some(_) => {}
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(None),
            Err(e) if crate::api_error::is_not_found(&e) => Ok(None),
            // Changed meanwhile: look again.
            Err(e) if crate::api_error::code(&e) == Some(409) => Ok(Some(Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_expires_its_ttl_after_it_finished() {
        let job = |ttl: serde_json::Value, cond: &str| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "j"},
                "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
                "status": {"conditions": [{"type": cond, "status": "True",
                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
            }))
            .unwrap()
        };
        assert_eq!(
            expires_at(&job(json!(100), "Complete"))
                .unwrap()
                .to_string(),
            "2025-01-01T00:01:40Z"
        );
        assert!(expires_at(&job(json!(0), "Failed")).is_some());
        assert!(expires_at(&job(json!(100), "Suspended")).is_none());
        assert!(expires_at(&job(serde_json::Value::Null, "Complete")).is_none());
    }
}
