//! The Deployment controller with the ReplicaSet controller (and the garbage
//! collector where deletion matters), against a real API server.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use rkube_controllers::deployment::hash::compute_hash;
use rkube_controllers::deployment::util;
use rkube_controllers::{ControllerManagerConfig, FakeClock};
use serde_json::json;

use crate::common::{TestCluster, eventually, fake_kubelet};

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}
            }
        }
    }))
    .unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

async fn set_image(d: &Api<Deployment>, name: &str, image: &str) {
    d.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})),
    )
    .await
    .unwrap();
}

/// The deployment is rolled out as `kubectl rollout status` judges it.
async fn rolled_out(d: &Api<Deployment>, name: &str, secs: u64) -> Deployment {
    eventually(secs, &format!("{name} rolled out"), || async {
        let d = d.get(name).await.unwrap();
        let want = util::replicas(&d);
        let s = d.status.clone()?;
        let progressing = util::condition(&s, "Progressing")?;
        (s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want)
            && progressing.reason.as_deref() == Some(util::NEW_RS_AVAILABLE))
        .then_some(d)
    })
    .await
}

async fn replicasets_of(rs: &Api<ReplicaSet>, app: &str) -> Vec<ReplicaSet> {
    rs.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn image(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_gets_one_replicaset_and_a_status_kubectl_reads() {
    let c = TestCluster::start(&["deployment", "replicaset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::ZERO);
    let ds: Api<Deployment> = c.api("default");
    let rss: Api<ReplicaSet> = c.api("default");
    let created = ds
        .create(
            &PostParams::default(),
            &deployment("web", 3, rolling(json!("25%"), json!("25%"))),
        )
        .await
        .unwrap();
    let d = rolled_out(&ds, "web", 15).await;
    let list = replicasets_of(&rss, "web").await;
    assert_eq!(list.len(), 1);
    let rs = &list[0];
    // Named after a stable hash of the stored template.
    let hash = compute_hash(
        &serde_json::to_value(&created.spec.as_ref().unwrap().template).unwrap(),
        None,
    );
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs.metadata.labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );
    assert_eq!(owner.uid, *created.metadata.uid.as_ref().unwrap());
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[util::REVISION], "1");
    assert_eq!(a[util::DESIRED_REPLICAS], "3");
    assert_eq!(a[util::MAX_REPLICAS], "4");
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()[util::REVISION],
        "1"
    );
    let s = d.status.unwrap();
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3), Some(0))
    );
    let avail = util::condition(&s, "Available").unwrap();
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    assert_eq!(
        avail.message.as_deref(),
        Some("Deployment has minimum availability.")
    );
    let prog = util::condition(&s, "Progressing").unwrap();
    assert_eq!(
        prog.message.as_deref(),
        Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
    );

    // Scaling changes the one ReplicaSet.
    ds.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    rolled_out(&ds, "web", 15).await;
    let list = replicasets_of(&rss, "web").await;
    assert_eq!(list.len(), 1);
    assert_eq!(util::rs_replicas(&list[0]), 5);
    let events: Api<Event> = c.api("default");
    let lp = ListParams::default().fields("involvedObject.name=web,reason=ScalingReplicaSet");
    let msgs = eventually(5, "scaling events", || async {
        let e: Vec<String> = events
            .list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.message)
            .collect();
        (e.len() >= 2).then_some(e)
    })
    .await;
    assert!(
        msgs.contains(&format!("Scaled up replica set web-{hash} from 0 to 3")),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&format!("Scaled up replica set web-{hash} from 3 to 5")),
        "{msgs:?}"
    );
}

