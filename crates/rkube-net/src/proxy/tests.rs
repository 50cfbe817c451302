use std::net::Ipv4Addr;

use super::*;
use crate::os::RecordingOs;

fn ep(ip: [u8; 4], port: u16) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::from(ip),
        port,
        ready: true,
        serving: true,
        terminating: false,
        node_name: Some("node-a".into()),
    }
}

fn svc(name: &str, ip: [u8; 4], port: u16, eps: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        protocol: Some(Protocol::Tcp),
        cluster_ip: Some(Ipv4Addr::from(ip)),
        port,
        endpoints: eps,
        ..Default::default()
    }
}

fn config() -> ProxyConfig {
    ProxyConfig::new("node-a")
}

fn chains_with<'a>(rs: &'a Ruleset, prefix: &str) -> Vec<(&'a String, &'a Vec<String>)> {
    rs.chains().filter(|(n, _)| n.starts_with(prefix)).collect()
}

#[test]
fn cluster_ip_balances_over_ready_endpoints() {
    let s = svc(
        "web",
        [10, 43, 0, 20],
        80,
        vec![
            ep([10, 42, 0, 2], 8080),
            ep([10, 42, 0, 3], 8080),
            ep([10, 42, 0, 4], 8080),
        ],
    );
    let rs = Ruleset::build(&config(), &[s]);
    let (name, rules) = chains_with(&rs, "service-")[0];
    assert!(name.ends_with("-default/web/tcp/http"), "{name}");
    assert!(rules[0].contains("ip daddr 10.43.0.20 meta l4proto tcp th dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"));
    assert!(
        rules[1].starts_with("numgen random mod 3 0 goto endpoint-"),
        "{rules:?}"
    );
    assert!(
        rules[2].starts_with("numgen random mod 2 0 goto endpoint-"),
        "{rules:?}"
    );
    assert!(rules[3].starts_with("goto endpoint-"), "{rules:?}");
    let eps = chains_with(&rs, "endpoint-");
    assert_eq!(eps.len(), 3);
    assert!(
        eps.iter()
            .any(|(_, r)| r.contains(&"meta l4proto tcp dnat to 10.42.0.3:8080".to_string()))
    );
    assert!(
        eps.iter()
            .all(|(_, r)| r[0].starts_with("ip saddr 10.42.0.")
                && r[0].ends_with("jump mark-for-masquerade"))
    );
    assert_eq!(
        rs.service_ips.get("10.43.0.20 . tcp . 80"),
        Some(&format!("goto {name}"))
    );
    assert!(rs.no_endpoint_services.is_empty());
    assert!(rs.cluster_ips.contains(&Ipv4Addr::new(10, 43, 0, 20)));
}

#[test]
fn no_endpoints_rejects_and_terminating_endpoints_are_only_a_fallback() {
    let none = svc("empty", [10, 43, 0, 21], 80, vec![]);
    let mut term = ep([10, 42, 0, 9], 80);
    term.ready = false;
    term.terminating = true;
    let only_terminating = svc("draining", [10, 43, 0, 22], 80, vec![term.clone()]);
    let mixed = svc(
        "mixed",
        [10, 43, 0, 23],
        80,
        vec![term, ep([10, 42, 0, 10], 80)],
    );
    let mut not_serving = ep([10, 42, 0, 11], 80);
    not_serving.ready = false;
    not_serving.serving = false;
    not_serving.terminating = true;
    let dead = svc("dead", [10, 43, 0, 24], 80, vec![not_serving]);
    let rs = Ruleset::build(&config(), &[none, only_terminating, mixed, dead]);
    assert_eq!(
        rs.no_endpoint_services
            .get("10.43.0.21 . tcp . 80")
            .unwrap(),
        "goto reject-chain"
    );
    assert_eq!(
        rs.no_endpoint_services
            .get("10.43.0.24 . tcp . 80")
            .unwrap(),
        "goto reject-chain"
    );
    assert!(rs.service_ips.contains_key("10.43.0.22 . tcp . 80"));
    let dnats: Vec<String> = rs
        .chains()
        .flat_map(|(_, r)| r)
        .filter(|r| r.contains("dnat"))
        .cloned()
        .collect();
    assert!(dnats.contains(&"meta l4proto tcp dnat to 10.42.0.9:80".to_string()));
    assert!(dnats.contains(&"meta l4proto tcp dnat to 10.42.0.10:80".to_string()));
    // The mixed service uses only its ready endpoint.
    assert_eq!(dnats.len(), 2);
}

