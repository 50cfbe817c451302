//! Figures for the node network, printed (not asserted). Needs root: everything runs
//! in network namespaces made here and removed at the end.
//!
//!     cargo bench -p rkube-net --bench net
//!
//! * proxy sync time for 1,000 and 10,000 Services x 10 endpoints: the first (full)
//!   sync, an incremental one after one Service changed, and one with no change;
//! * throughput of one TCP transfer through a ClusterIP vs straight to the pod IP;
//! * cluster DNS queries per second for Service names, over UDP from a pod.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use rkube_net::dns::{DnsPort, DnsService};
use rkube_net::proxy::{Endpoint, Protocol, ProxyConfig, ServicePort, ServiceProxy};
use rkube_net::{ClusterDns, DnsConfig, DnsData, Netns};

fn services(n: usize, eps: usize) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            namespace: format!("ns{}", i % 50),
            name: format!("svc{i}"),
            port_name: "http".into(),
            protocol: Some(Protocol::Tcp),
            cluster_ip: Some(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 43, 0, 0)) + 100 + i as u32,
            )),
            port: 80,
            node_port: (i % 10 == 0).then_some(30000 + (i / 10) as u16 % 2768),
            endpoints: (0..eps)
                .map(|e| Endpoint {
                    ip: Ipv4Addr::from(
                        u32::from(Ipv4Addr::new(10, 42, 0, 0)) + ((i * eps + e) % 65000) as u32 + 2,
                    ),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: Some("node-a".into()),
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// CPU time (user + system) of this process's finished children (the `nft` runs),
/// from /proc/self/stat, in milliseconds.
fn children_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, cutime 16, cstime 17 (1-based).
    let ticks: f64 = [13, 14]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks * 10.0 // USER_HZ is 100 on Linux
}

async fn timed_sync(
    proxy: &mut ServiceProxy,
    svcs: &[ServicePort],
) -> (rkube_net::proxy::SyncStats, f64) {
    let before = children_cpu_ms();
    let stats = proxy.sync(svcs).await.unwrap();
    (stats, children_cpu_ms() - before)
}

async fn proxy_sync(n: usize) {
    let node = TestNetns::new("rkbn");
    let mut config = ProxyConfig::new("node-a");
    config.table = unique("rkube-bench-");
    config.netns = node.netns();
    let mut proxy = ServiceProxy::new(config).unwrap();
    let mut svcs = services(n, 10);
    let (full, full_cpu) = timed_sync(&mut proxy, &svcs).await;
    // One Service's endpoints change (a pod replaced).
    svcs[n / 2].endpoints[3].ip = Ipv4Addr::new(10, 42, 255, 250);
    let (inc, inc_cpu) = timed_sync(&mut proxy, &svcs).await;
    // A Service added.
    let more = services(n + 1, 10);
    let (add, add_cpu) = timed_sync(&mut proxy, &more).await;
    let (noop, _) = timed_sync(&mut proxy, &more).await;
    println!(
        "proxy sync {n:>6} services x 10 endpoints (wall, and CPU of nft):\n  \
         full                 {:>8.0} ms  nft cpu {:>6.0} ms  ({:.1} MiB script, {} chains)\n  \
         one endpoint changed {:>8.0} ms  nft cpu {:>6.0} ms  ({} chains rewritten)\n  \
         one service added    {:>8.0} ms  nft cpu {:>6.0} ms\n  \
         no change            {:>8.0} ms  (nothing sent)",
        ms(full.duration),
        full_cpu,
        full.script_bytes as f64 / (1 << 20) as f64,
        full.chains_written,
        ms(inc.duration),
        inc_cpu,
        inc.chains_written,
        ms(add.duration),
        add_cpu,
        ms(noop.duration),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn download(ns: &Netns, to: SocketAddr, bytes: u64) -> Duration {
    ns.run(move || {
        let mut s = TcpStream::connect(to).unwrap();
        let start = Instant::now();
        s.write_all(&bytes.to_be_bytes()).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < bytes {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "short transfer");
            got += n as u64;
        }
        start.elapsed()
    })
    .unwrap()
}

async fn throughput() {
    let node = node("10.42.0.0/24").await;
    let client = pod(&node).await;
    let server = pod(&node).await;
    tcp_sink_source(&server.ns.netns(), 5001);
    let mut config = ProxyConfig::new("node-a");
    config.table = unique("rkube-bench-");
    config.netns = node.ns.netns();
    let mut proxy = ServiceProxy::new(config).unwrap();
    let svc = ServicePort {
        namespace: "bench".into(),
        name: "sink".into(),
        protocol: Some(Protocol::Tcp),
        cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 99)),
        port: 80,
        endpoints: vec![Endpoint {
            ip: server.ip.ip,
            port: 5001,
            ready: true,
            serving: true,
            terminating: false,
            node_name: Some("node-a".into()),
        }],
        ..Default::default()
    };
    proxy.sync(&[svc]).await.unwrap();
    let bytes = 512u64 << 20;
    let ns = client.ns.netns();
    let (mut direct, mut via) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        direct += download(&ns, SocketAddr::from((server.ip.ip, 5001)), bytes);
        via += download(&ns, "10.43.0.99:80".parse().unwrap(), bytes);
    }
    let rate = |d: Duration| (3 * bytes) as f64 / d.as_secs_f64() / 1e6;
    println!(
        "throughput, 3 x 512 MiB pod to pod: direct {:.0} MB/s, through ClusterIP {:.0} MB/s, ratio {:.2}",
        rate(direct),
        rate(via),
        rate(via) / rate(direct)
    );
}

