//! Root tests of the service proxy: real nftables tables in a node namespace, pods as
//! namespaces on its bridge, and clients in pods, on the node and in a namespace
//! standing for another machine.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use rkube_net::Netns;
use rkube_net::proxy::{Endpoint, Protocol, ProxyConfig, ServicePort, ServiceProxy};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 1, 1);
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 1, 2);

struct Cluster {
    node: TestNode,
    pods: Vec<TestPod>,
    outside: TestNetns,
    proxy: ServiceProxy,
}

/// A node with `n` pods, each answering on 8080 with its own name, a namespace for
/// another machine linked to the node, and a proxy with a table of its own.
async fn cluster(n: usize) -> Cluster {
    let node = node("10.42.0.0/24").await;
    let mut pods = Vec::new();
    for i in 0..n {
        let p = pod(&node).await;
        tcp_server(&p.ns.netns(), 8080, &format!("pod-{i}"));
        pods.push(p);
    }
    let outside = TestNetns::new("rko");
    link(&node.ns, NODE_IP, &outside, OUTSIDE_IP);
    let mut config = ProxyConfig::new("node-a");
    config.table = unique("rkube-proxy-");
    config.netns = node.ns.netns();
    config.nodeport_ips = vec![NODE_IP];
    let proxy = ServiceProxy::new(config).unwrap();
    Cluster {
        node,
        pods,
        outside,
        proxy,
    }
}

fn endpoint(p: &TestPod) -> Endpoint {
    Endpoint {
        ip: p.ip.ip,
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        node_name: Some("node-a".into()),
    }
}

fn service(name: &str, ip: [u8; 4], eps: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        protocol: Some(Protocol::Tcp),
        cluster_ip: Some(Ipv4Addr::from(ip)),
        port: 80,
        endpoints: eps,
        ..Default::default()
    }
}

fn spread(ns: &Netns, to: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let who = tcp_get(ns, to).expect("connect through the service");
        *seen.entry(who).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and nftables tables"]
async fn cluster_ip_spreads_connections_over_endpoints() {
    if !root_or_skip() {
        return;
    }
    let mut c = cluster(4).await;
    // Pods 1..3 back the service; pod 0 is the client.
    let eps = c.pods[1..].iter().map(endpoint).collect();
    let stats = c
        .proxy
        .sync(&[service("web", [10, 43, 0, 20], eps)])
        .await
        .unwrap();
    assert!(stats.full);
    let seen = spread(&c.pods[0].ns.netns(), "10.43.0.20:80".parse().unwrap(), 60);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "{seen:?}");

    // From the node itself too (masqueraded so replies come back).
    let seen = spread(&c.node.ns.netns(), "10.43.0.20:80".parse().unwrap(), 30);
    assert!(seen.len() >= 2, "{seen:?}");

    // An incremental sync moves the service to pod 1 only.
    let stats = c
        .proxy
        .sync(&[service("web", [10, 43, 0, 20], vec![endpoint(&c.pods[1])])])
        .await
        .unwrap();
    assert!(!stats.full);
    let seen = spread(&c.pods[0].ns.netns(), "10.43.0.20:80".parse().unwrap(), 10);
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["pod-1"]);
    c.proxy.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and nftables tables"]