#[test]
fn session_affinity_pins_a_client_with_a_timed_set() {
    let mut s = svc(
        "sticky",
        [10, 43, 0, 30],
        80,
        vec![ep([10, 42, 0, 2], 80), ep([10, 42, 0, 3], 80)],
    );
    s.affinity_timeout = Some(600);
    let rs = Ruleset::build(&config(), &[s]);
    assert_eq!(rs.affinity_sets().count(), 2);
    assert!(rs.affinity_sets().all(|(_, t)| *t == 600));
    let (_, rules) = chains_with(&rs, "service-")[0];
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.starts_with("ip saddr @affinity-"))
            .count(),
        2
    );
    for (_, ep_rules) in chains_with(&rs, "endpoint-") {
        assert!(
            ep_rules[1].starts_with("update @affinity-") && ep_rules[1].ends_with("{ ip saddr }")
        );
    }
    let (script, _) = transaction::full(&config(), &rs);
    assert!(script.contains("flags dynamic,timeout\n\t\ttimeout 600s"));
}

#[test]
fn nodeports_external_ips_and_traffic_policies() {
    let mut remote = ep([10, 42, 1, 5], 8080);
    remote.node_name = Some("node-b".into());
    let mut np = svc(
        "np",
        [10, 43, 0, 40],
        80,
        vec![ep([10, 42, 0, 5], 8080), remote.clone()],
    );
    np.node_port = Some(30080);
    np.external_ips = vec![Ipv4Addr::new(203, 0, 113, 7)];
    np.load_balancer_ips = vec![Ipv4Addr::new(203, 0, 113, 8)];
    let mut local = np.clone();
    local.name = "np-local".into();
    local.cluster_ip = Some(Ipv4Addr::new(10, 43, 0, 41));
    local.node_port = Some(30081);
    local.external_ips.clear();
    local.load_balancer_ips.clear();
    local.external_local = true;
    let mut itp = svc("itp", [10, 43, 0, 42], 80, vec![remote]);
    itp.internal_local = true;
    let rs = Ruleset::build(&config(), &[np, local, itp]);

    let ext: Vec<_> = chains_with(&rs, "external-");
    let cluster_ext = ext
        .iter()
        .find(|(n, _)| n.ends_with("default/np/tcp/http"))
        .unwrap();
    assert_eq!(cluster_ext.1[0], "jump mark-for-masquerade");
    assert_eq!(
        rs.service_nodeports.get("tcp . 30080"),
        Some(&format!("goto {}", cluster_ext.0))
    );
    assert_eq!(
        rs.service_ips.get("203.0.113.7 . tcp . 80"),
        Some(&format!("goto {}", cluster_ext.0))
    );
    assert_eq!(
        rs.service_ips.get("203.0.113.8 . tcp . 80"),
        Some(&format!("goto {}", cluster_ext.0))
    );

    let local_ext = ext
        .iter()
        .find(|(n, _)| n.ends_with("default/np-local/tcp/http"))
        .unwrap();
    assert!(local_ext.1[0].starts_with("ip saddr 10.42.0.0/16 goto service-"));
    assert!(local_ext.1.last().unwrap().starts_with("goto local-"));
    let (_, local_rules) = chains_with(&rs, "local-")
        .into_iter()
        .find(|(n, _)| n.ends_with("np-local/tcp/http"))
        .unwrap();
    assert!(local_rules.last().unwrap().starts_with("goto endpoint-"));
    assert_eq!(local_rules.len(), 2);

    // internalTrafficPolicy Local with endpoints only elsewhere: drop, not reject.
    assert_eq!(
        rs.no_endpoint_services
            .get("10.43.0.42 . tcp . 80")
            .unwrap(),
        "drop"
    );
}

