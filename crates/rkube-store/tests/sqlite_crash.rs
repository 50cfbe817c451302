//! Crash safety of the SQLite store: every write acknowledged before a `kill -9` is in
//! the database when it is opened again.
//!
//! The test re-runs its own binary as a child (selected by an environment variable)
//! that writes as fast as it can from many tasks and prints each acknowledged write;
//! the parent SIGKILLs that child (by its PID) mid-stream and checks the file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use rkube_store::Store;
use rkube_store::conformance::TempDir;
use rkube_store::sqlite::SqliteStore;

const TEST_NAME: &str = "acknowledged_writes_survive_kill_9";
const CHILD_DB: &str = "RKUBE_STORE_CRASH_CHILD_DB";
const WRITERS: usize = 16;
/// Acknowledgements to see before the kill; the child keeps writing after them.
const ACKS_BEFORE_KILL: usize = 3000;

fn value_for(key: &str) -> Bytes {
    // Values of a realistic size, derived from the key so the parent can check them.
    Bytes::from(key.repeat(12))
}

/// The child: writes until killed, printing `ACK <key> <revision>` after each `Ok`.
fn child(db: &str) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(db).expect("child opens the store"));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/crash/w{w:02}/{i:08}");
                        let kv = store.create(&key, value_for(&key)).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {key} {}", kv.mod_revision).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    unreachable!("the child writes until it is killed")
}

/// Kills the child by its PID when the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(db) = std::env::var(CHILD_DB) {
        child(&db);
    }
    let dir = TempDir::new("sqlite-crash");
    let db = dir.path().join("state.db");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer child"),
    );

    // Complete lines only: a line cut by the kill was not fully acknowledged.
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        while stdout.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if line.ends_with(b"\n") && line.starts_with(b"ACK ") {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if lines_tx.send(text).is_err() {
                    break;
                }
            }
            line.clear();
        }
    });

    let mut acked = Vec::new();
    while acked.len() < ACKS_BEFORE_KILL {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => acked.push(line),
            Err(e) => panic!(
                "child stopped acknowledging after {} writes: {e}",
                acked.len()
            ),
        }
    }
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child died of SIGKILL mid-stream"
    );
    // Lines the child wrote before it died are acknowledgements too.
    reader.join().unwrap();
    acked.extend(lines.try_iter());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db).expect("reopen after the crash");
        let mut max_revision = 0;
        for line in &acked {
            let mut parts = line.split(' ').skip(1);
            let key = parts.next().unwrap();
            let revision: i64 = parts.next().unwrap().parse().unwrap();
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} (revision {revision}) is lost"));
            assert_eq!(kv.value, value_for(key), "{key}");
            assert_eq!(kv.mod_revision, revision, "{key}");
            max_revision = max_revision.max(revision);
        }
        let current = store.current_revision().await.unwrap();
        assert!(current >= max_revision);
        // The store goes on from where the crash left it.
        let next = store
            .create("/crash/after", Bytes::from("x"))
            .await
            .unwrap();
        assert_eq!(next.mod_revision, current + 1);
        println!(
            "{} acknowledged writes all present; {} more committed before the kill",
            acked.len(),
            current - acked.len() as i64
        );
    });
}
