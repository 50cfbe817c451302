//! The Job controller against a real API server: completions and parallelism,
//! retries with backoff up to the backoff limit, the active deadline, Indexed
//! mode, suspension, and pods counted exactly once through their finalizer.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rkube_controllers::{ControllerManagerConfig, FakeClock};
use serde_json::json;

use crate::common::{TestCluster, eventually};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}
        }
    });
    if let (Some(s), serde_json::Value::Object(extra)) = (v["spec"].as_object_mut(), spec) {
        s.extend(extra);
    }
    serde_json::from_value(v).unwrap()
}

async fn live_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    let mut list: Vec<Pod> = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .collect();
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    list
}

async fn wait_live(pods: &Api<Pod>, job: &str, n: usize) -> Vec<Pod> {
    eventually(30, &format!("{n} running pods of {job}"), || async {
        let p = live_pods(pods, job).await;
        (p.len() == n).then_some(p)
    })
    .await
}

/// Waits until the namespace has no pod at all (none held by a finalizer either).
async fn no_pods_left(pods: &Api<Pod>, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = pods.list(&Default::default()).await.unwrap().items;
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let shown: Vec<String> = left
                .iter()
                .map(|p| {
                    format!(
                        "{} deleting={} finalizers={:?} owners={:?}",
                        p.metadata.name.as_deref().unwrap_or_default(),
                        p.metadata.deletion_timestamp.is_some(),
                        p.metadata.finalizers,
                        p.metadata
                            .owner_references
                            .as_ref()
                            .map(|o| o.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
                    )
                })
                .collect();
            panic!("timed out waiting for {what}: {shown:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Ends a pod as the kubelet would.
async fn finish(client: &Client, pod: &Pod, phase: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.patch_status(
        pod.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

async fn wait_job(jobs: &Api<Job>, name: &str, f: impl Fn(&Job) -> bool) -> Job {
    eventually(30, &format!("the status of job {name}"), || async {
        let j = jobs.get(name).await.unwrap();
        f(&j).then_some(j)
    })
    .await
}

fn condition(j: &Job, ty: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Makes the controller look at a Job again (its timers run on real time, the
/// tests' clock is fake).
async fn nudge(jobs: &Api<Job>, name: &str, n: u32) {
    jobs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/nudge": n.to_string()}}})),
    )
    .await
    .unwrap();
}

async fn events_of(c: &TestCluster, name: &str) -> Vec<String> {
    let events: Api<Event> = c.api("default");
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

async fn fake_clock_cluster() -> (TestCluster, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new("2025-06-01T12:00:00Z".parse().unwrap()));
    let c = TestCluster::start_with(ControllerManagerConfig {
        controllers: vec!["job".into()],
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    (c, clock)
}

/// Three completions, two at a time: pods carry the tracking finalizer until they
/// are counted; the Job completes with the conditions kubectl waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_completions_with_bounded_parallelism() {
    let c = TestCluster::start(&["job"]).await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job("pi", json!({"completions": 3, "parallelism": 2})),
    )
    .await
    .unwrap();
    let first = wait_live(&pods, "pi", 2).await;
    for p in &first {
        assert!(
            p.metadata
                .finalizers
                .as_ref()
                .unwrap()
                .iter()
                .any(|f| f == FINALIZER)
        );
        assert!(p.metadata.generate_name.as_deref() == Some("pi-"));
    }
    let j = wait_job(&jobs, "pi", |j| {
        j.status.as_ref().and_then(|s| s.active) == Some(2)
    })
    .await;
    assert!(j.status.unwrap().start_time.is_some());
    finish(&c.client, &first[0], "Succeeded").await;
    // Counted once, finalizer off, and a third pod started.
    wait_job(&jobs, "pi", |j| {
        j.status.as_ref().and_then(|s| s.succeeded) == Some(1)
    })
    .await;
    let done = pods
        .get(first[0].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(done.metadata.finalizers.unwrap_or_default().is_empty());
    let now = wait_live(&pods, "pi", 2).await;
    for p in &now {
        finish(&c.client, p, "Succeeded").await;
    }
    let j = wait_job(&jobs, "pi", |j| condition(j, "Complete").is_some()).await;
    let s = j.status.clone().unwrap();
    assert_eq!(
        (s.succeeded, s.failed, s.active),
        (Some(3), Some(0), Some(0))
    );
    assert!(s.completion_time.is_some());
    assert_eq!(
        condition(&j, "Complete").unwrap(),
        (
            "CompletionsReached".to_string(),
            "Reached expected number of succeeded pods".to_string()
        )
    );
    assert!(condition(&j, "SuccessCriteriaMet").is_some());
    let all = pods.list(&Default::default()).await.unwrap().items;
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|p| p.metadata.finalizers.clone().unwrap_or_default().is_empty())
    );
    eventually(30, "the Completed event", || async {
        let ev = events_of(&c, "pi").await;
        ev.iter()
            .any(|e| e == "Completed Job completed")
            .then_some(())
    })
    .await;
    assert!(
        events_of(&c, "pi")
            .await
            .iter()
            .any(|e| e.starts_with("SuccessfulCreate Created pod: pi-"))
    );
}

/// A failed pod is retried only after the backoff; one failure more than the
/// limit fails the Job with BackoffLimitExceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_back_off_and_end_at_the_backoff_limit() {
    let (c, clock) = fake_clock_cluster().await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job("flaky", json!({"backoffLimit": 1})),
    )
    .await
    .unwrap();
    let p = wait_live(&pods, "flaky", 1).await.remove(0);
    finish(&c.client, &p, "Failed").await;
    wait_job(&jobs, "flaky", |j| {
        j.status.as_ref().and_then(|s| s.failed) == Some(1)
    })
    .await;
    // Within the ten seconds of backoff: no new pod.
    clock.advance(SignedDuration::from_secs(5));
    nudge(&jobs, "flaky", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(live_pods(&pods, "flaky").await.is_empty());
    clock.advance(SignedDuration::from_secs(6));
    nudge(&jobs, "flaky", 2).await;
    let p = wait_live(&pods, "flaky", 1).await.remove(0);
    finish(&c.client, &p, "Failed").await;
    let j = wait_job(&jobs, "flaky", |j| condition(j, "Failed").is_some()).await;
    assert_eq!(
        condition(&j, "Failed").unwrap(),
        (
            "BackoffLimitExceeded".to_string(),
            "Job has reached the specified backoff limit".to_string()
        )
    );
    let s = j.status.unwrap();
    assert_eq!(
        (s.failed, s.active, s.succeeded),
        (Some(2), Some(0), Some(0))
    );
    assert!(s.completion_time.is_none());
    eventually(30, "the BackoffLimitExceeded event", || async {
        let ev = events_of(&c, "flaky").await;
        ev.iter()
            .any(|e| e == "BackoffLimitExceeded Job has reached the specified backoff limit")
            .then_some(())
    })
    .await;
}

/// Past activeDeadlineSeconds the running pods are stopped and the Job fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_deadline_stops_the_job() {
    let (c, clock) = fake_clock_cluster().await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job(
            "slow",
            json!({"parallelism": 2, "completions": 4, "activeDeadlineSeconds": 30}),
        ),
    )
    .await
    .unwrap();
    wait_live(&pods, "slow", 2).await;
    // The deadline counts from the recorded start.
    wait_job(&jobs, "slow", |j| {
        j.status.as_ref().is_some_and(|s| s.start_time.is_some())
    })
    .await;
    clock.advance(SignedDuration::from_secs(31));
    nudge(&jobs, "slow", 1).await;
    let j = wait_job(&jobs, "slow", |j| condition(j, "Failed").is_some()).await;
    assert_eq!(condition(&j, "Failed").unwrap().0, "DeadlineExceeded");
    assert_eq!(
        condition(&j, "Failed").unwrap().1,
        "Job was active longer than specified deadline"
    );
    // The stopped pods lost their finalizer and are gone.
    no_pods_left(&pods, "the pods gone").await;
    assert_eq!(j.status.unwrap().active, Some(0));
}

/// Indexed: one pod per index with its index in annotation, label and hostname; a
/// failed index is retried; completedIndexes tracks the done ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_jobs_complete_every_index() {
    let (c, clock) = fake_clock_cluster().await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await
    .unwrap();
    let running = wait_live(&pods, "idx", 3).await;
    let index = |p: &Pod| {
        p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
    };
    let mut seen: Vec<String> = running.iter().map(index).collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    for p in &running {
        let i = index(p);
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"],
            i
        );
        assert_eq!(
            p.spec.as_ref().unwrap().hostname.as_deref(),
            Some(format!("idx-{i}").as_str())
        );
        assert!(
            p.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with(&format!("idx-{i}-"))
        );
    }
    let by = |i: &str| running.iter().find(|p| index(p) == i).unwrap().clone();
    finish(&c.client, &by("1"), "Succeeded").await;
    finish(&c.client, &by("0"), "Failed").await;
    let j = wait_job(&jobs, "idx", |j| {
        let s = j.status.clone().unwrap_or_default();
        s.completed_indexes.as_deref() == Some("1") && s.failed == Some(1)
    })
    .await;
    assert_eq!(j.status.unwrap().succeeded, Some(1));
    clock.advance(SignedDuration::from_secs(11));
    nudge(&jobs, "idx", 1).await;
    let again = eventually(30, "index 0 retried", || async {
        live_pods(&pods, "idx")
            .await
            .into_iter()
            .find(|p| index(p) == "0")
    })
    .await;
    finish(&c.client, &again, "Succeeded").await;
    finish(&c.client, &by("2"), "Succeeded").await;
    let j = wait_job(&jobs, "idx", |j| condition(j, "Complete").is_some()).await;
    let s = j.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((s.succeeded, s.failed), (Some(3), Some(1)));
}

