//! SQLite-specific behaviour: persistence across reopen, the file lock, lagging
//! watchers, and compaction really deleting rows while writes continue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{SqliteOptions, SqliteStore};
use crate::conformance::TempDir;
use crate::{ListOptions, Store, StoreError};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn log_rows(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_continues_the_revision_sequence() {
    let dir = TempDir::new("sqlite-reopen");
    let path = dir.path().join("state.db");
    let (a, last) = {
        let store = SqliteStore::open(&path).unwrap();
        let a = store.create("/t/a", b("a1")).await.unwrap();
        store.create("/t/b", b("b1")).await.unwrap();
        let last = store.delete("/t/b", None).await.unwrap();
        // Compacting at a delete removes the newest row of the log.
        store.compact(last.mod_revision).await.unwrap();
        (a, last)
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), last.mod_revision);
    assert_eq!(store.compacted_revision().await.unwrap(), last.mod_revision);
    assert_eq!(store.get("/t/a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.get("/t/b").await.unwrap(), None);
    let c = store.create("/t/c", b("c1")).await.unwrap();
    assert_eq!(c.mod_revision, last.mod_revision + 1);
    let list = store.list("/t/", ListOptions::default()).await.unwrap();
    assert_eq!(list.kvs, vec![a.clone(), c.clone()]);
    assert_eq!(list.revision, c.mod_revision);
    assert_eq!(store.count("/t/").await.unwrap(), 2);
    let err = store
        .list(
            "/t/",
            ListOptions {
                revision: Some(last.mod_revision - 1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused() {
    let dir = TempDir::new("sqlite-lock");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    let err = SqliteStore::open(&path).err().expect("second open fails");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(store);
    SqliteStore::open(&path).expect("open after the first closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_gets_an_error_and_ends() {
    let dir = TempDir::new("sqlite-lag");
    let options = SqliteOptions {
        watch_capacity: 8,
        ..Default::default()
    };
    let store = SqliteStore::open_with(dir.path().join("state.db"), options).unwrap();
    let start = store.current_revision().await.unwrap();
    let mut w = store.watch("/t/", start).await.unwrap();
    for i in 0..50 {
        store.create(&format!("/t/{i:02}"), b("x")).await.unwrap();
    }
    let mut delivered = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(_))) => delivered += 1,
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("stream ended without an error"),
            Err(_) => panic!("no error within 10s"),
        }
    };
    assert!(delivered < 50);
    assert!(
        matches!(err, StoreError::WatchLagged { revision, .. } if revision == start + delivered),
        "{err:?}"
    );
    assert!(w.next().await.is_none(), "the stream ends after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_deletes_superseded_rows_while_writes_continue() {
    const KEYS: usize = 20;
    const ROUNDS: usize = 60;
    let dir = TempDir::new("sqlite-compact");
    let path = dir.path().join("state.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/t/", start).await.unwrap();

    let writers: Vec<_> = (0..KEYS)
        .map(|k| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("/t/{k:02}");
                let mut kv = store.create(&key, b("0")).await.unwrap();
                for round in 1..ROUNDS {
                    kv = store
                        .update(&key, b(&round.to_string()), kv.mod_revision)
                        .await
                        .unwrap();
                }
                store
                    .create(&format!("/t/{k:02}-gone"), b("g"))
                    .await
                    .unwrap();
                store
                    .delete(&format!("/t/{k:02}-gone"), None)
                    .await
                    .unwrap();
            })
        })
        .collect();
    let compactor = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let rev = store.current_revision().await.unwrap();
                store.compact(rev).await.unwrap();
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    compactor.await.unwrap();
    let total = (KEYS * (ROUNDS + 2)) as i64;
    let head = store.current_revision().await.unwrap();
    assert_eq!(head, start + total);

    // The watch started before any compaction saw every event, in order.
    for expected in start + 1..=head {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        assert_eq!(ev.revision(), expected);
    }

    store.compact(head).await.unwrap();
    // Only the latest row of each live key remains.
    assert_eq!(log_rows(&path), KEYS as i64);
    let list = store.list("/t/", ListOptions::default()).await.unwrap();
    assert_eq!(list.kvs.len(), KEYS);
    for kv in &list.kvs {
        assert_eq!(kv.value, b(&(ROUNDS - 1).to_string()), "{}", kv.key);
    }
}

#[tokio::test]
async fn opening_in_a_missing_directory_names_the_path() {
    let dir = TempDir::new("sqlite-missing");
    let path = dir.path().join("no-such-dir").join("state.db");
    let err = SqliteStore::open(&path).err().expect("open fails");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_disk_and_writes_run_side_by_side() {
    // More concurrent readers than idle connections: connections open and close while
    // the writer commits, and neither side may see "database is locked".
    const TASKS: usize = 16;
    const WRITES: usize = 100;
    let dir = TempDir::new("sqlite-side-by-side");
    let options = SqliteOptions {
        latest_in_memory: false,
        ..Default::default()
    };
    let store = Arc::new(SqliteStore::open_with(dir.path().join("state.db"), options).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..TASKS)
        .map(|r| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store.get(&format!("/t/{r:02}/0000")).await.unwrap();
                    let page = ListOptions {
                        limit: Some(20),
                        ..Default::default()
                    };
                    store.list("/t/", page).await.unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..TASKS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..WRITES {
                    let key = format!("/t/{w:02}/{i:04}");
                    let kv = store.create(&key, b("1")).await.unwrap();
                    store.update(&key, b("2"), kv.mod_revision).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    assert_eq!(store.count("/t/").await.unwrap(), (TASKS * WRITES) as i64);
}
