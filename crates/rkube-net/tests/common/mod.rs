//! Fixtures for the root tests: network namespaces the test makes and always removes,
//! a node in its own namespace, pods, and small TCP/UDP servers inside them.
//!
//! Every address used lives in namespaces made here; nothing is routed off the machine
//! (the test node namespaces have no uplink at all).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rkube_net::pod_network::{PodIp, PodNetwork, PodNetworkConfig};
use rkube_net::{Ipv4Cidr, Netns};

/// Skips (with a printed reason) unless running as root with `ip` and `nft`.
pub fn root_or_skip() -> bool {
    let root = nix_is_root();
    let tools = ["ip", "nft"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !root || !tools {
        eprintln!("skipped: needs root and the ip and nft tools");
        return false;
    }
    true
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique short tag for names made by this test process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace, deleted (with everything in it) when dropped.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn netns(&self) -> Netns {
        Netns::path(self.path())
    }

    /// Runs a command inside the namespace; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Joins two namespaces with a veth pair `a_ip/24` <-> `b_ip/24` (a node-to-node link).
pub fn link(a: &TestNetns, a_ip: Ipv4Addr, b: &TestNetns, b_ip: Ipv4Addr) {
    let (an, bn) = (unique("la"), unique("lb"));
    a.exec(&[
        "ip", "link", "add", &an, "type", "veth", "peer", "name", &bn, "netns", &b.name,
    ]);
    a.exec(&["ip", "addr", "add", &format!("{a_ip}/24"), "dev", &an]);
    a.exec(&["ip", "link", "set", &an, "up"]);
    b.exec(&["ip", "addr", "add", &format!("{b_ip}/24"), "dev", &bn]);
    b.exec(&["ip", "link", "set", &bn, "up"]);
}

/// A node living in its own namespace, with its pod network.
pub struct TestNode {
    pub ns: TestNetns,
    pub net: PodNetwork,
    pub state_dir: TempDir,
}

pub async fn node(pod_cidr: &str) -> TestNode {
    let ns = TestNetns::new("rkn");
    let state_dir = TempDir::new("node");
    let net = PodNetwork::new(node_config(&ns, pod_cidr, &state_dir))
        .await
        .expect("node setup");
    TestNode { ns, net, state_dir }
}

pub fn node_config(ns: &TestNetns, pod_cidr: &str, dir: &TempDir) -> PodNetworkConfig {
    let cidr: Ipv4Cidr = pod_cidr.parse().unwrap();
    let mut config = PodNetworkConfig::new(cidr, &dir.0);
    config.bridge = unique("rkb");
    config.nft_table = unique("rkube-podnet-");
    config.node_netns = ns.netns();
    config
}

/// A pod: its sandbox namespace and the address it got.
pub struct TestPod {
    pub ns: TestNetns,
    pub id: String,
    pub ip: PodIp,
}

pub async fn pod(node: &TestNode) -> TestPod {
    let ns = TestNetns::new("rkp");
    let id = format!("sandbox-{}", ns.name);
    let ip = node.net.setup(&id, &ns.path()).await.expect("pod setup");
    TestPod { ns, id, ip }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(unique(&format!("rkube-net-{tag}-")));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP server inside `ns` on `port` that answers every connection with `reply`
/// and closes. Runs until the process ends (its namespace going away stops it).
pub fn tcp_server(ns: &Netns, port: u16, reply: &str) {
    let listener = ns
        .run(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .expect("bind");
    let reply = reply.to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(reply.as_bytes());
        }
    });
}

/// A TCP server that sends `bytes` zero bytes to each client (throughput tests).
pub fn tcp_sink_source(ns: &Netns, port: u16) {
    let listener = ns
        .run(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .expect("bind");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut len = [0u8; 8];
                if conn.read_exact(&mut len).is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                let buf = vec![0u8; 256 * 1024];
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
}

/// Connects from inside `ns` and returns what the server sent, or the error.
pub fn tcp_get(ns: &Netns, to: SocketAddr) -> std::io::Result<String> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .unwrap()
}

/// A UDP server inside `ns` on `port` that answers every datagram with `reply`.
pub fn udp_server(ns: &Netns, port: u16, reply: &str) {
    let sock = ns
        .run(move || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .expect("bind");
    let reply = reply.to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((_, peer)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(reply.as_bytes(), peer);
        }
    });
}

/// A UDP client socket made inside `ns` (it keeps its source port across sends).
pub fn udp_client(ns: &Netns) -> std::net::UdpSocket {
    let s = ns
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends one datagram and returns the answer.
pub fn udp_ask(sock: &std::net::UdpSocket, to: SocketAddr) -> std::io::Result<String> {
    sock.send_to(b"?", to)?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
