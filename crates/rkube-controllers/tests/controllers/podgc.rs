//! The pod garbage collector against a real API server: one pass at a time on a
//! clock the test moves (terminated pods beyond the threshold, evicted and
//! oldest first; pods of a node that is gone, after the quarantine; terminating
//! pods no kubelet will finish), and once through the controller manager.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rkube_controllers::informer::Informer;
use rkube_controllers::podgc::{PodGarbageCollector, QUARANTINE};
use rkube_controllers::{ControllerContext, ControllerManagerConfig, FakeClock};
use serde_json::{Value, json};

use crate::common::{TestCluster, admin, api_server, eventually};

/// A pod held by a test finalizer (so its deletion shows), on `node`, in `status`.
async fn pod(client: &Client, name: &str, node: Option<&str>, status: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": name, "finalizers": ["test/keep"]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

async fn node(client: &Client, name: &str, ready: &str, taints: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": name}, "spec": {"taints": taints}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": ready}]}})),
        )
        .await
        .unwrap();
}

/// The pods marked for deletion so far, by name.
async fn deleted(pods: &Api<Pod>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| p.metadata.name.unwrap())
        .collect();
    names.sort();
    names
}

/// Waits until the informers hold every pod and node as the API has them now.
async fn caught_up(client: &Client, pods: &Informer<Pod>, nodes: &Informer<Node>) {
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node_api: Api<Node> = Api::all(client.clone());
    let want_pods = pod_api.list(&Default::default()).await.unwrap().items;
    let want_nodes = node_api.list(&Default::default()).await.unwrap().items;
    eventually(30, "the collector's cache to catch up", || async {
        let pods_in = want_pods.iter().all(|p| {
            pods.get(
                p.metadata.namespace.as_deref(),
                p.metadata.name.as_deref().unwrap(),
            )
            .is_some_and(|c| c.metadata.resource_version == p.metadata.resource_version)
        });
        let nodes_in = want_nodes.iter().all(|n| {
            nodes
                .get(None, n.metadata.name.as_deref().unwrap())
                .is_some_and(|c| c.metadata.resource_version == n.metadata.resource_version)
        });
        (pods_in && nodes_in && pods.list().len() == want_pods.len()).then_some(())
    })
    .await;
}

struct Fixture {
    client: Client,
    clock: Arc<FakeClock>,
    ctx: ControllerContext,
    pods: Api<Pod>,
}

impl Fixture {
    async fn new() -> Fixture {
        let api = api_server().await;
        let client = admin(&api);
        let clock = Arc::new(FakeClock::new(jiff::Timestamp::now()));
        let ctx = ControllerContext::new(
            client.clone(),
            ControllerManagerConfig {
                clock: clock.clone(),
                ..Default::default()
            },
        );
        Fixture {
            pods: Api::namespaced(client.clone(), "default"),
            client,
            clock,
            ctx,
        }
    }

