//! Root tests of the pod network on real namespaces, bridges and veths.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use common::*;
use rkube_net::pod_network::{NodeRoute, PodNetwork};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces, bridges and nftables tables"]
async fn pods_on_one_node_reach_each_other() {
    if !root_or_skip() {
        return;
    }
    let node = node("10.42.0.0/24").await;
    let a = pod(&node).await;
    let b = pod(&node).await;
    assert_ne!(a.ip.ip, b.ip.ip);
    tcp_server(&b.ns.netns(), 8080, "hello from b");
    let got = tcp_get(&a.ns.netns(), SocketAddr::from((b.ip.ip, 8080))).unwrap();
    assert_eq!(got, "hello from b");
    // The pod sees the address in its own eth0 and a default route via the bridge.
    let addr =
        a.ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("{}/24", a.ip.ip)), "{addr}");
    let route = a.ns.exec(&["ip", "route", "show", "default"]);
    assert!(route.contains("via 10.42.0.1 dev eth0"), "{route}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces, bridges and nftables tables"]
async fn setup_is_idempotent_and_teardown_cleans_up() {
    if !root_or_skip() {
        return;
    }
    let node = node("10.42.0.0/24").await;
    let a = pod(&node).await;
    let again = node.net.setup(&a.id, &a.ns.path()).await.unwrap();
    assert_eq!(again, a.ip);
    node.net.ensure_node().await.unwrap();
    let links = node.ns.exec(&["ip", "-o", "link", "show"]);
    assert_eq!(links.matches("veth").count(), 1, "{links}");

    assert_eq!(node.net.teardown(&a.id).await.unwrap(), Some(a.ip.ip));
    assert_eq!(node.net.teardown(&a.id).await.unwrap(), None);
    let links = node.ns.exec(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("veth"), "{links}");
    let pod_links = a.ns.exec(&["ip", "-o", "link", "show"]);
    assert!(!pod_links.contains("eth0"), "{pod_links}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces, bridges and nftables tables"]
async fn ipam_survives_a_restart_without_double_assignment() {
    if !root_or_skip() {
        return;
    }
    let node = node("10.42.0.0/24").await;
    let a = pod(&node).await;
    let b = pod(&node).await;
    // The node process restarts: a new PodNetwork over the same state directory.
    let config = node.net.config().clone();
    drop(node.net);
    let restarted = PodNetwork::new(config).await.unwrap();
    assert_eq!(restarted.setup(&a.id, &a.ns.path()).await.unwrap(), a.ip);
    let c_ns = TestNetns::new("rkp");
    let c = restarted.setup("sandbox-c", &c_ns.path()).await.unwrap();
    assert!(c.ip != a.ip.ip && c.ip != b.ip.ip);
    // b's sandbox is gone: the sweep frees its address and its veth.
    let live: HashSet<String> = [a.id.clone(), "sandbox-c".to_string()].into();
    drop(b);
    let report = restarted.sweep(&live).await.unwrap();
    assert_eq!(report.addresses.len(), 1);
    let links = node.ns.exec(&["ip", "-o", "link", "show"]);
    assert_eq!(links.matches("veth").count(), 2, "{links}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces, bridges and nftables tables"]
async fn pods_on_two_nodes_reach_each_other_through_host_gw_routes() {
    if !root_or_skip() {
        return;
    }
    let n1 = node("10.42.0.0/24").await;
    let n2 = node("10.42.1.0/24").await;
    let (ip1, ip2) = (Ipv4Addr::new(172, 31, 0, 1), Ipv4Addr::new(172, 31, 0, 2));
    link(&n1.ns, ip1, &n2.ns, ip2);
    n1.net
        .set_node_routes(&[NodeRoute {
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            node_ip: ip2,
        }])
        .await
        .unwrap();
    n2.net
        .set_node_routes(&[NodeRoute {
            pod_cidr: "10.42.0.0/24".parse().unwrap(),
            node_ip: ip1,
        }])
        .await
        .unwrap();
    let p1 = pod(&n1).await;
    let p2 = pod(&n2).await;
    tcp_server(&p2.ns.netns(), 9000, "node2 pod");
    assert_eq!(
        tcp_get(&p1.ns.netns(), SocketAddr::from((p2.ip.ip, 9000))).unwrap(),
        "node2 pod"
    );

    // An address in the cluster CIDR that no node owns is dropped on the node
    // (blackhole), not sent anywhere.
    let routes = n1.ns.exec(&["ip", "route", "show", "10.42.0.0/16"]);
    assert!(routes.contains("blackhole 10.42.0.0/16"), "{routes}");
    let unowned = tcp_get(
        &n1.ns.netns(),
        SocketAddr::from((Ipv4Addr::new(10, 42, 77, 1), 80)),
    );
    assert!(unowned.is_err());
    let svc = n1.ns.exec(&["ip", "route", "get", "10.43.9.9"]);
    assert!(
        svc.contains(&format!("dev {}", n1.net.config().bridge)),
        "{svc}"
    );
}
