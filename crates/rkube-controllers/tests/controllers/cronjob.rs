//! The CronJob controller against a real API server, on a clock the test moves:
//! Jobs at the scheduled times, the active list and last times, history limits,
//! concurrency policies, suspension and the starting deadline.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use rkube_controllers::{Clock, ControllerManagerConfig, FakeClock};
use serde_json::json;

use crate::common::{TestCluster, eventually};

struct CronTest {
    c: TestCluster,
    clock: Arc<FakeClock>,
    cronjobs: Api<CronJob>,
    jobs: Api<Job>,
    nudges: u32,
}

impl CronTest {
    async fn start() -> CronTest {
        let clock = Arc::new(FakeClock::new(Timestamp::now()));
        let c = TestCluster::start_with(ControllerManagerConfig {
            controllers: vec!["cronjob".into()],
            clock: clock.clone(),
            ..Default::default()
        })
        .await;
        CronTest {
            cronjobs: c.api("default"),
            jobs: c.api("default"),
            c,
            clock,
            nudges: 0,
        }
    }

    async fn create(&self, name: &str, spec: serde_json::Value) {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {"metadata": {"labels": {"cron": name}},
                    "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}]}}}}
            }
        });
        if let (Some(s), serde_json::Value::Object(extra)) = (v["spec"].as_object_mut(), spec) {
            s.extend(extra);
        }
        let cj = self
            .cronjobs
            .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
            .await
            .unwrap();
        // The schedule counts from the creation: the clock starts there.
        self.clock.set(cj.metadata.creation_timestamp.unwrap().0);
    }

    /// Moves the clock to a second past the next whole minute and makes the
    /// controller look (its timers run on real time).
    async fn next_minute(&mut self, name: &str) -> Timestamp {
        self.next_minute_plus(name, 1).await
    }

    /// The same, `secs` past the minute.
    async fn next_minute_plus(&mut self, name: &str, secs: i64) -> Timestamp {
        let now = self.clock.now();
        let minute = (now.as_second().div_euclid(60) + 1) * 60;
        let to = Timestamp::from_second(minute + secs).unwrap();
        self.clock.set(to);
        self.nudge(name).await;
        Timestamp::from_second(minute).unwrap()
    }

    async fn nudge(&mut self, name: &str) {
        self.nudges += 1;
        self.cronjobs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"test/nudge": self.nudges.to_string()}}}),
                ),
            )
            .await
            .unwrap();
    }

    async fn job_names(&self, name: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs
            .list(&ListParams::default().labels(&format!("cron={name}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.metadata.name.unwrap())
            .collect();
        names.sort();
        names
    }

    async fn wait_jobs(&self, name: &str, want: &[String]) {
        eventually(30, &format!("jobs {want:?}"), || async {
            (self.job_names(name).await == want).then_some(())
        })
        .await;
    }

    /// Marks a Job finished as the Job controller would.
    async fn finish(&self, job: &str, cond: &str) {
        let now = self.clock.now().to_string();
        let mut status = json!({"conditions": [{"type": cond, "status": "True",
            "lastTransitionTime": now}], "startTime": now});
        if cond == "Complete" {
            status["completionTime"] = json!(now);
        }
        self.jobs
            .patch_status(
                job,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .unwrap();
    }

    async fn status(&self, name: &str, f: impl Fn(&CronJob) -> bool) -> CronJob {
        eventually(30, &format!("the status of {name}"), || async {
            let cj = self.cronjobs.get(name).await.unwrap();
            f(&cj).then_some(cj)
        })
        .await
    }

    async fn event(&self, reason: &str, message: &str) {
        let events: Api<Event> = self.c.api("default");
        eventually(30, &format!("event {reason} {message}"), || async {
            events
                .list(&ListParams::default().fields(&format!("reason={reason}")))
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| e.message.as_deref() == Some(message))
                .then_some(())
        })
        .await;
    }
}

fn job_for(name: &str, at: Timestamp) -> String {
    format!("{name}-{}", at.as_second() / 60)
}

fn active_names(cj: &CronJob) -> Vec<String> {
    cj.status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name.unwrap_or_default())
        .collect()
}

/// A Job at each scheduled minute, named for it; finished Jobs leave the active
/// list and set lastSuccessfulTime; beyond the history limit the oldest go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_start_on_schedule_and_old_ones_go() {
    let mut t = CronTest::start().await;
    t.create("tick", json!({"successfulJobsHistoryLimit": 2}))
        .await;
    t.nudge("tick").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        t.job_names("tick").await.is_empty(),
        "a job before its time"
    );
    let mut made = Vec::new();
    for round in 0..3 {
        let at = t.next_minute("tick").await;
        made.push(job_for("tick", at));
        t.wait_jobs("tick", &made[made.len().saturating_sub(3)..])
            .await;
        let cj = t
            .status("tick", |cj| active_names(cj) == [job_for("tick", at)])
            .await;
        let st = cj.status.unwrap();
        assert_eq!(st.last_schedule_time.unwrap().0, at);
        let job = t.jobs.get(&job_for("tick", at)).await.unwrap();
        assert_eq!(
            job.metadata.annotations.unwrap()["batch.kubernetes.io/cronjob-scheduled-timestamp"],
            at.to_string()
        );
        t.finish(&job_for("tick", at), "Complete").await;
        t.nudge("tick").await;
        let cj = t.status("tick", |cj| active_names(cj).is_empty()).await;
        assert!(cj.status.unwrap().last_successful_time.is_some());
        t.event(
            "SawCompletedJob",
            &format!(
                "Saw completed job: {}, condition: Complete",
                job_for("tick", at)
            ),
        )
        .await;
        if round == 2 {
            // Three successful Jobs, two kept: the first goes.
            t.wait_jobs("tick", &made[1..]).await;
            t.event("SuccessfulDelete", &format!("Deleted job {}", made[0]))
                .await;
        }
    }
    t.event("SuccessfulCreate", &format!("Created job {}", made[0]))
        .await;
}