#[test]
fn headless_and_node_local_services_are_left_alone_and_protocols_are_kept() {
    let mut headless = svc("headless", [0, 0, 0, 0], 80, vec![ep([10, 42, 0, 2], 80)]);
    headless.cluster_ip = None;
    let dns = svc("kube-dns", [10, 43, 0, 10], 53, vec![]);
    let mut udp = svc("udp", [10, 43, 0, 50], 53, vec![ep([10, 42, 0, 2], 5353)]);
    udp.protocol = Some(Protocol::Udp);
    let mut sctp = svc("sctp", [10, 43, 0, 51], 9, vec![ep([10, 42, 0, 2], 9)]);
    sctp.protocol = Some(Protocol::Sctp);
    let rs = Ruleset::build(&config(), &[headless, dns, udp, sctp]);
    assert_eq!(rs.cluster_ips.len(), 2);
    assert!(rs.service_ips.contains_key("10.43.0.50 . udp . 53"));
    assert!(rs.service_ips.contains_key("10.43.0.51 . sctp . 9"));
    assert!(
        rs.chains()
            .flat_map(|(_, r)| r)
            .any(|r| r == "meta l4proto udp dnat to 10.42.0.2:5353")
    );
    assert!(rs.no_endpoint_services.is_empty());
}

#[tokio::test]
async fn first_sync_is_full_then_only_changes_are_written() {
    let os = Arc::new(RecordingOs::new());
    let mut proxy = ServiceProxy::with_os(config(), os.clone(), os.clone(), os.clone()).unwrap();
    let a = svc(
        "a",
        [10, 43, 0, 60],
        80,
        vec![ep([10, 42, 0, 2], 80), ep([10, 42, 0, 3], 80)],
    );
    let b = svc("b", [10, 43, 0, 61], 80, vec![ep([10, 42, 0, 4], 80)]);
    let stats = proxy.sync(&[a.clone(), b.clone()]).await.unwrap();
    assert!(stats.full);
    let full = &os.scripts()[0];
    assert!(full.starts_with(
        "add table ip rkube-proxy\ndelete table ip rkube-proxy\ntable ip rkube-proxy {"
    ));
    assert!(full.contains("add element ip rkube-proxy service-ips {"));
    assert_eq!(os.sysctls()["net.ipv4.conf.all.route_localnet"], "1");

    // Nothing changed: nothing is sent.
    let stats = proxy.sync(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(stats.chains_written, 0);
    assert_eq!(os.scripts().len(), 1);

    // b loses its endpoint: its chains go, its ClusterIP now rejects; a is untouched.
    let b_empty = svc("b", [10, 43, 0, 61], 80, vec![]);
    let stats = proxy.sync(&[a.clone(), b_empty]).await.unwrap();
    assert!(!stats.full);
    let inc = os.scripts()[1].clone();
    assert!(!inc.contains("default/a/"), "{inc}");
    assert!(
        inc.contains("delete element ip rkube-proxy service-ips { 10.43.0.61 . tcp . 80 }"),
        "{inc}"
    );
    assert!(inc.contains("add element ip rkube-proxy no-endpoint-services { 10.43.0.61 . tcp . 80 : goto reject-chain }"), "{inc}");
    let flush = inc.find("flush chain ip rkube-proxy endpoint-").unwrap();
    let delete = inc.find("delete chain ip rkube-proxy endpoint-").unwrap();
    let element = inc.find("delete element").unwrap();
    assert!(element < flush && flush < delete, "{inc}");
}

#[tokio::test]
async fn a_failed_sync_makes_the_next_one_full() {
    let os = Arc::new(RecordingOs::new());
    let mut proxy = ServiceProxy::with_os(config(), os.clone(), os.clone(), os.clone()).unwrap();
    let a = svc("a", [10, 43, 0, 70], 80, vec![ep([10, 42, 0, 2], 80)]);
    proxy.sync(std::slice::from_ref(&a)).await.unwrap();
    os.fail_on("nft apply");
    assert!(proxy.sync(&[]).await.is_err());
    let stats = proxy.sync(&[]).await.unwrap();
    assert!(stats.full);
}

#[tokio::test]
async fn run_coalesces_bursts_of_updates() {
    let os = Arc::new(RecordingOs::new());
    let mut cfg = config();
    cfg.min_sync_interval = Duration::from_millis(200);
    let proxy = ServiceProxy::with_os(cfg, os.clone(), os.clone(), os.clone()).unwrap();
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let task = tokio::spawn(proxy.run(rx));
    for i in 0..50u8 {
        let s = svc(
            &format!("s{i}"),
            [10, 43, 1, i],
            80,
            vec![ep([10, 42, 0, 2], 80)],
        );
        tx.send_modify(|v| Arc::make_mut(v).push(s));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(tx);
    task.await.unwrap();
    let scripts = os.scripts();
    // 50 updates over ~250 ms at most one sync per 200 ms: a handful of syncs, and the
    // last state has all 50 services.
    assert!(scripts.len() <= 4, "{} syncs", scripts.len());
    let all: String = scripts.concat();
    assert!(all.contains("10.43.1.49 . tcp . 80"));
}

#[test]
fn bad_config_is_refused() {
    let os = Arc::new(RecordingOs::new());
    let mut c = config();
    c.table = "bad table;".into();
    assert!(matches!(
        ServiceProxy::with_os(c, os.clone(), os.clone(), os.clone()),
        Err(ProxyError::Config(_))
    ));
    let mut c = config();
    c.service_cidr = "10.42.0.0/24".parse().unwrap();
    assert!(matches!(
        ServiceProxy::with_os(c, os.clone(), os.clone(), os.clone()),
        Err(ProxyError::Config(_))
    ));
    assert!(os.calls().is_empty());
}

#[tokio::test]
async fn unchanged_service_ports_keep_their_rules_and_removed_ones_are_deleted() {
    let os = Arc::new(RecordingOs::new());
    let mut proxy = ServiceProxy::with_os(config(), os.clone(), os.clone(), os.clone()).unwrap();
    let a = svc("a", [10, 43, 0, 80], 80, vec![ep([10, 42, 0, 2], 80)]);
    let b = svc("b", [10, 43, 0, 81], 80, vec![ep([10, 42, 0, 3], 80)]);
    proxy.sync(&[a.clone(), b.clone()]).await.unwrap();
    let before = proxy.applied.clone().unwrap();
    let rebuilt = Ruleset::build_from(&config(), &[a.clone(), b.clone()], Some(&before));
    assert!(Arc::ptr_eq(
        &before.fragments["default/a/tcp/http"],
        &rebuilt.fragments["default/a/tcp/http"]
    ));

    let stats = proxy.sync(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(stats.chains_written, 0);
    let inc = os.scripts().last().unwrap().clone();
    assert!(
        inc.contains("delete element ip rkube-proxy service-ips { 10.43.0.81 . tcp . 80 }"),
        "{inc}"
    );
    assert!(
        inc.contains("delete element ip rkube-proxy cluster-ips { 10.43.0.81 }"),
        "{inc}"
    );
    assert_eq!(
        inc.matches("delete chain ip rkube-proxy ").count(),
        2,
        "{inc}"
    );
    assert!(!inc.contains("default/a/"), "{inc}");
}

#[tokio::test]
async fn stale_udp_flows_are_forgotten() {
    let os = Arc::new(RecordingOs::new());
    let mut proxy = ServiceProxy::with_os(config(), os.clone(), os.clone(), os.clone()).unwrap();
    let mut dns = svc("dns", [10, 43, 0, 90], 53, vec![]);
    dns.protocol = Some(Protocol::Udp);
    dns.name = "dns".into();
    proxy.sync(std::slice::from_ref(&dns)).await.unwrap();
    // Endpoints appear: flows rejected so far are forgotten.
    dns.endpoints = vec![ep([10, 42, 0, 2], 53), ep([10, 42, 0, 3], 53)];
    proxy.sync(std::slice::from_ref(&dns)).await.unwrap();
    // One endpoint goes: its flows are forgotten.
    dns.endpoints.pop();
    proxy.sync(std::slice::from_ref(&dns)).await.unwrap();
    let calls: Vec<String> = os
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("conntrack"))
        .collect();
    assert_eq!(
        calls,
        vec![
            "conntrack -D -p udp --orig-dst 10.43.0.90 --orig-port-dst 53",
            "conntrack -D -p udp --orig-dst 10.43.0.90 --orig-port-dst 53 --reply-src 10.42.0.3",
        ]
    );
}
