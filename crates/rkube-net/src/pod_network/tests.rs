use super::*;
use crate::os::RecordingOs;

struct Fixture {
    os: Arc<RecordingOs>,
    net: PodNetwork,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// A stand-in namespace path: the fake only needs it to exist.
    fn netns(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, "").unwrap();
        p
    }
}

async fn fixture(tag: &str) -> Fixture {
    fixture_with(tag, |_| {}).await
}

async fn fixture_with(tag: &str, edit: impl FnOnce(&mut PodNetworkConfig)) -> Fixture {
    let dir = std::env::temp_dir().join(format!("rkube-podnet-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let os = Arc::new(RecordingOs::new());
    let mut config = PodNetworkConfig::new("10.42.0.0/24".parse().unwrap(), &dir);
    edit(&mut config);
    let net = PodNetwork::with_os(config, os.clone(), os.clone(), os.clone())
        .await
        .unwrap();
    Fixture { os, net, dir }
}

#[tokio::test]
async fn node_setup_builds_bridge_safety_routes_and_masquerade() {
    let f = fixture("node").await;
    let node = Netns::Current;
    assert_eq!(f.os.link_names(&node), vec!["rkube0"]);
    let addrs = f.os.addresses(&node, "rkube0").await.unwrap();
    assert_eq!(
        addrs,
        vec![
            (Ipv4Addr::new(10, 42, 0, 1), 24),
            (Ipv4Addr::new(10, 43, 0, 10), 32)
        ]
    );
    let routes = f.os.route_set(&node);
    assert!(routes.contains(&Route {
        dst: "10.42.0.0/16".parse().unwrap(),
        target: RouteTarget::Blackhole
    }));
    assert!(routes.contains(&Route {
        dst: "10.43.0.0/16".parse().unwrap(),
        target: RouteTarget::Device("rkube0".into())
    }));
    let sysctls = f.os.sysctls();
    assert_eq!(sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(sysctls["net.bridge.bridge-nf-call-iptables"], "1");
    let script = &f.os.scripts()[0];
    assert!(script.contains(
        "ip saddr 10.42.0.0/24 ip daddr != { 10.42.0.0/16, 10.43.0.0/16, 224.0.0.0/4 } masquerade"
    ));
    assert!(script.starts_with("add table ip rkube-podnet\ndelete table ip rkube-podnet\n"));
    assert!(!script.contains("chain forward"), "{script}");
}

#[tokio::test]
async fn without_egress_pods_connect_only_inside_the_cluster() {
    let f = fixture_with("no-egress", |c| c.egress = false).await;
    let script = &f.os.scripts()[0];
    assert!(
        script
            .contains("ip saddr 10.42.0.0/24 ip daddr != 10.42.0.0/16 ct direction original drop"),
        "{script}"
    );
}

#[tokio::test]
async fn setup_wires_the_pod_and_is_idempotent() {
    let f = fixture("setup").await;
    let path = f.netns("pod-a");
    let pod = Netns::path(&path);
    let ip = f.net.setup("sandbox-a", &path).await.unwrap();
    assert_eq!(
        ip,
        PodIp {
            ip: Ipv4Addr::new(10, 42, 0, 2),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 42, 0, 1)
        }
    );
    assert_eq!(f.os.link_names(&pod), vec!["eth0"]);
    assert_eq!(
        f.os.addresses(&pod, "eth0").await.unwrap(),
        vec![(ip.ip, 24)]
    );
    let host = names::host_veth("sandbox-a");
    assert_eq!(
        f.os.port(&Netns::Current, &host),
        Some((Some("rkube0".into()), true, true))
    );
    assert_eq!(
        f.os.route_set(&pod).into_iter().collect::<Vec<_>>(),
        vec![Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            target: RouteTarget::Gateway(ip.gateway)
        }]
    );

    f.os.clear_calls();
    assert_eq!(f.net.setup("sandbox-a", &path).await.unwrap(), ip);
    assert!(
        !f.os.calls().iter().any(|c| c.starts_with("add_veth")),
        "{:?}",
        f.os.calls()
    );
}

#[tokio::test]
async fn setup_after_a_crash_half_way_converges() {
    let f = fixture("crash").await;
    let path = f.netns("pod-b");
    let pod = Netns::path(&path);
    // The peer has moved into the pod but was never renamed.
    f.os.fail_on("rename_link");
    assert!(f.net.setup("sandbox-b", &path).await.is_err());
    assert_eq!(f.os.link_names(&pod), vec![names::temp_peer("sandbox-b")]);

    let ip = f.net.setup("sandbox-b", &path).await.unwrap();
    assert_eq!(f.os.link_names(&pod), vec!["eth0"]);
    assert_eq!(
        f.os.addresses(&pod, "eth0").await.unwrap(),
        vec![(ip.ip, 24)]
    );
    let mut node_links = f.os.link_names(&Netns::Current);
    node_links.sort();
    assert_eq!(
        node_links,
        vec!["rkube0".to_string(), names::host_veth("sandbox-b")]
    );
    assert_eq!(f.net.ipam().allocations().unwrap().len(), 1);
}

#[tokio::test]
async fn teardown_frees_everything_and_can_repeat() {
    let f = fixture("teardown").await;
    let path = f.netns("pod-c");
    let ip = f.net.setup("sandbox-c", &path).await.unwrap();
    assert_eq!(f.net.teardown("sandbox-c").await.unwrap(), Some(ip.ip));
    assert_eq!(f.os.link_names(&Netns::Current), vec!["rkube0"]);
    assert!(f.os.link_names(&Netns::path(&path)).is_empty());
    assert_eq!(f.net.teardown("sandbox-c").await.unwrap(), None);
    assert!(f.net.ipam().allocations().unwrap().is_empty());
}

#[tokio::test]
async fn sweep_reclaims_sandboxes_that_are_gone() {
    let f = fixture("sweep").await;
    let a = f.net.setup("live", &f.netns("pod-live")).await.unwrap();
    f.net.setup("dead", &f.netns("pod-dead")).await.unwrap();
    // A crash left an address allocated for a sandbox that never got a link.
    f.net.ipam().allocate("never-wired").unwrap();
    let live: HashSet<String> = ["live".to_string()].into();
    let report = f.net.sweep(&live).await.unwrap();
    let mut freed: Vec<String> = report.addresses.iter().map(|(_, id)| id.clone()).collect();
    freed.sort();
    assert_eq!(freed, vec!["dead", "never-wired"]);
    assert_eq!(report.links, vec![names::host_veth("dead")]);
    assert_eq!(
        f.net.ipam().allocations().unwrap(),
        vec![(a.ip, "live".to_string())]
    );
}

#[tokio::test]
async fn node_routes_follow_the_list() {
    let f = fixture("routes").await;
    let node = Netns::Current;
    let r1 = NodeRoute {
        pod_cidr: "10.42.1.0/24".parse().unwrap(),
        node_ip: Ipv4Addr::new(192, 0, 2, 11),
    };
    let r2 = NodeRoute {
        pod_cidr: "10.42.2.0/24".parse().unwrap(),
        node_ip: Ipv4Addr::new(192, 0, 2, 12),
    };
    f.net.set_node_routes(&[r1, r2]).await.unwrap();
    let gw = |r: &NodeRoute| Route {
        dst: r.pod_cidr,
        target: RouteTarget::Gateway(r.node_ip),
    };
    assert!(f.os.route_set(&node).contains(&gw(&r1)));
    f.net.set_node_routes(&[r2]).await.unwrap();
    let routes = f.os.route_set(&node);
    assert!(!routes.contains(&gw(&r1)) && routes.contains(&gw(&r2)));
    // The safety routes stay.
    assert_eq!(routes.len(), 3);

    let outside = NodeRoute {
        pod_cidr: "10.99.0.0/24".parse().unwrap(),
        node_ip: Ipv4Addr::new(192, 0, 2, 13),
    };
    f.os.clear_calls();
    assert!(matches!(
        f.net.set_node_routes(&[outside]).await,
        Err(PodNetworkError::NodeRoute(_))
    ));
    assert!(f.os.calls().is_empty());
}

#[tokio::test]
async fn bad_config_or_missing_namespace_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("rkube-podnet-bad-{}", std::process::id()));
    let os = Arc::new(RecordingOs::new());
    let mut config = PodNetworkConfig::new("10.99.0.0/24".parse().unwrap(), &dir);
    let err = PodNetwork::with_os(config.clone(), os.clone(), os.clone(), os.clone()).await;
    assert!(matches!(err, Err(PodNetworkError::Config(_))));
    config.pod_cidr = "10.42.0.0/24".parse().unwrap();
    config.bridge = "a-name-far-too-long".into();
    assert!(matches!(
        PodNetwork::with_os(config, os.clone(), os.clone(), os.clone()).await,
        Err(PodNetworkError::Config(_))
    ));
    assert!(os.calls().is_empty());

    let f = fixture("nons").await;
    f.os.clear_calls();
    let missing = f.dir.join("no-such-netns");
    assert!(matches!(
        f.net.setup("x", &missing).await,
        Err(PodNetworkError::NoNetns(_))
    ));
    assert!(f.os.calls().is_empty());
    assert!(f.net.ipam().allocations().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
