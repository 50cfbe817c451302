use serde_json::json;

use super::*;

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn web() -> Service {
    service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP",
            "externalIPs": ["203.0.113.7"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353, "nodePort": 30053}
            ]
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.8"}]}}
    }))
}

fn web_slices() -> Vec<EndpointSlice> {
    vec![
        slice(json!({
            "metadata": {"name": "web-a", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "nodeName": "node-a", "conditions": {"ready": true}},
                {"addresses": ["10.42.1.6"], "nodeName": "node-b", "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.42.1.7"], "nodeName": "node-b"}
            ]
        })),
        // Pods whose named port "web" is another number land in another slice.
        slice(json!({
            "metadata": {"name": "web-b", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.9"], "nodeName": "node-a"}]
        })),
        // Another namespace's Service of the same name.
        slice(json!({
            "metadata": {"name": "web-x", "namespace": "other", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 1, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.9.9"]}]
        })),
    ]
}

#[test]
fn services_and_slices_become_service_ports() {
    let ports = service_ports(&[web()], &web_slices());
    assert_eq!(ports.len(), 2);
    let http = &ports[0];
    assert_eq!(http.key(), "shop/web/tcp/http");
    assert_eq!(http.cluster_ip, Some(Ipv4Addr::new(10, 43, 0, 20)));
    assert_eq!(http.node_port, Some(30080));
    assert_eq!(http.external_ips, vec![Ipv4Addr::new(203, 0, 113, 7)]);
    assert_eq!(http.load_balancer_ips, vec![Ipv4Addr::new(203, 0, 113, 8)]);
    assert_eq!(http.affinity_timeout, Some(10800));
    assert!(http.external_local && !http.internal_local);
    let eps: Vec<(String, u16, bool, bool)> = http
        .endpoints
        .iter()
        .map(|e| (e.ip.to_string(), e.port, e.ready, e.terminating))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("10.42.0.5".into(), 8080, true, false),
            ("10.42.1.6".into(), 8080, false, true),
            ("10.42.1.7".into(), 8080, true, false),
            ("10.42.0.9".into(), 9090, true, false),
        ]
    );
    assert_eq!(http.endpoints[0].node_name.as_deref(), Some("node-a"));
    let dns = &ports[1];
    assert_eq!(dns.protocol, Some(Protocol::Udp));
    assert_eq!(
        dns.endpoints.iter().map(|e| e.port).collect::<Vec<_>>(),
        vec![5353, 5353, 5353]
    );
}

#[test]
fn cluster_ip_services_ignore_node_ports_and_headless_or_external_names_are_skipped() {
    let plain = service(json!({
        "metadata": {"name": "plain", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.30", "ports": [{"port": 80, "nodePort": 30001}],
                 "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                 "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local"}
    }));
    let headless = service(json!({
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
    }));
    let external = service(json!({
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }));
    let ports = service_ports(&[plain, headless, external], &[]);
    assert_eq!(ports.len(), 1);
    let p = &ports[0];
    assert_eq!(p.key(), "default/plain/tcp/80");
    assert_eq!(p.node_port, None);
    assert_eq!(p.affinity_timeout, Some(60));
    assert!(p.internal_local && !p.external_local);
    assert!(p.endpoints.is_empty());
}

#[test]
fn dns_data_has_headless_endpoints_hostnames_and_ready_pods() {
    let headless = service(json!({
        "metadata": {"name": "mongodb-service-headless", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "mongo", "port": 27017}], "publishNotReadyAddresses": false}
    }));
    let external = service(json!({
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }));
    let slices = vec![slice(json!({
        "metadata": {"name": "m-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "mongodb-service-headless"}},
        "addressType": "IPv4",
        "ports": [{"name": "mongo", "port": 27017, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.0.5"], "hostname": "mongodb-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.6"], "hostname": "mongodb-1", "conditions": {"ready": false}}
        ]
    }))];
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "mongodb-0", "namespace": "default"},
        "spec": {"hostname": "mongodb-0", "subdomain": "mongodb-service-headless", "containers": []},
        "status": {"podIP": "10.42.0.5", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap();
    let pending: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pending", "namespace": "default"},
        "spec": {"containers": []},
        "status": {}
    }))
    .unwrap();
    let data = dns_data(&[headless, external], &slices, &[pod, pending]);
    let h = &data.services[0];
    assert!(h.cluster_ips.is_empty());
    assert_eq!(h.endpoints.len(), 2);
    assert_eq!(h.endpoints[0].hostname.as_deref(), Some("mongodb-0"));
    assert!(h.endpoints[0].ready && !h.endpoints[1].ready);
    assert_eq!(h.endpoints[0].ports[0].port, 27017);
    assert_eq!(
        data.services[1].external_name.as_deref(),
        Some("db.example.com")
    );
    assert_eq!(data.pods.len(), 1);
    assert!(data.pods[0].ready);
    assert_eq!(
        data.pods[0].subdomain.as_deref(),
        Some("mongodb-service-headless")
    );
}

#[test]
fn node_routes_point_at_other_nodes_internal_ips() {
    let node = |name: &str, cidr: &str, ip: &str| -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
        }))
        .unwrap()
    };
    let no_cidr: Node =
        serde_json::from_value(json!({"metadata": {"name": "new"}, "spec": {}})).unwrap();
    let nodes = [
        node("a", "10.42.0.0/24", "192.0.2.10"),
        node("b", "10.42.1.0/24", "192.0.2.11"),
        no_cidr,
    ];
    let routes = node_routes(&nodes, "a");
    assert_eq!(
        routes,
        vec![NodeRoute {
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            node_ip: Ipv4Addr::new(192, 0, 2, 11)
        }]
    );
}
