//! The DaemonSet controller against a real API server: a pod per eligible node
//! (selectors, affinity, taints), following nodes as they change, rolling updates
//! within maxUnavailable or maxSurge, OnDelete, failed pods replaced.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::common::{TestCluster, eventually, fake_kubelet};

fn daemonset(name: &str, pod_spec: serde_json::Value, strategy: serde_json::Value) -> DaemonSet {
    let mut spec = json!({"containers": [{"name": "c", "image": "agent:1"}]});
    if let (Some(s), serde_json::Value::Object(extra)) = (spec.as_object_mut(), pod_spec) {
        s.extend(extra);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
        }
    }))
    .unwrap()
}

async fn add_node(
    client: &Client,
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Node name → the images of the live daemon pods aimed at it.
async fn placement(pods: &Api<Pod>, app: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
    {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = rkube_controllers::daemonset::placement::target_node(&p).unwrap();
        let image = p.spec.unwrap().containers[0].image.clone().unwrap();
        out.entry(node).or_default().push(image);
    }
    out
}

async fn wait_placement(pods: &Api<Pod>, app: &str, want: &[(&str, &str)]) {
    let want: BTreeMap<String, Vec<String>> = want
        .iter()
        .map(|(n, i)| (n.to_string(), vec![i.to_string()]))
        .collect();
    eventually(30, &format!("pods of {app} on {want:?}"), || async {
        (placement(pods, app).await == want).then_some(())
    })
    .await;
}

async fn wait_status(
    dss: &Api<DaemonSet>,
    name: &str,
    f: impl Fn(&DaemonSet) -> bool,
) -> DaemonSet {
    eventually(30, &format!("the status of {name}"), || async {
        let d = dss.get(name).await.unwrap();
        f(&d).then_some(d)
    })
    .await
}

/// A pod goes to every node it may run on, and pods follow the nodes: a new node
/// gets one, a node that stops matching or gets a NoExecute taint loses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node() {
    let c = TestCluster::start(&["daemonset"]).await;
    add_node(&c.client, "n1", json!({}), json!([])).await;
    add_node(&c.client, "n2", json!({"disk": "ssd"}), json!([])).await;
    add_node(
        &c.client,
        "n3",
        json!({}),
        json!([{"key": "gpu", "effect": "NoSchedule"}]),
    )
    .await;
    // Cordoned: the default daemon tolerations let a pod on.
    add_node(
        &c.client,
        "n4",
        json!({}),
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    )
    .await;
    let dss: Api<DaemonSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(20));
    dss.create(
        &PostParams::default(),
        &daemonset("agent", json!({}), json!({})),
    )
    .await
    .unwrap();
    dss.create(
        &PostParams::default(),
        &daemonset("ssd", json!({"nodeSelector": {"disk": "ssd"}}), json!({})),
    )
    .await
    .unwrap();
    wait_placement(
        &pods,
        "agent",
        &[("n1", "agent:1"), ("n2", "agent:1"), ("n4", "agent:1")],
    )
    .await;
    wait_placement(&pods, "ssd", &[("n2", "agent:1")]).await;
    let d = wait_status(&dss, "agent", |d| {
        d.status.as_ref().is_some_and(|s| s.number_ready == 3)
    })
    .await;
    let s = d.status.unwrap();
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_misscheduled,
            s.number_available,
            s.updated_number_scheduled,
            s.observed_generation
        ),
        (3, 3, 0, Some(3), Some(3), Some(1))
    );
    // The pods carry the daemon tolerations and an affinity to their node.
    let p = pods
        .list(&ListParams::default().labels("app=ssd"))
        .await
        .unwrap()
        .items
        .remove(0);
    let spec = p.spec.unwrap();
    assert!(spec.tolerations.unwrap().iter().any(|t| {
        t.key.as_deref() == Some("node.kubernetes.io/not-ready")
            && t.effect.as_deref() == Some("NoExecute")
    }));
    let terms = spec
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert_eq!(
        serde_json::to_value(&terms).unwrap(),
        json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])
    );

    // Nodes change: n5 comes, n1 gets the label, n2 loses it, n4 gets a NoExecute taint.
    let nodes: Api<Node> = Api::all(c.client.clone());
    add_node(&c.client, "n5", json!({}), json!([])).await;
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": null}}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "n4",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}),
            ),
        )
        .await
        .unwrap();
    wait_placement(
        &pods,
        "agent",
        &[("n1", "agent:1"), ("n2", "agent:1"), ("n5", "agent:1")],
    )
    .await;
    wait_placement(&pods, "ssd", &[("n1", "agent:1")]).await;
    let events: Api<Event> = c.api("default");
    eventually(30, "a SuccessfulCreate event", || async {
        let list = events
            .list(
                &ListParams::default().fields("involvedObject.name=agent,reason=SuccessfulCreate"),
            )
            .await
            .unwrap();
        list.items
            .iter()
            .any(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Created pod: agent-"))
            })
            .then_some(())
    })
    .await;
}

/// A live pod of `app` aimed at `node`, not failed.
async fn live_on(pods: &Api<Pod>, app: &str, node: &str) -> Option<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && rkube_controllers::pod_util::phase(p) != "Failed"
                && rkube_controllers::daemonset::placement::target_node(p).as_deref() == Some(node)
        })
}

/// Watches the live pods of `app` and records how few were ready and how many
/// existed at once.
struct Bounds {
    min_ready: usize,
    max_pods: usize,
}

