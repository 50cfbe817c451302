//! The scheduler against a real API server (in-process, memory store) and simulated
//! nodes: what a user sees on pods, nodes and events.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{TestCluster, condition, node_of, pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test]
async fn pods_are_bound_and_run_with_ips_from_their_node() {
    let c = TestCluster::start().await;
    for i in 0..6 {
        c.create_pod(pod(&format!("web-{i}"), "500m")).await;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let name = format!("web-{i}");
        let p = c
            .wait_pod(&name, "is Running with an IP", |p| {
                let s = p.status.as_ref();
                s.and_then(|s| s.phase.as_deref()) == Some("Running")
                    && s.and_then(|s| s.pod_ip.as_ref()).is_some()
            })
            .await;
        let node_name = node_of(&p).expect("bound");
        let node = c.nodes().get(&node_name).await.unwrap();
        let cidr: rkube_api::cidr::Ipv4Cidr = node.spec.unwrap().pod_cidr.unwrap().parse().unwrap();
        let ip = p
            .status
            .as_ref()
            .unwrap()
            .pod_ip
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cidr.contains(ip), "{ip} not in {cidr}");
        for ty in [
            "PodScheduled",
            "Initialized",
            "ContainersReady",
            "Ready",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(
                condition(&p, ty).map(|c| c.status.as_str()),
                Some("True"),
                "{ty} of {name}"
            );
        }
        let cs = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert!(cs.ready && cs.started == Some(true));
        assert!(cs.state.as_ref().unwrap().running.is_some());
        assert_eq!(cs.image, "nginx");
        *per_node.entry(node_name).or_default() += 1;
    }
    // Least-allocated scoring spreads equal pods over equal nodes.
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_node:?}"
    );
    let ips: HashSet<String> = c
        .pods()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert_eq!(ips.len(), 6, "every pod has its own IP");
    let events = c.events_for("web-0").await;
    let scheduled = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Scheduled"))
        .expect("a Scheduled event");
    assert!(
        scheduled
            .message
            .as_deref()
            .unwrap()
            .starts_with("Successfully assigned default/web-0 to sim-")
    );
}