    /// Runs one pass once the collector's cache has what the API has.
    async fn pass(&self, gc: &PodGarbageCollector) {
        caught_up(
            &self.client,
            &self.ctx.informers.get::<Pod>(),
            &self.ctx.informers.get::<Node>(),
        )
        .await;
        gc.gc_once().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_pods_beyond_the_threshold_go_evicted_then_oldest_first() {
    let f = Fixture::new().await;
    let gc = PodGarbageCollector::new(&f.ctx, 2, QUARANTINE);
    gc.synced().await;
    node(&f.client, "n1", "True", json!([])).await;
    // "d-oldest" is a second older than the rest; "b-evicted" is evicted. With two
    // kept, those two go: not the first two by name, nor the two oldest.
    pod(
        &f.client,
        "d-oldest",
        Some("n1"),
        json!({"phase": "Succeeded"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pod(&f.client, "c", Some("n1"), json!({"phase": "Succeeded"})).await;
    let evicted = json!({"phase": "Failed", "reason": "Evicted"});
    pod(&f.client, "b-evicted", Some("n1"), evicted).await;
    pod(&f.client, "a", Some("n1"), json!({"phase": "Failed"})).await;
    pod(
        &f.client,
        "running",
        Some("n1"),
        json!({"phase": "Running"}),
    )
    .await;
    f.pass(&gc).await;
    assert_eq!(deleted(&f.pods).await, ["b-evicted", "d-oldest"]);
    // The deleted pods linger (a finalizer holds them) and still count, as
    // upstream counts them: another pass picks the same two, nothing more.
    f.pass(&gc).await;
    assert_eq!(deleted(&f.pods).await, ["b-evicted", "d-oldest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_of_zero_keeps_every_terminated_pod() {
    let f = Fixture::new().await;
    let gc = PodGarbageCollector::new(&f.ctx, 0, QUARANTINE);
    gc.synced().await;
    node(&f.client, "n1", "True", json!([])).await;
    for name in ["a", "b", "c"] {
        pod(&f.client, name, Some("n1"), json!({"phase": "Succeeded"})).await;
    }
    f.pass(&gc).await;
    assert!(deleted(&f.pods).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_missing_node_go_after_the_quarantine_marked_failed() {
    let f = Fixture::new().await;
    let gc = PodGarbageCollector::new(&f.ctx, 10, QUARANTINE);
    gc.synced().await;
    node(&f.client, "n1", "True", json!([])).await;
    pod(&f.client, "kept", Some("n1"), json!({"phase": "Running"})).await;
    pod(
        &f.client,
        "orphan",
        Some("ghost"),
        json!({"phase": "Running"}),
    )
    .await;
    pod(
        &f.client,
        "late",
        Some("late-node"),
        json!({"phase": "Running"}),
    )
    .await;
    f.pass(&gc).await;
    assert!(deleted(&f.pods).await.is_empty());
    // Less than the quarantine: nothing goes.
    f.clock.advance(SignedDuration::from_secs(30));
    f.pass(&gc).await;
    assert!(deleted(&f.pods).await.is_empty());
    // "late-node" registers only now: whether or not the collector's cache has
    // seen it yet (the API is asked before anything goes), its pod stays.
    let nodes: Api<Node> = Api::all(f.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "late-node"}})).unwrap(),
        )
        .await
        .unwrap();
    f.clock.advance(SignedDuration::from_secs(11));
    gc.gc_once().await.unwrap();
    assert_eq!(deleted(&f.pods).await, ["orphan"]);
    let status = f.pods.get("orphan").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let cond = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("a DisruptionTarget condition");
    assert_eq!(
        (
            cond.status.as_str(),
            cond.reason.as_deref(),
            cond.message.as_deref()
        ),
        (
            "True",
            Some("DeletionByPodGC"),
            Some("PodGC: node no longer exists")
        )
    );
    // The pods of live nodes were not touched.
    for name in ["kept", "late"] {
        let p = f.pods.get(name).await.unwrap();
        assert_eq!(
            p.status.unwrap().phase.as_deref(),
            Some("Running"),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_pods_no_kubelet_will_finish_are_failed_and_deleted() {
    let f = Fixture::new().await;
    let gc = PodGarbageCollector::new(&f.ctx, 10, QUARANTINE);
    gc.synced().await;
    let out_of_service =
        json!([{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]);
    node(&f.client, "dead", "False", out_of_service.clone()).await;
    node(&f.client, "ready-tainted", "True", out_of_service).await;
    node(&f.client, "down", "False", json!([])).await;
    let running = || json!({"phase": "Running"});
    pod(&f.client, "on-dead", Some("dead"), running()).await;
    pod(
        &f.client,
        "on-ready-tainted",
        Some("ready-tainted"),
        running(),
    )
    .await;
    pod(&f.client, "on-down", Some("down"), running()).await;
    pod(&f.client, "unscheduled", None, json!({"phase": "Pending"})).await;
    pod(
        &f.client,
        "unscheduled-alive",
        None,
        json!({"phase": "Pending"}),
    )
    .await;
    let grace = DeleteParams {
        grace_period_seconds: Some(300),
        ..Default::default()
    };
    for name in ["on-dead", "on-ready-tainted", "on-down", "unscheduled"] {
        f.pods.delete(name, &grace).await.unwrap();
    }
    let grace_of = |p: &Pod| p.metadata.deletion_grace_period_seconds;
    f.pass(&gc).await;
    let phase = |p: Pod| p.status.unwrap().phase.unwrap();
    // Forced (grace 0) and failed: the pod on the dead node, the unscheduled one.
    for name in ["on-dead", "unscheduled"] {
        let p = f.pods.get(name).await.unwrap();
        assert_eq!(grace_of(&p), Some(0), "{name}");
        assert_eq!(phase(p), "Failed", "{name}");
    }
    // Left to their kubelet: a ready node, or a node not marked out of service.
    for name in ["on-ready-tainted", "on-down"] {
        let p = f.pods.get(name).await.unwrap();
        assert_eq!(grace_of(&p), Some(300), "{name}");
        assert_eq!(phase(p), "Running", "{name}");
    }
    let alive = f.pods.get("unscheduled-alive").await.unwrap();
    assert!(alive.metadata.deletion_timestamp.is_none());
    assert_eq!(phase(alive), "Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_runs_the_collector_with_its_threshold() {
    let c = TestCluster::start_with(ControllerManagerConfig {
        controllers: vec!["pod-garbage-collector".into()],
        terminated_pod_gc_threshold: 1,
        pod_gc_period: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    node(&c.client, "n1", "True", json!([])).await;
    // Made in this order, so oldest first and by name agree.
    for name in ["a", "b", "c"] {
        pod(&c.client, name, Some("n1"), json!({"phase": "Succeeded"})).await;
    }
    let pods: Api<Pod> = c.api("default");
    eventually(30, "the two oldest to go", || async {
        (deleted(&pods).await == ["a", "b"]).then_some(())
    })
    .await;
    // And no more on later passes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(deleted(&pods).await, ["a", "b"]);
}
