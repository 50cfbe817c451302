//! The StatefulSet controller against a real API server: ordinal pods created and
//! removed in order, claims per ordinal, rolling updates with a partition, OnDelete,
//! revisions and rollback, retention of claims.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::common::{TestCluster, eventually, fake_kubelet, mark_ready};

fn statefulset(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    });
    merge(&mut v["spec"], extra);
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// The set's pods by name: (image, revision label, ready).
async fn pods_of(pods: &Api<Pod>, app: &str) -> BTreeMap<String, (String, String, bool)> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let spec = p.spec.clone().unwrap();
            let labels = p.metadata.labels.clone().unwrap();
            (
                p.metadata.name.clone().unwrap(),
                (
                    spec.containers[0].image.clone().unwrap_or_default(),
                    labels
                        .get("controller-revision-hash")
                        .cloned()
                        .unwrap_or_default(),
                    rkube_controllers::pod_util::is_ready(&p),
                ),
            )
        })
        .collect()
}

async fn wait_names(pods: &Api<Pod>, app: &str, names: &[&str]) {
    eventually(30, &format!("pods {names:?}"), || async {
        let got = pods_of(pods, app).await;
        let got: Vec<&str> = got.keys().map(String::as_str).collect();
        (got == names).then_some(())
    })
    .await;
}

async fn set_status(
    sets: &Api<StatefulSet>,
    name: &str,
    f: impl Fn(&StatefulSet) -> bool,
) -> StatefulSet {
    eventually(30, &format!("the status of {name}"), || async {
        let s = sets.get(name).await.unwrap();
        f(&s).then_some(s)
    })
    .await
}

fn ready_count(s: &StatefulSet) -> i32 {
    s.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// The names of the pods deleted from now on, in order.
async fn watch_deletions(
    pods: &Api<Pod>,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let deleted = Arc::new(Mutex::new(Vec::new()));
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
    let d = deleted.clone();
    let watch = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            if let WatchEvent::Deleted(p) = ev {
                d.lock().unwrap().push(p.metadata.name.unwrap());
            }
        }
    });
    (deleted, watch)
}

/// OrderedReady: web-1 is not created before web-0 is Running and Ready; each pod
/// has its hostname, subdomain and claim; scale-down removes the highest ordinal
/// first and keeps the claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_pods_come_one_at_a_time_and_go_from_the_top() {
    let c = TestCluster::start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    sets.create(&PostParams::default(), &statefulset("web", 3, json!({})))
        .await
        .unwrap();
    wait_names(&pods, "web", &["web-0"]).await;
    // Not Ready yet: no web-1, however long we wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods_of(&pods, "web").await.len(), 1);
    let p0 = pods.get("web-0").await.unwrap();
    let spec = p0.spec.clone().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let labels = p0.metadata.labels.clone().unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    let vol = &spec.volumes.unwrap()[0];
    assert_eq!(
        vol.persistent_volume_claim.as_ref().unwrap().claim_name,
        "www-web-0"
    );
    let claim = pvcs.get("www-web-0").await.unwrap();
    assert_eq!(claim.metadata.labels.unwrap()["app"], "web");

    mark_ready(&c.client, "default", "web-0", "10.42.0.2").await;
    wait_names(&pods, "web", &["web-0", "web-1"]).await;
    mark_ready(&c.client, "default", "web-1", "10.42.0.3").await;
    wait_names(&pods, "web", &["web-0", "web-1", "web-2"]).await;
    mark_ready(&c.client, "default", "web-2", "10.42.0.4").await;
    let s = set_status(&sets, "web", |s| ready_count(s) == 3).await;
    let st = s.status.unwrap();
    assert_eq!(st.replicas, 3);
    assert_eq!(st.available_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.observed_generation, Some(1));
    let names: Vec<String> = pvcs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["www-web-0", "www-web-1", "www-web-2"]);

    // Scale down to one: web-2 goes, then web-1; the claims stay (Retain).
    let (deleted, watch) = watch_deletions(&pods).await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_names(&pods, "web", &["web-0"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    watch.abort();
    assert_eq!(*deleted.lock().unwrap(), ["web-2", "web-1"]);
    assert_eq!(pvcs.list(&Default::default()).await.unwrap().items.len(), 3);

    let events: Api<Event> = c.api("default");
    let msgs = eventually(30, "the events", || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=web"))
            .await
            .unwrap();
        let msgs: Vec<String> = list
            .items
            .into_iter()
            .map(|e| format!("{} {}", e.reason.unwrap(), e.message.unwrap()))
            .collect();
        (msgs.len() >= 8).then_some(msgs)
    })
    .await;
    for want in [
        "SuccessfulCreate create Pod web-0 in StatefulSet web successful",
        "SuccessfulCreate create Claim www-web-0 Pod web-0 in StatefulSet web success",
        "SuccessfulDelete delete Pod web-2 in StatefulSet web successful",
    ] {
        assert!(msgs.iter().any(|m| m == want), "{want} not in {msgs:?}");
    }
}

/// Parallel: every pod at once, without waiting for readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_pods_come_at_once() {
    let c = TestCluster::start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    sets.create(
        &PostParams::default(),
        &statefulset("par", 4, json!({"podManagementPolicy": "Parallel"})),
    )
    .await
    .unwrap();
    wait_names(&pods, "par", &["par-0", "par-1", "par-2", "par-3"]).await;
    assert!(
        pods_of(&pods, "par")
            .await
            .values()
            .all(|(_, _, ready)| !ready)
    );
    sets.patch(
        "par",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_names(&pods, "par", &["par-0"]).await;
}