/// A suspended Job runs nothing; resumed it starts; suspended again its pods stop
/// without counting as failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_jobs_run_nothing_until_resumed() {
    let c = TestCluster::start(&["job"]).await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job(
            "later",
            json!({"suspend": true, "parallelism": 2, "completions": 2}),
        ),
    )
    .await
    .unwrap();
    let j = wait_job(&jobs, "later", |j| condition(j, "Suspended").is_some()).await;
    assert_eq!(
        condition(&j, "Suspended").unwrap(),
        ("JobSuspended".to_string(), "Job suspended".to_string())
    );
    assert!(j.status.unwrap().start_time.is_none());
    assert!(live_pods(&pods, "later").await.is_empty());
    let resume = |on: bool| Patch::Merge(json!({"spec": {"suspend": on}}));
    jobs.patch("later", &PatchParams::default(), &resume(false))
        .await
        .unwrap();
    wait_live(&pods, "later", 2).await;
    let j = wait_job(&jobs, "later", |j| {
        j.status
            .as_ref()
            .is_some_and(|s| s.start_time.is_some() && s.active == Some(2))
    })
    .await;
    assert!(condition(&j, "Suspended").is_none());
    jobs.patch("later", &PatchParams::default(), &resume(true))
        .await
        .unwrap();
    no_pods_left(&pods, "the pods stopped").await;
    let j = wait_job(&jobs, "later", |j| {
        condition(j, "Suspended").is_some() && j.status.as_ref().and_then(|s| s.active) == Some(0)
    })
    .await;
    assert_eq!(j.status.unwrap().failed, Some(0));
    let ev = events_of(&c, "later").await;
    assert!(ev.iter().any(|e| e == "Resumed Job resumed"), "{ev:?}");
}

