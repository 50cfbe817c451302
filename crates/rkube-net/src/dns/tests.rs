use std::net::Ipv4Addr;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;

fn port(name: &str, port: u16) -> DnsPort {
    DnsPort {
        name: name.into(),
        protocol: Protocol::Tcp,
        port,
    }
}

fn data() -> DnsData {
    DnsData {
        services: vec![
            DnsService {
                namespace: "default".into(),
                name: "web".into(),
                cluster_ips: vec![Ipv4Addr::new(10, 43, 0, 20)],
                ports: vec![port("http", 80), port("", 81)],
                ..Default::default()
            },
            DnsService {
                namespace: "default".into(),
                name: "mongodb-service-headless".into(),
                ports: vec![port("mongo", 27017)],
                endpoints: vec![
                    DnsEndpoint {
                        ip: Ipv4Addr::new(10, 42, 0, 5),
                        hostname: Some("mongodb-0".into()),
                        ready: true,
                        ports: vec![port("mongo", 27017)],
                    },
                    DnsEndpoint {
                        ip: Ipv4Addr::new(10, 42, 0, 6),
                        hostname: None,
                        ready: true,
                        ports: vec![port("mongo", 27017)],
                    },
                    DnsEndpoint {
                        ip: Ipv4Addr::new(10, 42, 0, 7),
                        hostname: Some("mongodb-2".into()),
                        ready: false,
                        ports: vec![port("mongo", 27017)],
                    },
                ],
                ..Default::default()
            },
            DnsService {
                namespace: "default".into(),
                name: "empty-headless".into(),
                ..Default::default()
            },
            DnsService {
                namespace: "shop".into(),
                name: "search".into(),
                external_name: Some("search.example.com".into()),
                ..Default::default()
            },
        ],
        pods: vec![DnsPod {
            namespace: "default".into(),
            ip: Ipv4Addr::new(10, 42, 0, 8),
            hostname: Some("worker-1".into()),
            subdomain: Some("mongodb-service-headless".into()),
            ready: true,
        }],
    }
}

fn dns() -> Arc<ClusterDns> {
    let dns = ClusterDns::new(DnsConfig::new(vec![])).unwrap();
    dns.update(&data());
    dns
}

fn ask(dns: &ClusterDns, name: &str, t: RecordType) -> Option<Message> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    dns.answer_local(&q.to_vec().unwrap())
        .map(|b| Message::from_vec(&b).unwrap())
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| {
            if let RData::A(a) = &r.data {
                Some(a.0)
            } else {
                None
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cluster_ip_service_has_an_a_record() {
    let m = ask(&dns(), "web.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 43, 0, 20)]);
    // Case does not matter.
    let m = ask(&dns(), "WEB.Default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 43, 0, 20)]);
}

#[test]
fn headless_service_answers_with_ready_endpoints_and_pod_hostnames() {
    let d = dns();
    let m = ask(
        &d,
        "mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
    )
    .unwrap();
    assert_eq!(
        a_records(&m),
        vec![Ipv4Addr::new(10, 42, 0, 5), Ipv4Addr::new(10, 42, 0, 6)]
    );
    let m = ask(
        &d,
        "mongodb-0.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
    )
    .unwrap();
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 42, 0, 5)]);
    let m = ask(
        &d,
        "10-42-0-6.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
    )
    .unwrap();
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 42, 0, 6)]);
    // From the pod's own hostname/subdomain.
    let m = ask(
        &d,
        "worker-1.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
    )
    .unwrap();
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 42, 0, 8)]);
    // Not ready: no record.
    let m = ask(
        &d,
        "mongodb-2.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
    )
    .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // A headless Service with nothing ready exists, without addresses.
    let m = ask(
        &d,
        "empty-headless.default.svc.cluster.local.",
        RecordType::A,
    )
    .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn srv_records_for_named_ports() {
    let d = dns();
    let m = ask(
        &d,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    let RData::SRV(srv) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(srv.port, 80);
    assert_eq!(srv.target.to_ascii(), "web.default.svc.cluster.local.");
    let mut extra = m.clone();
    extra.answers = m.additionals.clone();
    assert_eq!(a_records(&extra), vec![Ipv4Addr::new(10, 43, 0, 20)]);

    let m = ask(
        &d,
        "_mongo._tcp.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    let mut targets: Vec<(String, u16)> = m
        .answers
        .iter()
        .filter_map(|r| {
            if let RData::SRV(s) = &r.data {
                Some((s.target.to_ascii(), s.port))
            } else {
                None
            }
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        vec![
            (
                "10-42-0-6.mongodb-service-headless.default.svc.cluster.local.".to_string(),
                27017
            ),
            (
                "mongodb-0.mongodb-service-headless.default.svc.cluster.local.".to_string(),
                27017
            ),
        ]
    );
}

#[test]
fn ptr_records_for_cluster_ips_and_named_endpoints() {
    let d = dns();
    let m = ask(&d, "20.0.43.10.in-addr.arpa.", RecordType::PTR).unwrap();
    let RData::PTR(p) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(p.0.to_ascii(), "web.default.svc.cluster.local.");
    let m = ask(&d, "5.0.42.10.in-addr.arpa.", RecordType::PTR).unwrap();
    let RData::PTR(p) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(
        p.0.to_ascii(),
        "mongodb-0.mongodb-service-headless.default.svc.cluster.local."
    );
    // Unknown address inside the cluster ranges: ours to deny.
    let m = ask(&d, "99.9.43.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Outside: forwarded.
    assert!(ask(&d, "1.2.0.192.in-addr.arpa.", RecordType::PTR).is_none());
}

#[test]
fn unknown_names_get_nxdomain_with_the_zone_soa() {
    let d = dns();
    let m = ask(&d, "nope.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    let soa = &m.authorities[0];
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    let RData::SOA(s) = &soa.data else { panic!() };
    assert_eq!(s.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(s.minimum, 5);
    // Existing name, other type: NOERROR with no answer (NODATA), SOA in authority.
    let m = ask(&d, "web.default.svc.cluster.local.", RecordType::AAAA).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && !m.authorities.is_empty());
    // Empty non-terminals exist.
    let m = ask(&d, "default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = ask(&d, "cluster.local.", RecordType::SOA).unwrap();
    assert!(matches!(m.answers[0].data, RData::SOA(_)));
}

#[test]
fn external_name_is_a_cname_and_other_names_are_forwarded() {
    let d = dns();
    let m = ask(&d, "search.shop.svc.cluster.local.", RecordType::A).unwrap();
    let RData::CNAME(c) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(c.0.to_ascii(), "search.example.com.");
    assert!(ask(&d, "example.com.", RecordType::A).is_none());
}

#[test]
fn updates_replace_the_zone() {
    let d = dns();
    d.update(&DnsData::default());
    let m = ask(&d, "web.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}