async fn service_without_endpoints_refuses_at_once() {
    if !root_or_skip() {
        return;
    }
    let mut c = cluster(1).await;
    let mut empty = service("empty", [10, 43, 0, 30], vec![]);
    empty.node_port = Some(30090);
    c.proxy.sync(&[empty]).await.unwrap();
    let checks = [
        (
            c.pods[0].ns.netns(),
            SocketAddr::from(([10, 43, 0, 30], 80)),
        ),
        (c.node.ns.netns(), SocketAddr::from(([10, 43, 0, 30], 80))),
        (c.outside.netns(), SocketAddr::from((NODE_IP, 30090))),
    ];
    for (ns, to) in checks {
        let start = Instant::now();
        let err = tcp_get(&ns, to).expect_err("nothing may answer");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{to}: {err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{to}: took {:?}",
            start.elapsed()
        );
    }
    // A port the ClusterIP does not serve is refused too.
    let err = tcp_get(&c.pods[0].ns.netns(), "10.43.0.30:81".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and nftables tables"]
async fn nodeport_answers_from_the_node_and_from_outside() {
    if !root_or_skip() {
        return;
    }
    let mut c = cluster(3).await;
    let mut np = service(
        "np",
        [10, 43, 0, 40],
        c.pods[1..].iter().map(endpoint).collect(),
    );
    np.node_port = Some(30080);
    c.proxy.sync(&[np]).await.unwrap();
    let node_ns = c.node.ns.netns();
    for to in [
        SocketAddr::from((NODE_IP, 30080)),
        SocketAddr::from(([127, 0, 0, 1], 30080)),
    ] {
        let who = tcp_get(&node_ns, to).unwrap_or_else(|e| panic!("{to}: {e}"));
        assert!(who == "pod-1" || who == "pod-2", "{who}");
    }
    let seen = spread(&c.outside.netns(), SocketAddr::from((NODE_IP, 30080)), 20);
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and nftables tables"]
async fn session_affinity_keeps_a_client_on_one_endpoint() {
    if !root_or_skip() {
        return;
    }
    let mut c = cluster(4).await;
    let mut sticky = service(
        "sticky",
        [10, 43, 0, 50],
        c.pods[1..].iter().map(endpoint).collect(),
    );
    sticky.affinity_timeout = Some(300);
    c.proxy.sync(&[sticky.clone()]).await.unwrap();
    let seen = spread(&c.pods[0].ns.netns(), "10.43.0.50:80".parse().unwrap(), 20);
    assert_eq!(seen.len(), 1, "{seen:?}");
    // An unrelated change (incremental sync) keeps the affinity entries.
    let other = service("other", [10, 43, 0, 51], vec![endpoint(&c.pods[1])]);
    c.proxy.sync(&[sticky, other]).await.unwrap();
    let again = spread(&c.pods[0].ns.netns(), "10.43.0.50:80".parse().unwrap(), 10);
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        seen.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and nftables tables"]
async fn a_pod_reaches_itself_through_its_service() {
    if !root_or_skip() {
        return;
    }
    let mut c = cluster(1).await;
    c.proxy
        .sync(&[service("self", [10, 43, 0, 60], vec![endpoint(&c.pods[0])])])
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            tcp_get(&c.pods[0].ns.netns(), "10.43.0.60:80".parse().unwrap()).unwrap(),
            "pod-0"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces and nftables tables"]
async fn udp_flows_follow_endpoint_changes() {
    if !root_or_skip() {
        return;
    }
    let mut c = cluster(3).await;
    for (i, p) in c.pods.iter().enumerate().skip(1) {
        udp_server(&p.ns.netns(), 5353, &format!("udp-{i}"));
    }
    let udp = |p: &TestPod| Endpoint {
        port: 5353,
        ..endpoint(p)
    };
    let mut dns = service("dns", [10, 43, 0, 70], vec![udp(&c.pods[1])]);
    dns.protocol = Some(Protocol::Udp);
    dns.port = 53;
    c.proxy.sync(std::slice::from_ref(&dns)).await.unwrap();
    // One client socket, so every datagram is the same conntrack flow.
    let client = udp_client(&c.pods[0].ns.netns());
    let to: SocketAddr = "10.43.0.70:53".parse().unwrap();
    assert_eq!(udp_ask(&client, to).unwrap(), "udp-1");
    dns.endpoints = vec![udp(&c.pods[2])];
    c.proxy.sync(std::slice::from_ref(&dns)).await.unwrap();
    // The old flow (still answered by pod 1, which is alive) was forgotten.
    assert_eq!(udp_ask(&client, to).unwrap(), "udp-2");
}
