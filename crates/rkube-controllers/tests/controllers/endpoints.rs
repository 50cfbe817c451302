//! Endpoints and EndpointSlices follow the pods a Service selects.

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::{TestCluster, eventually, mark_ready};

async fn pod(
    c: &TestCluster,
    name: &str,
    labels: serde_json::Value,
    extra_spec: serde_json::Value,
) {
    let pods: Api<Pod> = c.api("default");
    let mut spec = json!({
        "nodeName": "node-a",
        "containers": [{"name": "app", "image": "nginx", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "metrics", "containerPort": 9090}
        ]}]
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let p: Pod =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
            .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
}

async fn running_unready(c: &TestCluster, name: &str, ip: &str) {
    let pods: Api<Pod> = c.api("default");
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "False"}]}}),
        ),
    )
    .await
    .unwrap();
}

async fn service(c: &TestCluster, body: serde_json::Value) {
    let services: Api<Service> = c.api("default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(body).unwrap(),
        )
        .await
        .unwrap();
}

fn ips(list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<String> {
    list.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_readiness() {
    let c = TestCluster::start(&["endpoints", "endpointslice"]).await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-1"}}})).unwrap(),
        )
        .await
        .unwrap();
    service(
        &c,
        json!({
            "metadata": {"name": "web", "labels": {"team": "fe"}},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9000, "targetPort": 9090, "appProtocol": "http"}
            ]}
        }),
    )
    .await;
    pod(&c, "web-1", json!({"app": "web"}), json!({})).await;
    pod(&c, "web-2", json!({"app": "web"}), json!({})).await;
    pod(&c, "no-ip", json!({"app": "web"}), json!({})).await;
    pod(&c, "other", json!({"app": "db"}), json!({})).await;
    mark_ready(&c.client, "default", "web-1", "10.42.0.11").await;
    running_unready(&c, "web-2", "10.42.0.12").await;
    mark_ready(&c.client, "default", "other", "10.42.0.13").await;

    let eps: Api<Endpoints> = c.api("default");
    let ep = eventually(10, "endpoints with both pods", || async {
        let e = eps.get_opt("web").await.unwrap()?;
        let s = e.subsets.as_ref()?.first()?.clone();
        (ips(&s.addresses) == ["10.42.0.11"] && ips(&s.not_ready_addresses) == ["10.42.0.12"])
            .then_some(e)
    })
    .await;
    assert_eq!(ep.metadata.labels.as_ref().unwrap()["team"], "fe");
    let subset = &ep.subsets.as_ref().unwrap()[0];
    let addr = &subset.addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some("node-a"));
    let tr = addr.target_ref.as_ref().unwrap();
    assert_eq!(
        (tr.kind.as_deref(), tr.name.as_deref()),
        (Some("Pod"), Some("web-1"))
    );
    assert!(tr.uid.is_some());
    let mut ports: Vec<(String, i32)> = subset
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [("http".to_string(), 8080), ("metrics".to_string(), 9090)]
    );

    // The same in the EndpointSlice.
    let slices: Api<EndpointSlice> = c.api("default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = eventually(10, "the slice", || async {
        let l = slices.list(&lp).await.unwrap().items;
        (l.len() == 1 && l[0].endpoints.len() == 2).then(|| l[0].clone())
    })
    .await;
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice.metadata.labels.as_ref().unwrap()["team"], "fe");
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Service", "web", Some(true))
    );
    let e1 = slice
        .endpoints
        .iter()
        .find(|e| e.addresses == ["10.42.0.11"])
        .unwrap();
    let c1 = e1.conditions.as_ref().unwrap();
    assert_eq!(
        (c1.ready, c1.serving, c1.terminating),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(e1.zone.as_deref(), Some("zone-1"));
    assert_eq!(e1.node_name.as_deref(), Some("node-a"));
    let e2 = slice
        .endpoints
        .iter()
        .find(|e| e.addresses == ["10.42.0.12"])
        .unwrap();
    assert_eq!(e2.conditions.as_ref().unwrap().ready, Some(false));
    let metrics = slice
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    assert_eq!(
        (metrics.port, metrics.app_protocol.as_deref()),
        (Some(9090), Some("http"))
    );

    // Readiness moves an address; a deleting pod is terminating in the slice and
    // leaves the Endpoints.
    mark_ready(&c.client, "default", "web-2", "10.42.0.12").await;
    eventually(10, "both ready", || async {
        let e = eps.get("web").await.unwrap();
        (ips(&e.subsets?[0].addresses) == ["10.42.0.11", "10.42.0.12"]).then_some(())
    })
    .await;
    let pods: Api<Pod> = c.api("default");
    pods.delete("web-1", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "web-1 out of the endpoints", || async {
        let e = eps.get("web").await.unwrap();
        (ips(&e.subsets?[0].addresses) == ["10.42.0.12"]).then_some(())
    })
    .await;
    let slice = eventually(10, "web-1 terminating", || async {
        let l = slices.list(&lp).await.unwrap().items;
        let e = l
            .first()?
            .endpoints
            .iter()
            .find(|e| e.addresses == ["10.42.0.11"])?
            .clone();
        (e.conditions.as_ref()?.terminating == Some(true)).then_some(e)
    })
    .await;
    let c1 = slice.conditions.unwrap();
    assert_eq!((c1.ready, c1.serving), (Some(false), Some(true)));

    // The Service goes: so do its Endpoints and slices.
    let services: Api<Service> = c.api("default");
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "endpoints gone", || async {
        (eps.get_opt("web").await.unwrap().is_none()
            && slices.list(&lp).await.unwrap().items.is_empty())
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_and_publish_not_ready_services() {
    let c = TestCluster::start(&["endpoints", "endpointslice"]).await;
    service(&c, json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "publishNotReadyAddresses": true}
    }))
    .await;
    pod(
        &c,
        "db-0",
        json!({"app": "db"}),
        json!({"hostname": "db-0", "subdomain": "db"}),
    )
    .await;
    running_unready(&c, "db-0", "10.42.1.5").await;
    let eps: Api<Endpoints> = c.api("default");
    let ep = eventually(10, "headless endpoints", || async {
        let e = eps.get_opt("db").await.unwrap()?;
        e.subsets.is_some().then_some(e)
    })
    .await;
    assert_eq!(
        ep.metadata.labels.as_ref().unwrap()["service.kubernetes.io/headless"],
        ""
    );
    let s = &ep.subsets.unwrap()[0];
    // Not ready, but published; no ports on a headless Service without ports.
    let a = &s.addresses.as_ref().unwrap()[0];
    assert_eq!(
        (a.ip.as_str(), a.hostname.as_deref()),
        ("10.42.1.5", Some("db-0"))
    );
    assert!(s.ports.is_none());
    let slices: Api<EndpointSlice> = c.api("default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=db");
    let slice = eventually(10, "the slice", || async {
        let l = slices.list(&lp).await.unwrap().items;
        (l.len() == 1 && !l[0].endpoints.is_empty()).then(|| l[0].clone())
    })
    .await;
    assert_eq!(
        slice.endpoints[0].conditions.as_ref().unwrap().ready,
        Some(true)
    );
    assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("db-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_selectors_or_pods() {
    let c = TestCluster::start(&["endpoints", "endpointslice"]).await;
    let eps: Api<Endpoints> = c.api("default");
    let before = eps.get_opt("kubernetes").await.unwrap();
    service(
        &c,
        json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    service(&c, json!({"metadata": {"name": "empty"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})).await;
    let slices: Api<EndpointSlice> = c.api("default");
    // A Service with no pods gets an empty placeholder slice and empty Endpoints.
    let placeholder = eventually(10, "the placeholder slice", || async {
        let l = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=empty"))
            .await
            .unwrap()
            .items;
        (l.len() == 1).then(|| l[0].clone())
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
    eventually(10, "empty endpoints", || async {
        eps.get_opt("empty").await.unwrap().map(|_| ())
    })
    .await;
    // Services without a selector are left to whoever manages their endpoints.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(eps.get_opt("manual").await.unwrap().is_none());
    // Nor is the `kubernetes` Service's (the API server's own).
    let after = eps.get_opt("kubernetes").await.unwrap();
    assert_eq!(
        before.map(|e| e.metadata.resource_version),
        after.map(|e| e.metadata.resource_version)
    );
}
