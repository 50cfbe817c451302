//! Root tests of the cluster DNS: the server listens on the kube-dns IP inside a node
//! namespace, pods ask it over their network, and names outside the cluster go to a
//! fake upstream resolver on the node's loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rkube_net::dns::{DnsEndpoint, DnsPod, DnsPort, DnsService};
use rkube_net::proxy::Protocol;
use rkube_net::{ClusterDns, DnsConfig, DnsData, Netns};

const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// A resolver that answers every A question with 192.0.2.99 (UDP only), listening on
/// the loopback of `ns`. Returns its address.
fn fake_upstream(ns: &Netns) -> SocketAddr {
    let sock = ns.run(|| UdpSocket::bind("127.0.0.1:0")).unwrap().unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            r.answers.push(Record::from_rdata(
                q.queries[0].name().clone(),
                60,
                RData::A(A(UPSTREAM_ANSWER)),
            ));
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    addr
}

fn ask(ns: &Netns, name: &str, t: RecordType, tcp: bool) -> Message {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    let bytes = q.to_vec().unwrap();
    let server = SocketAddr::from((DNS_IP, 53));
    let reply = ns
        .run(move || -> std::io::Result<Vec<u8>> {
            if tcp {
                let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                s.write_all(&framed)?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len)?;
                let mut out = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut out)?;
                Ok(out)
            } else {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                s.send_to(&bytes, server)?;
                let mut buf = vec![0u8; 4096];
                let n = s.recv(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Message::from_vec(&reply).unwrap()
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces"]
async fn pods_resolve_cluster_names_and_forward_the_rest() {
    if !root_or_skip() {
        return;
    }
    let node = node("10.42.0.0/24").await;
    let client = pod(&node).await;
    let db = pod(&node).await;
    let upstream = fake_upstream(&node.ns.netns());
    let mut config = DnsConfig::new(vec![upstream]);
    config.netns = node.ns.netns();
    let dns = ClusterDns::new(config).unwrap();
    let mongo = DnsPort {
        name: "mongo".into(),
        protocol: Protocol::Tcp,
        port: 27017,
    };
    dns.update(&DnsData {
        services: vec![
            DnsService {
                namespace: "default".into(),
                name: "web".into(),
                cluster_ips: vec![Ipv4Addr::new(10, 43, 0, 20)],
                ports: vec![DnsPort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                }],
                ..Default::default()
            },
            DnsService {
                namespace: "default".into(),
                name: "mongodb-service-headless".into(),
                ports: vec![mongo.clone()],
                endpoints: vec![DnsEndpoint {
                    ip: db.ip.ip,
                    hostname: Some("mongodb-0".into()),
                    ready: true,
                    ports: vec![mongo],
                }],
                ..Default::default()
            },
        ],
        pods: vec![DnsPod {
            namespace: "default".into(),
            ip: db.ip.ip,
            hostname: Some("mongodb-0".into()),
            subdomain: Some("mongodb-service-headless".into()),
            ready: true,
        }],
    });
    let _server = dns.serve().await.unwrap();
    let ns = client.ns.netns();

    for tcp in [false, true] {
        let m = ask(&ns, "web.default.svc.cluster.local.", RecordType::A, tcp);
        assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 43, 0, 20)], "tcp={tcp}");
    }
    let m = ask(
        &ns,
        "mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
        false,
    );
    assert_eq!(addrs(&m), vec![db.ip.ip]);
    let m = ask(
        &ns,
        "mongodb-0.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::A,
        false,
    );
    assert_eq!(addrs(&m), vec![db.ip.ip]);
    let m = ask(
        &ns,
        "_mongo._tcp.mongodb-service-headless.default.svc.cluster.local.",
        RecordType::SRV,
        false,
    );
    let RData::SRV(srv) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(
        (srv.port, srv.target.to_ascii().as_str()),
        (
            27017,
            "mongodb-0.mongodb-service-headless.default.svc.cluster.local."
        )
    );
    let m = ask(
        &ns,
        "missing.default.svc.cluster.local.",
        RecordType::A,
        false,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));

    // Other names go to the upstream resolver (here the fake one on the node's loopback).
    let m = ask(&ns, "www.example.org.", RecordType::A, false);
    assert_eq!(addrs(&m), vec![UPSTREAM_ANSWER]);
    assert!(!m.metadata.authoritative);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: creates network namespaces"]
async fn an_unreachable_upstream_gives_servfail_not_silence() {
    if !root_or_skip() {
        return;
    }
    let node = node("10.42.0.0/24").await;
    let client = pod(&node).await;
    // A loopback port nobody listens on.
    let dead = node
        .ns
        .netns()
        .run(|| {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .unwrap();
    let mut config = DnsConfig::new(vec![dead]);
    config.netns = node.ns.netns();
    config.upstream_timeout = Duration::from_millis(300);
    let dns = ClusterDns::new(config).unwrap();
    let _server = dns.serve().await.unwrap();
    let m = ask(&client.ns.netns(), "www.example.org.", RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}
