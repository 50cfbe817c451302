//! The ReplicaSet controller against a real API server.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

use crate::common::{TestCluster, eventually, mark_ready};

fn replicaset(name: &str, replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
    .unwrap()
}

async fn pods_of(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

async fn wait_pods(pods: &Api<Pod>, app: &str, n: usize) -> Vec<Pod> {
    eventually(10, &format!("{n} pods of {app}"), || async {
        let p = pods_of(pods, app).await;
        (p.len() == n).then_some(p)
    })
    .await
}

async fn wait_status(
    rs: &Api<ReplicaSet>,
    name: &str,
    f: impl Fn(&ReplicaSet) -> bool,
) -> ReplicaSet {
    eventually(10, &format!("the status of {name}"), || async {
        let r = rs.get(name).await.unwrap();
        f(&r).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_created_owned_replaced_and_counted() {
    let c = TestCluster::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    let rs = rss
        .create(&PostParams::default(), &replicaset("web", 3, 0))
        .await
        .unwrap();
    let created = wait_pods(&pods, "web", 3).await;
    for p in &created {
        assert!(p.metadata.name.as_ref().unwrap().starts_with("web-"));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(r.kind, "ReplicaSet");
        assert_eq!(r.uid, *rs.metadata.uid.as_ref().unwrap());
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()["tier"], "web");
    }
    let got = wait_status(&rss, "web", |r| {
        r.status.as_ref().is_some_and(|s| s.replicas == 3)
    })
    .await;
    let s = got.status.unwrap();
    assert_eq!(s.fully_labeled_replicas, Some(3));
    assert_eq!(s.ready_replicas, Some(0));
    assert_eq!(s.observed_generation, Some(1));

    // Readiness is counted.
    for (i, p) in created.iter().take(2).enumerate() {
        mark_ready(
            &c.client,
            "default",
            p.metadata.name.as_ref().unwrap(),
            &format!("10.42.0.{}", i + 2),
        )
        .await;
    }
    wait_status(&rss, "web", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.ready_replicas == Some(2) && s.available_replicas == Some(2))
    })
    .await;

    // A deleted pod is replaced at once.
    let victim = created[0].metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let now = eventually(10, "a replacement", || async {
        let p = pods_of(&pods, "web").await;
        (p.len() == 3 && p.iter().all(|p| p.metadata.name.as_ref() != Some(&victim))).then_some(p)
    })
    .await;
    // Scaling down deletes the pod that is not ready first.
    let unready: Vec<String> = now
        .iter()
        .filter(|p| !rkube_controllers::pod_util::is_ready(p))
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(unready.len(), 2);
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let left = wait_pods(&pods, "web", 1).await;
    assert!(
        rkube_controllers::pod_util::is_ready(&left[0]),
        "the ready pod should stay"
    );
    let s = wait_status(&rss, "web", |r| {
        r.status.as_ref().is_some_and(|s| s.replicas == 1)
    })
    .await;
    assert_eq!(s.status.unwrap().observed_generation, Some(2));

    // Events as kubectl describe shows them.
    let events: Api<Event> = c.api("default");
    let lp = ListParams::default().fields("involvedObject.name=web,involvedObject.kind=ReplicaSet");
    let evs = eventually(5, "events", || async {
        let e = events.list(&lp).await.unwrap().items;
        e.iter()
            .any(|e| e.reason.as_deref() == Some("SuccessfulDelete"))
            .then_some(e)
    })
    .await;
    let create = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .unwrap();
    assert!(
        create
            .message
            .as_ref()
            .unwrap()
            .starts_with("Created pod: web-")
    );
    assert_eq!(
        create.source.as_ref().unwrap().component.as_deref(),
        Some("replicaset-controller")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_adopted_and_mismatches_released() {
    let c = TestCluster::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    // An orphan that matches, made before the ReplicaSet.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs = rss
        .create(&PostParams::default(), &replicaset("api", 2, 0))
        .await
        .unwrap();
    // The orphan is adopted and counts toward the two replicas.
    let stray = eventually(10, "the adoption", || async {
        let p = pods_of(&pods, "api").await;
        let stray = p
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("stray"))?
            .clone();
        (p.len() == 2 && stray.metadata.owner_references.is_some()).then_some(stray)
    })
    .await;
    let r = &stray.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(r.uid, *rs.metadata.uid.as_ref().unwrap());
    assert_eq!(r.controller, Some(true));

    // A pod relabelled out of the selector is released and replaced.
    pods.patch(
        "stray",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    eventually(10, "the release", || async {
        let p = pods.get("stray").await.unwrap();
        p.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    })
    .await;
    wait_pods(&pods, "api", 2).await;
}

/// Expectations: however the cache lags, a ReplicaSet never creates more pods than
/// asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_creates_more_than_asked() {
    let c = TestCluster::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    let added = Arc::new(Mutex::new(HashSet::<String>::new()));
    let seen = added.clone();
    let rv = pods
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let watch = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            if let WatchEvent::Added(p) = ev {
                seen.lock().unwrap().insert(p.metadata.name.unwrap());
            }
        }
    });
    rss.create(&PostParams::default(), &replicaset("many", 40, 0))
        .await
        .unwrap();
    wait_pods(&pods, "many", 40).await;
    // Let the controller resync a few times.
    for i in 0..3 {
        rss.patch(
            "many",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": i.to_string()}}})),
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    watch.abort();
    assert_eq!(added.lock().unwrap().len(), 40);
    assert_eq!(pods_of(&pods, "many").await.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_waits_for_min_ready_seconds() {
    let c = TestCluster::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    rss.create(&PostParams::default(), &replicaset("slow", 1, 2))
        .await
        .unwrap();
    let p = wait_pods(&pods, "slow", 1).await;
    mark_ready(
        &c.client,
        "default",
        p[0].metadata.name.as_ref().unwrap(),
        "10.42.0.9",
    )
    .await;
    let r = wait_status(&rss, "slow", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.ready_replicas == Some(1))
    })
    .await;
    assert_eq!(r.status.unwrap().available_replicas, Some(0));
    wait_status(&rss, "slow", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.available_replicas == Some(1))
    })
    .await;
}