async fn watch_bounds(
    pods: &Api<Pod>,
    app: &str,
) -> (Arc<Mutex<Bounds>>, tokio::task::JoinHandle<()>) {
    let lp = ListParams::default().labels(&format!("app={app}"));
    let list = pods.list(&lp).await.unwrap();
    let mut live: HashMap<String, bool> = list
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                rkube_controllers::pod_util::is_ready(p),
            )
        })
        .collect();
    let bounds = Arc::new(Mutex::new(Bounds {
        min_ready: live.values().filter(|r| **r).count(),
        max_pods: live.len(),
    }));
    let wp = WatchParams::default().labels(&format!("app={app}"));
    let mut stream = pods
        .watch(&wp, &list.metadata.resource_version.unwrap())
        .await
        .unwrap()
        .boxed();
    let b = bounds.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    let ready = rkube_controllers::pod_util::is_ready(&p)
                        && p.metadata.deletion_timestamp.is_none();
                    live.insert(p.metadata.name.unwrap(), ready);
                }
                WatchEvent::Deleted(p) => {
                    live.remove(&p.metadata.name.unwrap());
                }
                _ => continue,
            }
            let mut b = b.lock().unwrap();
            b.min_ready = b.min_ready.min(live.values().filter(|r| **r).count());
            b.max_pods = b.max_pods.max(live.len());
        }
    });
    (bounds, task)
}

async fn rolling_update(strategy: serde_json::Value, min_ready: usize, max_pods: usize) {
    let c = TestCluster::start(&["daemonset"]).await;
    for n in ["a", "b", "c", "d"] {
        add_node(&c.client, n, json!({}), json!([])).await;
    }
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(30));
    let dss: Api<DaemonSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    dss.create(
        &PostParams::default(),
        &daemonset("roll", json!({}), strategy),
    )
    .await
    .unwrap();
    wait_status(&dss, "roll", |d| {
        d.status
            .as_ref()
            .is_some_and(|s| s.number_available == Some(4))
    })
    .await;
    let (bounds, watch) = watch_bounds(&pods, "roll").await;
    dss.patch(
        "roll",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    let d = wait_status(&dss, "roll", |d| {
        d.status.as_ref().is_some_and(|s| {
            s.observed_generation == Some(2)
                && s.updated_number_scheduled == Some(4)
                && s.number_available == Some(4)
        })
    })
    .await;
    wait_placement(
        &pods,
        "roll",
        &[
            ("a", "agent:2"),
            ("b", "agent:2"),
            ("c", "agent:2"),
            ("d", "agent:2"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    watch.abort();
    let (seen_ready, seen_pods) = {
        let b = bounds.lock().unwrap();
        (b.min_ready, b.max_pods)
    };
    assert!(
        seen_ready >= min_ready,
        "only {seen_ready} ready at one point"
    );
    assert!(seen_pods <= max_pods, "{seen_pods} pods at once");
    assert_eq!(d.status.unwrap().number_unavailable, Some(0));
    let revs: Api<ControllerRevision> = c.api("default");
    let list = revs.list(&Default::default()).await.unwrap().items;
    let mut numbers: Vec<i64> = list.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_max_unavailable() {
    rolling_update(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}),
        3,
        4,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_surge_keeps_every_node_served() {
    rolling_update(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        4,
        5,
    )
    .await;
}

/// OnDelete: the new template reaches a node when its pod is deleted; a failed pod
/// is replaced with a FailedDaemonPod event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_and_failed_pods() {
    let c = TestCluster::start(&["daemonset"]).await;
    add_node(&c.client, "a", json!({}), json!([])).await;
    add_node(&c.client, "b", json!({}), json!([])).await;
    let _kubelet = fake_kubelet(&c.client, "default", Duration::from_millis(20));
    let dss: Api<DaemonSet> = c.api("default");
    let pods: Api<Pod> = c.api("default");
    dss.create(
        &PostParams::default(),
        &daemonset("od", json!({}), json!({"type": "OnDelete"})),
    )
    .await
    .unwrap();
    wait_placement(&pods, "od", &[("a", "agent:1"), ("b", "agent:1")]).await;
    dss.patch(
        "od",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    wait_status(&dss, "od", |d| {
        d.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_placement(&pods, "od", &[("a", "agent:1"), ("b", "agent:1")]).await;
    let victim = live_on(&pods, "od", "a").await.unwrap();
    pods.delete(
        victim.metadata.name.as_deref().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    wait_placement(&pods, "od", &[("a", "agent:2"), ("b", "agent:1")]).await;

    // The pod on a fails (once the stand-in kubelet started it): it is replaced.
    let failing = eventually(30, "the new pod on a ready", || async {
        live_on(&pods, "od", "a")
            .await
            .filter(rkube_controllers::pod_util::is_ready)
    })
    .await;
    let name = failing.metadata.name.clone().unwrap();
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}})),
    )
    .await
    .unwrap();
    eventually(30, "a replacement of the failed pod", || async {
        live_on(&pods, "od", "a")
            .await
            .filter(|p| p.metadata.name.as_deref() != Some(name.as_str()))
    })
    .await;
    let events: Api<Event> = c.api("default");
    eventually(30, "a FailedDaemonPod event", || async {
        let list = events
            .list(&ListParams::default().fields("reason=FailedDaemonPod"))
            .await
            .unwrap();
        list.items
            .iter()
            .any(|e| {
                e.message.as_deref()
                    == Some(&format!(
                        "Found failed daemon pod default/{name} on node a, will try to kill it"
                    ))
            })
            .then_some(())
    })
    .await;
}