async fn set_image(sets: &Api<StatefulSet>, name: &str, image: &str) {
    sets.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})),
    )
    .await
    .unwrap();
}

/// RollingUpdate with a partition: ordinals at or above it are replaced, highest
/// first; below it they keep the old revision until the partition drops. A
/// template changed back reuses the old revision under a new number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_respects_the_partition_and_rollback_reuses_revisions() {
    let c = TestCluster::start(&["statefulset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(20));
    let sets: Api<StatefulSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    let revs: Api<ControllerRevision> = c.api("default");
    sets.create(&PostParams::default(), &statefulset("db", 3, json!({})))
        .await
        .unwrap();
    let s = set_status(&sets, "db", |s| ready_count(s) == 3).await;
    let first_rev = s.status.unwrap().current_revision.unwrap();

    // Replaced pods come back from the API: the deletions go highest first.
    let (order, watch) = watch_deletions(&pods).await;
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}})),
    )
    .await
    .unwrap();
    set_image(&sets, "db", "nginx:1.27").await;
    let s = set_status(&sets, "db", |s| {
        let st = s.status.clone().unwrap_or_default();
        st.updated_replicas == Some(2)
            && st.ready_replicas == Some(3)
            && st.observed_generation == Some(3)
    })
    .await;
    let st = s.status.unwrap();
    let second_rev = st.update_revision.clone().unwrap();
    assert_ne!(second_rev, first_rev);
    assert_eq!(st.current_revision.as_deref(), Some(first_rev.as_str()));
    let now = pods_of(&pods, "db").await;
    assert_eq!(now["db-0"].0, "nginx");
    assert_eq!(now["db-0"].1, first_rev);
    assert_eq!(now["db-1"].0, "nginx:1.27");
    assert_eq!(now["db-2"].1, second_rev);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*order.lock().unwrap(), ["db-2", "db-1"]);

    // Partition 0: db-0 follows and the update revision becomes current.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    let s = set_status(&sets, "db", |s| {
        let st = s.status.clone().unwrap_or_default();
        st.current_revision.as_deref() == Some(second_rev.as_str()) && st.ready_replicas == Some(3)
    })
    .await;
    assert_eq!(s.status.unwrap().current_replicas, Some(3));
    watch.abort();

    // Back to the first template: the first revision is reused as revision 3.
    set_image(&sets, "db", "nginx").await;
    let s = set_status(&sets, "db", |s| {
        let st = s.status.clone().unwrap_or_default();
        st.current_revision.as_deref() == Some(first_rev.as_str()) && st.ready_replicas == Some(3)
    })
    .await;
    assert_eq!(s.status.unwrap().updated_replicas, Some(3));
    let list = revs.list(&Default::default()).await.unwrap().items;
    let mut numbers: Vec<(String, i64)> = list
        .iter()
        .map(|r| (r.metadata.name.clone().unwrap(), r.revision))
        .collect();
    numbers.sort_by_key(|(_, n)| *n);
    assert_eq!(numbers, [(second_rev, 2), (first_rev, 3)]);
}

/// OnDelete: a new template reaches a pod only when the pod is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_updates_only_deleted_pods() {
    let c = TestCluster::start(&["statefulset"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(20));
    let sets: Api<StatefulSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    sets.create(
        &PostParams::default(),
        &statefulset("od", 2, json!({"updateStrategy": {"type": "OnDelete"}})),
    )
    .await
    .unwrap();
    set_status(&sets, "od", |s| ready_count(s) == 2).await;
    set_image(&sets, "od", "nginx:1.27").await;
    set_status(&sets, "od", |s| {
        s.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pods_of(&pods, "od")
            .await
            .values()
            .all(|(img, _, _)| img == "nginx")
    );
    pods.delete("od-1", &Default::default()).await.unwrap();
    eventually(30, "od-1 with the new image", || async {
        let p = pods_of(&pods, "od").await;
        (p.get("od-1").is_some_and(|(img, _, _)| img == "nginx:1.27")).then_some(())
    })
    .await;
    assert_eq!(pods_of(&pods, "od").await["od-0"].0, "nginx");
    let s = set_status(&sets, "od", |s| {
        s.status.as_ref().and_then(|s| s.updated_replicas) == Some(1)
    })
    .await;
    let st = s.status.unwrap();
    assert_ne!(st.current_revision, st.update_revision);
}

/// whenScaled: Delete removes the claims of ordinals scaled away (through the
/// garbage collector); whenDeleted: Delete removes the rest with the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_retention_policy() {
    let c = TestCluster::start(&["statefulset", "garbage-collector"]).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(20));
    let sets: Api<StatefulSet> = c.api("default");
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    sets.create(
        &PostParams::default(),
        &statefulset(
            "ret",
            3,
            json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}),
        ),
    )
    .await
    .unwrap();
    set_status(&sets, "ret", |s| ready_count(s) == 3).await;
    let claim_names = || async {
        let mut n: Vec<String> = pvcs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.name.unwrap())
            .collect();
        n.sort();
        n
    };
    let owner = pvcs
        .get("www-ret-0")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(owner[0].kind, "StatefulSet");
    sets.patch(
        "ret",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually(30, "the claims of ret-1 and ret-2 gone", || async {
        (claim_names().await == ["www-ret-0"]).then_some(())
    })
    .await;
    sets.delete("ret", &Default::default()).await.unwrap();
    eventually(30, "every claim gone", || async {
        claim_names().await.is_empty().then_some(())
    })
    .await;
}