async fn dns_qps() {
    let node = node("10.42.0.0/24").await;
    let client = pod(&node).await;
    let n = 10_000;
    let mut config = DnsConfig::new(vec![]);
    config.netns = node.ns.netns();
    let dns = ClusterDns::new(config).unwrap();
    let data = DnsData {
        services: (0..n)
            .map(|i| DnsService {
                namespace: format!("ns{}", i % 50),
                name: format!("svc{i}"),
                cluster_ips: vec![Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(10, 43, 0, 0)) + 100 + i as u32,
                )],
                ports: vec![DnsPort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                }],
                ..Default::default()
            })
            .collect(),
        pods: vec![],
    };
    let start = Instant::now();
    dns.update(&data);
    let build = start.elapsed();
    let _server = dns.serve().await.unwrap();
    let queries: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| {
                let mut q = Message::query();
                q.metadata.recursion_desired = true;
                let name = format!("svc{i}.ns{}.svc.cluster.local.", i % 50);
                q.add_query(Query::query(
                    Name::from_ascii(&name).unwrap(),
                    RecordType::A,
                ));
                q.to_vec().unwrap()
            })
            .collect(),
    );

    // In process: the lookup and encoding alone.
    let start = Instant::now();
    let rounds = 100_000;
    for i in 0..rounds {
        assert!(dns.answer_local(&queries[i % n]).is_some());
    }
    let in_process = rounds as f64 / start.elapsed().as_secs_f64();

    // Over UDP from a pod: 4 clients, each keeping 32 queries in flight, for 3 s.
    let clients = 4;
    let window = 32;
    let run_for = Duration::from_secs(3);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (ns, queries) = (client.ns.netns(), queries.clone());
            std::thread::spawn(move || {
                ns.run(move || {
                    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                    s.connect("10.43.0.10:53").unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    let mut buf = [0u8; 1500];
                    let (mut answered, mut i) = (0u64, c * 997);
                    let start = Instant::now();
                    while start.elapsed() < run_for {
                        for _ in 0..window {
                            s.send(&queries[i % queries.len()]).unwrap();
                            i += 1;
                        }
                        for _ in 0..window {
                            if s.recv(&mut buf).is_ok() {
                                answered += 1;
                            }
                        }
                    }
                    answered as f64 / start.elapsed().as_secs_f64()
                })
                .unwrap()
            })
        })
        .collect();
    let udp: f64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!(
        "dns, {n} services: zone build {:.1} ms, in-process {:.0} answers/s, UDP from a pod {:.0} queries/s \
         ({clients} clients x {window} in flight)",
        ms(build),
        in_process,
        udp
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !root_or_skip() {
        return;
    }
    proxy_sync(1_000).await;
    proxy_sync(10_000).await;
    throughput().await;
    dns_qps().await;
}
