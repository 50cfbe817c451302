//! The Kubernetes layer against a stand-in API server (a tower service answering
//! list and watch requests from fixed objects): the runners feed the proxy and the
//! DNS from what the API holds. No root needed: the proxy's OS is the recording fake.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use rkube_net::os::{RecordingOs, Route, RouteTarget};
use rkube_net::{ClusterDns, DnsConfig, ProxyConfig, ServiceProxy, k8s};
use rkube_net::{Netns, PodNetwork, PodNetworkConfig};
use serde_json::{Value, json};

fn lists() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/api/v1/services",
            json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "7"}, "items": [
                {"metadata": {"name": "web", "namespace": "default", "resourceVersion": "5"},
                 "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
            ]}),
        ),
        (
            "/apis/discovery.k8s.io/v1/endpointslices",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {"resourceVersion": "7"}, "items": [
                {"metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "6",
                              "labels": {"kubernetes.io/service-name": "web"}},
                 "addressType": "IPv4",
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                 "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "node-a"}]}
            ]}),
        ),
        (
            "/api/v1/nodes",
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "7"}, "items": [
                {"metadata": {"name": "node-a"}, "spec": {"podCIDR": "10.42.0.0/24"},
                 "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}},
                {"metadata": {"name": "node-b"}, "spec": {"podCIDR": "10.42.1.0/24"},
                 "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}}
            ]}),
        ),
        (
            "/api/v1/pods",
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": []}),
        ),
    ]
}

/// A client whose API answers lists from `lists()` and keeps watches open, silent.
fn fake_client() -> kube::Client {
    let svc = tower::service_fn(|req: http::Request<kube::client::Body>| async move {
        let watch = req.uri().query().unwrap_or("").contains("watch=");
        let body: BoxBody<Bytes, Infallible> = if watch {
            let pending = futures::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
            BoxBody::new(http_body_util::StreamBody::new(pending))
        } else {
            let list = lists()
                .into_iter()
                .find(|(path, _)| *path == req.uri().path())
                .map(|(_, v)| v)
                .unwrap_or_else(|| json!({"kind": "Status", "code": 404}));
            BoxBody::new(
                http_body_util::Full::new(Bytes::from(list.to_string())).map_err(|e| match e {}),
            )
        };
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        )
    });
    kube::Client::new(svc, "default")
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_proxy_is_synced_from_services_and_endpoint_slices() {
    let os = Arc::new(RecordingOs::new());
    let proxy = ServiceProxy::with_os(
        ProxyConfig::new("node-a"),
        os.clone(),
        os.clone(),
        os.clone(),
    )
    .unwrap();
    let task = tokio::spawn(k8s::run_service_proxy(fake_client(), proxy));
    eventually("a proxy sync", || !os.scripts().is_empty()).await;
    let script = os.scripts().concat();
    assert!(
        script.contains("10.43.0.20 . tcp . 80 : goto service-"),
        "{script}"
    );
    assert!(
        script.contains("meta l4proto tcp dnat to 10.42.0.5:8080"),
        "{script}"
    );
    task.abort();
}

#[tokio::test]
async fn the_dns_zone_is_built_from_services() {
    let dns = ClusterDns::new(DnsConfig::new(vec![])).unwrap();
    let task = tokio::spawn(k8s::run_cluster_dns(fake_client(), dns.clone()));
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let query = q.to_vec().unwrap();
    let answered = || {
        dns.answer_local(&query)
            .map(|b| Message::from_vec(&b).unwrap())
            .is_some_and(|m| m.answers.iter().any(|r| matches!(&r.data, RData::A(a) if a.0 == std::net::Ipv4Addr::new(10, 43, 0, 20))))
    };
    eventually("the Service's A record", answered).await;
    task.abort();
}

#[tokio::test]
async fn routes_to_other_nodes_follow_the_node_list() {
    let dir = std::env::temp_dir().join(format!("rkube-k8s-routes-{}", std::process::id()));
    let os = Arc::new(RecordingOs::new());
    let config = PodNetworkConfig::new("10.42.0.0/24".parse().unwrap(), &dir);
    let net = Arc::new(
        PodNetwork::with_os(config, os.clone(), os.clone(), os.clone())
            .await
            .unwrap(),
    );
    let task = tokio::spawn(k8s::run_node_routes(fake_client(), net, "node-a".into()));
    let wanted = Route {
        dst: "10.42.1.0/24".parse().unwrap(),
        target: RouteTarget::Gateway(std::net::Ipv4Addr::new(192, 0, 2, 11)),
    };
    eventually("the route to node-b", || {
        os.route_set(&Netns::Current).contains(&wanted)
    })
    .await;
    task.abort();
    let _ = std::fs::remove_dir_all(dir);
}