/// Deleting a Job leaves no pod held by the tracking finalizer: the pods (deleted
/// here as the garbage collector would) go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_lets_its_pods_go() {
    let c = TestCluster::start(&["job"]).await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job("gone", json!({"parallelism": 2, "completions": 5})),
    )
    .await
    .unwrap();
    let running = wait_live(&pods, "gone", 2).await;
    jobs.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    for p in &running {
        pods.delete(p.metadata.name.as_deref().unwrap(), &Default::default())
            .await
            .unwrap();
    }
    no_pods_left(&pods, "every pod gone").await;
}

/// A finished Job with ttlSecondsAfterFinished is deleted, pods first, once the
/// TTL has passed, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_go_after_their_ttl() {
    let clock = Arc::new(FakeClock::new(jiff::Timestamp::now()));
    let c = TestCluster::start_with(ControllerManagerConfig {
        controllers: vec![
            "job".into(),
            "ttl-after-finished".into(),
            "garbage-collector".into(),
        ],
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    let jobs: Api<Job> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    jobs.create(
        &PostParams::default(),
        &job("brief", json!({"ttlSecondsAfterFinished": 60})),
    )
    .await
    .unwrap();
    let p = wait_live(&pods, "brief", 1).await.remove(0);
    finish(&c.client, &p, "Succeeded").await;
    wait_job(&jobs, "brief", |j| condition(j, "Complete").is_some()).await;
    clock.advance(SignedDuration::from_secs(30));
    nudge(&jobs, "brief", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(jobs.get_opt("brief").await.unwrap().is_some());
    clock.advance(SignedDuration::from_secs(31));
    nudge(&jobs, "brief", 2).await;
    eventually(30, "the job deleted", || async {
        jobs.get_opt("brief").await.unwrap().is_none().then_some(())
    })
    .await;
    no_pods_left(&pods, "its pod deleted").await;
}
