//! The conformance suite against a real etcd (feature `etcd`): each case starts its own
//! `etcd` process on loopback ports with a data dir in a temp dir, and kills it (by its
//! PID) when the case ends. Needs the `etcd` binary (Debian: `etcd-server`).
//!
//! ```sh
//! cargo test -p rkube-store --features etcd --test etcd -- --include-ignored
//! ```
#![cfg(feature = "etcd")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkube_store::Store;
use rkube_store::conformance::{TempDir, TestStore};
use rkube_store::etcd::EtcdStore;

/// An etcd server for one test; killed and its data removed on drop.
struct EtcdServer {
    child: Child,
    _dir: TempDir,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

async fn open() -> TestStore {
    let dir = TempDir::new("etcd");
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .arg("--name=rkube-test")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=rkube-test={peer_url}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd (Debian package etcd-server)");
    let server = EtcdServer { child, _dir: dir };

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(store) = EtcdStore::connect(&[client_url.as_str()]).await
            && store.current_revision().await.is_ok()
        {
            return TestStore::with_guard(Arc::new(store), Box::new(server));
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not start on {client_url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

rkube_store::conformance_tests!(
    open,
    #[ignore = "needs the etcd binary (Debian package etcd-server)"]
);