/// Forbid: no new Job while one runs; Replace: the running one is deleted and a
/// new one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_policies_forbid_and_replace() {
    let mut t = CronTest::start().await;
    t.create("busy", json!({"concurrencyPolicy": "Forbid"}))
        .await;
    let first = job_for("busy", t.next_minute("busy").await);
    t.wait_jobs("busy", std::slice::from_ref(&first)).await;
    t.next_minute("busy").await;
    t.event(
        "JobAlreadyActive",
        "Not starting job because prior execution is running and concurrency policy is Forbid",
    )
    .await;
    assert_eq!(t.job_names("busy").await, std::slice::from_ref(&first));
    t.cronjobs
        .patch(
            "busy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"concurrencyPolicy": "Replace"}})),
        )
        .await
        .unwrap();
    let third = job_for("busy", t.next_minute("busy").await);
    t.wait_jobs("busy", std::slice::from_ref(&third)).await;
    t.event("SuccessfulDelete", &format!("Deleted job {first}"))
        .await;
    t.status("busy", |cj| active_names(cj) == [third.clone()])
        .await;
}

/// Suspended: nothing starts; a start later than startingDeadlineSeconds is
/// skipped (without a deadline it would run late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_and_late_starts_are_skipped() {
    let mut t = CronTest::start().await;
    t.create(
        "late",
        json!({"suspend": true, "startingDeadlineSeconds": 10}),
    )
    .await;
    t.create("eager", json!({"suspend": true})).await;
    // Thirty seconds past the minute: more than the ten the deadline allows.
    let at = t.next_minute_plus("late", 30).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(t.job_names("late").await.is_empty());
    for name in ["late", "eager"] {
        t.cronjobs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": false}})),
            )
            .await
            .unwrap();
    }
    t.wait_jobs("eager", &[job_for("eager", at)]).await;
    assert!(t.job_names("late").await.is_empty());
    // In time for the next one.
    let at = t.next_minute("late").await;
    t.wait_jobs("late", &[job_for("late", at)]).await;
}