#[tokio::test]
async fn an_oversized_pod_gets_failed_scheduling() {
    let c = TestCluster::start().await;
    c.create_pod(pod("big", "64")).await;
    let expected = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    assert_eq!(c.wait_unschedulable("big").await, expected);
    let events = c
        .eventually("a FailedScheduling event", || async {
            let e = c.events_for("big").await;
            e.into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        })
        .await;
    assert_eq!(events.message.as_deref(), Some(expected));
    assert_eq!(events.type_.as_deref(), Some("Warning"));
    assert_eq!(
        events.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("default-scheduler")
    );
    // Once a node is big enough, it is scheduled there (a node update retries it).
    c.patch_node("sim-1", json!({"metadata": {"labels": {"size": "big"}}}))
        .await;
    let status = json!({"status": {"capacity": {"cpu": "128", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "128", "memory": "8Gi", "pods": "110"}}});
    c.nodes()
        .patch_status(
            "sim-1",
            &Default::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    assert_eq!(c.wait_bound("big").await, "sim-1");
}

#[tokio::test]
async fn node_selector_and_taints_decide_the_node() {
    let c = TestCluster::start().await;
    c.patch_node("sim-1", json!({"metadata": {"labels": {"disk": "ssd"}}}))
        .await;
    let mut p = pod("ssd", "100m");
    p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    c.create_pod(p).await;
    assert_eq!(c.wait_bound("ssd").await, "sim-1");

    let mut nope = pod("nvme", "100m");
    nope["spec"]["nodeSelector"] = json!({"disk": "nvme"});
    c.create_pod(nope).await;
    assert_eq!(
        c.wait_unschedulable("nvme").await,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );

    for n in ["sim-0", "sim-2"] {
        c.patch_node(n, json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}))
            .await;
    }
    for i in 0..3 {
        c.create_pod(pod(&format!("plain-{i}"), "100m")).await;
        assert_eq!(c.wait_bound(&format!("plain-{i}")).await, "sim-1");
    }
    let mut tolerant = pod("tolerant", "100m");
    tolerant["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    tolerant["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["sim-0", "sim-2"]}]}]}}});
    c.create_pod(tolerant).await;
    let n = c.wait_bound("tolerant").await;
    assert!(n == "sim-0" || n == "sim-2", "{n}");

    let mut picky = pod("picky", "100m");
    picky["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "sim-0"});
    c.create_pod(picky).await;
    assert_eq!(
        c.wait_unschedulable("picky").await,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

#[tokio::test]
async fn pod_affinity_anti_affinity_and_topology_spread() {
    let c = TestCluster::start().await;
    let anti = |name: &str| {
        let mut p = pod(name, "100m");
        p["metadata"]["labels"] = json!({"app": "db"});
        p["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        p
    };
    let mut nodes = HashSet::new();
    for i in 0..3 {
        let name = format!("db-{i}");
        c.create_pod(anti(&name)).await;
        nodes.insert(c.wait_bound(&name).await);
    }
    assert_eq!(nodes.len(), 3, "one db per node");
    c.create_pod(anti("db-3")).await;
    assert_eq!(
        c.wait_unschedulable("db-3").await,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );

    // Affinity: follow db-1 to its node.
    let db1 = c.wait_bound("db-1").await;
    let mut near = pod("cache", "100m");
    near["spec"]["affinity"] = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
         "topologyKey": "kubernetes.io/hostname", "namespaces": ["default"]}]}});
    near["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": db1});
    c.create_pod(near).await;
    assert_eq!(c.wait_bound("cache").await, db1);

    // Topology spread: six pods, max skew 1 over hostnames: two per node.
    for i in 0..6 {
        let mut p = pod(&format!("spread-{i}"), "100m");
        p["metadata"]["labels"] = json!({"app": "spread"});
        p["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]);
        c.create_pod(p).await;
        c.wait_bound(&format!("spread-{i}")).await;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        *per_node
            .entry(c.wait_bound(&format!("spread-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_node:?}"
    );
}

#[tokio::test]
async fn cordoned_nodes_take_no_pods() {
    let c = TestCluster::start().await;
    for n in ["sim-0", "sim-1", "sim-2"] {
        c.patch_node(n, json!({"spec": {"unschedulable": true}}))
            .await;
    }
    c.create_pod(pod("waiting", "100m")).await;
    assert_eq!(
        c.wait_unschedulable("waiting").await,
        "0/3 nodes are available: 3 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    c.patch_node("sim-2", json!({"spec": {"unschedulable": false}}))
        .await;
    assert_eq!(c.wait_bound("waiting").await, "sim-2");
}

#[tokio::test]
async fn a_higher_priority_pod_preempts_a_lower_one() {
    let c = TestCluster::start_with(common::Options {
        nodes: 1,
        cpu: "2",
        ..Default::default()
    })
    .await;
    let classes: Api<PriorityClass> = Api::all(c.client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        let pc: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
        classes.create(&PostParams::default(), &pc).await.unwrap();
    }
    let mut low = pod("low", "1500m");
    low["spec"]["priorityClassName"] = json!("low");
    c.create_pod(low).await;
    c.wait_pod("low", "is Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    let mut high = pod("high", "1500m");
    high["spec"]["priorityClassName"] = json!("high");
    c.create_pod(high).await;
    assert_eq!(c.wait_bound("high").await, "sim-0");
    c.eventually("the low-priority pod is gone", || async {
        c.pods()
            .get_opt("low")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    let preempted = c
        .eventually("a Preempted event", || async {
            c.events_for("low")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Preempted"))
        })
        .await;
    assert!(preempted.message.unwrap().ends_with("on node sim-0"));
}

#[tokio::test]
async fn a_lost_node_is_tainted_its_pods_evicted_and_new_pods_go_elsewhere() {
    let c = TestCluster::start_with(common::Options {
        grace_period: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let mut p = pod("fragile", "100m");
    p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "sim-0"});
    p["spec"]["tolerations"] = json!([
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]);
    c.create_pod(p).await;
    let mut sturdy = pod("sturdy", "100m");
    sturdy["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "sim-0"});
    sturdy["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]);
    c.create_pod(sturdy).await;
    for n in ["fragile", "sturdy"] {
        c.wait_pod(n, "is Running", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .await;
    }
    assert!(c.sim.pause("sim-0"));
    let node = c
        .eventually("sim-0 is Unknown and tainted", || async {
            let n = c.nodes().get("sim-0").await.ok()?;
            let ready = common::node_condition(&n, "Ready")?;
            let taints = n.spec.as_ref()?.taints.clone().unwrap_or_default();
            (ready.status == "Unknown" && taints.len() == 2).then_some(n)
        })
        .await;
    let ready = common::node_condition(&node, "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let mut taints: Vec<(String, String)> = node
        .spec
        .unwrap()
        .taints
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect();
    taints.sort();
    assert_eq!(
        taints,
        vec![
            ("node.kubernetes.io/unreachable".into(), "NoExecute".into()),
            ("node.kubernetes.io/unreachable".into(), "NoSchedule".into())
        ]
    );
    // After its toleration's second, the fragile pod is evicted (terminating: its
    // node cannot confirm); the sturdy one tolerates the taint forever.
    let evicted = c
        .wait_pod("fragile", "is being deleted", |p| {
            p.metadata.deletion_timestamp.is_some()
        })
        .await;
    assert_eq!(
        condition(&evicted, "DisruptionTarget")
            .and_then(|c| c.reason.clone())
            .as_deref(),
        Some("DeletionByTaintManager")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sturdy = c.pods().get("sturdy").await.unwrap();
    assert!(sturdy.metadata.deletion_timestamp.is_none());

    // Its replacement goes to a healthy node.
    let mut again = pod("fragile-2", "100m");
    again["spec"]["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["sim-0"]}]}}]}});
    c.create_pod(again).await;
    let n = c.wait_bound("fragile-2").await;
    assert_ne!(n, "sim-0");

    // The node comes back: Ready, untainted, and it finishes the eviction.
    assert!(c.sim.resume("sim-0"));
    c.eventually("sim-0 is Ready and untainted", || async {
        let n = c.nodes().get("sim-0").await.ok()?;
        let ready = common::node_condition(&n, "Ready")?.status == "True";
        let untainted = n
            .spec
            .as_ref()?
            .taints
            .as_ref()
            .is_none_or(|t| t.is_empty());
        (ready && untainted).then_some(())
    })
    .await;
    c.eventually("the evicted pod is gone", || async {
        c.pods()
            .get_opt("fragile")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lost_nodes_deployment_pods_are_evicted_and_replaced_elsewhere() {
    let c = TestCluster::start_with(common::Options {
        grace_period: Duration::from_secs(2),
        controllers: true,
        ..Default::default()
    })
    .await;
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "c", "image": "registry.local/pause:3.10",
                    "resources": {"requests": {"cpu": "100m"}}}],
                "tolerations": [
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 1},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 1}]}}}
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let running = |pods: &[k8s_openapi::api::core::v1::Pod]| -> Vec<(String, String)> {
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| Some((p.metadata.name.clone()?, node_of(p)?)))
            .collect()
    };
    let before = c
        .eventually("6 pods Running", || async {
            let pods = c.pods().list(&Default::default()).await.ok()?.items;
            let r = running(&pods);
            (r.len() == 6).then_some(r)
        })
        .await;
    // The controller's pods are spread: every node has some.
    let lost = "sim-0";
    let on_lost: HashSet<String> = before
        .iter()
        .filter(|(_, n)| n == lost)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        !on_lost.is_empty(),
        "pods spread over the nodes: {before:?}"
    );

    assert!(c.sim.pause(lost));
    // Its pods are evicted after their toleration's second and replaced on the
    // other nodes; the evicted ones stay Terminating while their node is away.
    let after = c
        .eventually("6 pods Running on the other nodes", || async {
            let pods = c.pods().list(&Default::default()).await.ok()?.items;
            let r = running(&pods);
            (r.len() == 6 && r.iter().all(|(_, n)| n != lost)).then_some(pods)
        })
        .await;
    for p in after
        .iter()
        .filter(|p| on_lost.contains(p.metadata.name.as_deref().unwrap()))
    {
        assert!(
            p.metadata.deletion_timestamp.is_some(),
            "evicted: {:?}",
            p.metadata.name
        );
        assert_eq!(
            condition(p, "DisruptionTarget")
                .and_then(|c| c.reason.clone())
                .as_deref(),
            Some("DeletionByTaintManager")
        );
    }
}