/// What a pod watch sees during a rolling update: never more pods than replicas +
/// maxSurge, never fewer ready pods than replicas - maxUnavailable.
async fn rollout_within_bounds(replicas: i32, surge: i32, unavailable: i32) {
    let c = TestCluster::start(&["deployment", "replicaset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(30));
    let ds: Api<Deployment> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    ds.create(
        &PostParams::default(),
        &deployment("web", replicas, rolling(json!(surge), json!(unavailable))),
    )
    .await
    .unwrap();
    rolled_out(&ds, "web", 15).await;

    #[derive(Default)]
    struct Seen {
        existing: HashSet<String>,
        ready: HashSet<String>,
        max_existing: usize,
        min_ready: usize,
        created: usize,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let list = pods.list(&Default::default()).await.unwrap();
    {
        let mut s = seen.lock().unwrap();
        for p in &list.items {
            let n = p.metadata.name.clone().unwrap();
            if rkube_controllers::pod_util::is_ready(p) {
                s.ready.insert(n.clone());
            }
            s.existing.insert(n);
        }
        s.max_existing = s.existing.len();
        s.min_ready = s.ready.len();
    }
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let s2 = seen.clone();
    let watch = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            let mut s = s2.lock().unwrap();
            match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    let n = p.metadata.name.clone().unwrap();
                    if s.existing.insert(n.clone()) {
                        s.created += 1;
                    }
                    if rkube_controllers::pod_util::is_ready(&p)
                        && p.metadata.deletion_timestamp.is_none()
                    {
                        s.ready.insert(n);
                    } else {
                        s.ready.remove(&n);
                    }
                }
                WatchEvent::Deleted(p) => {
                    let n = p.metadata.name.unwrap();
                    s.existing.remove(&n);
                    s.ready.remove(&n);
                }
                _ => continue,
            }
            s.max_existing = s.max_existing.max(s.existing.len());
            s.min_ready = s.min_ready.min(s.ready.len());
        }
    });
    set_image(&ds, "web", "nginx:1.27").await;
    let d = rolled_out(&ds, "web", 30).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    watch.abort();
    assert_eq!(d.status.unwrap().replicas, Some(replicas));
    let s = seen.lock().unwrap();
    assert_eq!(s.created, replicas as usize, "every pod replaced once");
    assert!(
        s.max_existing <= (replicas + surge) as usize,
        "{} pods at once, more than {replicas} + maxSurge {surge}",
        s.max_existing
    );
    assert!(
        s.min_ready >= (replicas - unavailable) as usize,
        "only {} ready pods at one point, fewer than {replicas} - maxUnavailable {unavailable}",
        s.min_ready
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_never_exceeds_max_surge() {
    rollout_within_bounds(5, 1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_never_exceeds_max_unavailable() {
    rollout_within_bounds(5, 0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_both_fenceposts() {
    rollout_within_bounds(6, 2, 1).await;
}

/// `kubectl rollout undo` sends the previous template as a JSON patch: the old
/// ReplicaSet comes back under a new revision, with the old one in its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_reuses_the_old_replicaset() {
    let c = TestCluster::start(&["deployment", "replicaset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::ZERO);
    let ds: Api<Deployment> = c.api("default");
    let rss: Api<ReplicaSet> = c.api("default");
    ds.create(
        &PostParams::default(),
        &deployment("app", 2, rolling(json!(1), json!(0))),
    )
    .await
    .unwrap();
    rolled_out(&ds, "app", 15).await;
    set_image(&ds, "app", "nginx:1.27").await;
    rolled_out(&ds, "app", 15).await;
    let list = replicasets_of(&rss, "app").await;
    assert_eq!(list.len(), 2);
    let first = list
        .iter()
        .find(|r| util::revision(r) == 1)
        .expect("revision 1");
    assert_eq!(image(first), "nginx:1.26");
    assert_eq!(util::rs_replicas(first), 0);

    // What kubectl sends: the template of revision 1 without the hash label.
    let mut template =
        serde_json::to_value(first.spec.as_ref().unwrap().template.as_ref().unwrap()).unwrap();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/template", "value": template}
    ]))
    .unwrap();
    ds.patch("app", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap();
    let d = rolled_out(&ds, "app", 15).await;
    let list = replicasets_of(&rss, "app").await;
    assert_eq!(list.len(), 2, "no third ReplicaSet");
    let back = list
        .iter()
        .find(|r| r.metadata.uid == first.metadata.uid)
        .unwrap();
    let a = back.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[util::REVISION], "3");
    assert_eq!(a[util::REVISION_HISTORY], "1");
    assert_eq!(util::rs_replicas(back), 2);
    assert_eq!(d.metadata.annotations.unwrap()[util::REVISION], "3");
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1.26")
    );
}

/// Recreate: the new pods start only when every old one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_together() {
    let c = TestCluster::start(&["deployment", "replicaset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::ZERO);
    let ds: Api<Deployment> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    ds.create(
        &PostParams::default(),
        &deployment("batch", 3, json!({"type": "Recreate"})),
    )
    .await
    .unwrap();
    rolled_out(&ds, "batch", 15).await;
    let list = pods.list(&Default::default()).await.unwrap();
    let hash_of = |p: &Pod| p.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    let existing: HashMap<String, String> = list
        .items
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap(), hash_of(p)))
        .collect();
    let existing = Arc::new(Mutex::new(existing));
    let mixed = Arc::new(Mutex::new(false));
    let mut stream = pods
        .watch(
            &WatchParams::default(),
            list.metadata.resource_version.as_ref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let (e2, m2) = (existing.clone(), mixed.clone());
    let watch = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            let mut e = e2.lock().unwrap();
            match ev {
                WatchEvent::Added(p) => {
                    e.insert(p.metadata.name.clone().unwrap(), hash_of(&p));
                }
                WatchEvent::Deleted(p) => {
                    e.remove(&p.metadata.name.unwrap());
                }
                _ => continue,
            }
            let hashes: HashSet<&String> = e.values().collect();
            if hashes.len() > 1 {
                *m2.lock().unwrap() = true;
            }
        }
    });
    set_image(&ds, "batch", "nginx:1.27").await;
    let d = rolled_out(&ds, "batch", 15).await;
    watch.abort();
    assert!(!*mixed.lock().unwrap(), "old and new pods existed at once");
    assert_eq!(d.metadata.annotations.unwrap()[util::REVISION], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_do_not_roll_out_until_resumed() {
    let c = TestCluster::start(&["deployment", "replicaset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::ZERO);
    let ds: Api<Deployment> = c.api("default");
    let rss: Api<ReplicaSet> = c.api("default");
    ds.create(
        &PostParams::default(),
        &deployment("held", 2, rolling(json!(1), json!(0))),
    )
    .await
    .unwrap();
    rolled_out(&ds, "held", 15).await;
    ds.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();
    set_image(&ds, "held", "nginx:1.27").await;
    let d = eventually(10, "the paused condition", || async {
        let d = ds.get("held").await.unwrap();
        let c = util::condition(d.status.as_ref()?, "Progressing")?;
        (c.reason.as_deref() == Some(util::PAUSED)).then_some(d)
    })
    .await;
    let c2 = util::condition(d.status.as_ref().unwrap(), "Progressing").unwrap();
    assert_eq!(
        (c2.status.as_str(), c2.message.as_deref()),
        ("Unknown", Some("Deployment is paused"))
    );
    // Scaling still works while paused; no rollout happens.
    ds.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually(10, "the paused scale", || async {
        let l = replicasets_of(&rss, "held").await;
        (l.len() == 1 && util::rs_replicas(&l[0]) == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replicasets_of(&rss, "held").await.len(), 1);

    ds.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    rolled_out(&ds, "held", 15).await;
    let list = replicasets_of(&rss, "held").await;
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .any(|r| image(r) == "nginx:1.27" && util::rs_replicas(r) == 3)
    );
}

/// A rollout that makes no progress for progressDeadlineSeconds (read from the
/// injected clock) is reported as ProgressDeadlineExceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let clock = Arc::new(FakeClock::new(jiff::Timestamp::now()));
    let c = TestCluster::start_with(ControllerManagerConfig {
        controllers: vec!["deployment".into(), "replicaset".into()],
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    // No kubelet: the pods never become ready.
    let ds: Api<Deployment> = c.api("default");
    ds.create(
        &PostParams::default(),
        &deployment("stuck", 2, rolling(json!(1), json!(0))),
    )
    .await
    .unwrap();
    eventually(10, "the pods to be counted", || async {
        let d = ds.get("stuck").await.unwrap();
        let s = d.status.as_ref()?;
        let c = util::condition(s, "Progressing")?;
        (c.status == "True" && s.updated_replicas == Some(2)).then_some(())
    })
    .await;
    clock.advance(jiff::SignedDuration::from_secs(601));
    // Something makes the controller look again (upstream also resyncs periodically).
    ds.patch(
        "stuck",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
    )
    .await
    .unwrap();
    let d = eventually(10, "the deadline", || async {
        let d = ds.get("stuck").await.unwrap();

        let c = util::condition(d.status.as_ref()?, "Progressing")?;
        (c.reason.as_deref() == Some(util::TIMED_OUT)).then_some(d)
    })
    .await;
    let s = d.status.unwrap();
    let c = util::condition(&s, "Progressing").unwrap();
    assert_eq!(c.status, "False");
    assert!(
        c.message
            .as_ref()
            .unwrap()
            .ends_with("has timed out progressing."),
        "{:?}",
        c.message
    );
    let a = util::condition(&s, "Available").unwrap();
    assert_eq!(
        (a.status.as_str(), a.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_revisions_beyond_the_history_limit_are_deleted_and_restarts_roll() {
    let c = TestCluster::start(&["deployment", "replicaset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::ZERO);
    let ds: Api<Deployment> = c.api("default");
    let rss: Api<ReplicaSet> = c.api("default");
    let mut d = deployment("hist", 1, rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    ds.create(&PostParams::default(), &d).await.unwrap();
    rolled_out(&ds, "hist", 15).await;
    for img in ["nginx:1.27", "nginx:1.28"] {
        set_image(&ds, "hist", img).await;
        rolled_out(&ds, "hist", 15).await;
    }
    // What `kubectl rollout restart` does.
    ds.patch(
        "hist",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}})),
    )
    .await
    .unwrap();
    rolled_out(&ds, "hist", 15).await;
    let list = eventually(10, "old revisions cleaned up", || async {
        let l = replicasets_of(&rss, "hist").await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let mut revs: Vec<i64> = list.iter().map(util::revision).collect();
    revs.sort();
    assert_eq!(revs, [3, 4]);
    let newest = list.iter().find(|r| util::revision(r) == 4).unwrap();
    assert_eq!(image(newest), "nginx:1.28");
    assert_eq!(util::rs_replicas(newest), 1);
}

/// Foreground deletion of a Deployment: its pods go first, then its ReplicaSet,
/// then the Deployment (compared by the revisions of the deletions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_of_a_deployment_goes_pods_replicaset_deployment() {
    let c = TestCluster::start(&["deployment", "replicaset", "garbage-collector"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::ZERO);
    let ds: Api<Deployment> = c.api("default");
    let rss: Api<ReplicaSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    ds.create(
        &PostParams::default(),
        &deployment("gone", 3, rolling(json!(1), json!(0))),
    )
    .await
    .unwrap();
    rolled_out(&ds, "gone", 15).await;
    let deleted = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let mut watches = Vec::new();
    macro_rules! watch_deletions {
        ($api:expr, $kind:expr) => {{
            let rv = $api
                .list(&Default::default())
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap();
            let mut s = $api
                .watch(&WatchParams::default(), &rv)
                .await
                .unwrap()
                .boxed();
            let d = deleted.clone();
            watches.push(tokio::spawn(async move {
                while let Some(Ok(ev)) = s.next().await {
                    if let WatchEvent::Deleted(o) = ev {
                        let rv: u64 = o.metadata.resource_version.unwrap().parse().unwrap();
                        d.lock().unwrap().push((rv, $kind.to_string()));
                    }
                }
            }));
        }};
    }
    watch_deletions!(pods, "Pod");
    watch_deletions!(rss, "ReplicaSet");
    watch_deletions!(ds, "Deployment");
    ds.delete("gone", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(15, "the deployment gone", || async {
        ds.get_opt("gone").await.unwrap().is_none().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for w in watches {
        w.abort();
    }
    let mut order = deleted.lock().unwrap().clone();
    order.sort();
    let kinds: Vec<&str> = order.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["Pod", "Pod", "Pod", "ReplicaSet", "Deployment"],
        "{order:?}"
    );
}
