//! The one test suite every [`Store`] backend must pass (feature `testing`).
//!
//! Each case is a `pub async fn(Arc<dyn Store>)` given a fresh, empty store. A backend's
//! test file instantiates them all with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```text
//! async fn open() -> rkube_store::conformance::TestStore {
//!     rkube_store::conformance::TestStore::new(std::sync::Arc::new(MemoryStore::new()))
//! }
//! rkube_store::conformance_tests!(open);
//! ```
//!
//! Cases never assume revisions start at 1: they read `current_revision` first.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError, WatchStream};

/// A store under test, with whatever must live as long as it (a temp dir, a server).
pub struct TestStore {
    store: Arc<dyn Store>,
    _guard: Option<Box<dyn Any + Send>>,
}

impl TestStore {
    pub fn new(store: Arc<dyn Store>) -> Self {
        TestStore {
            store,
            _guard: None,
        }
    }

    /// Keeps `guard` alive until the test ends; it is dropped after the store.
    pub fn with_guard(store: Arc<dyn Store>, guard: Box<dyn Any + Send>) -> Self {
        TestStore {
            store,
            _guard: Some(guard),
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// A directory under the system temp dir, removed with its contents on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "rkube-store-{name}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Instantiates every conformance case as a `#[tokio::test]`, each on a store made by
/// `$open`: an async fn (or closure returning a future) yielding a [`TestStore`].
/// Attributes after it (e.g. `#[ignore = "needs etcd"]`) are put on every test.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::conformance_tests!(@each $open; [$(#[$attr])*];
            create_then_get,
            create_existing_fails,
            update_compares_and_swaps,
            delete_with_and_without_precondition,
            recreate_after_delete_starts_new_life,
            list_matches_exact_prefix,
            list_at_past_revision,
            list_pages_with_limit_and_start_after,
            list_returns_many_megabytes,
            future_revisions_are_refused,
            watch_replays_then_streams_live,
            watch_replays_long_history,
            watch_ignores_other_prefixes,
            watch_events_carry_previous_values,
            compaction_forgets_old_history,
            concurrent_writers_get_unique_gap_free_revisions,
            concurrent_compare_and_swap_loses_no_update,
            watches_started_during_writes_miss_nothing,
        );
    };
    (@each $open:expr; $attrs:tt; $($case:ident),* $(,)?) => {
        $(
            $crate::conformance_tests!(@one $open; $attrs; $case);
        )*
    };
    (@one $open:expr; [$(#[$attr:meta])*]; $case:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let backend: $crate::conformance::TestStore = ($open)().await;
            $crate::conformance::$case(backend.store()).await;
        }
    };
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn list_all(store: &dyn Store, prefix: &str, revision: Option<Revision>) -> Vec<KeyValue> {
    let opts = ListOptions {
        revision,
        ..Default::default()
    };
    store.list(prefix, opts).await.expect("list").kvs
}

fn keys_and_values(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| {
            let v = String::from_utf8_lossy(&kv.value).into_owned();
            (kv.key.clone(), v)
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The next event of a watch; fails the test after 10 s or if the stream ends.
async fn next_event(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 10s"),
    }
}

/// Asserts the watch delivers nothing more for a short while.
async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

pub async fn create_then_get(store: Arc<dyn Store>) {
    let before = store.current_revision().await.unwrap();
    let kv = store.create("/t/a", b("one")).await.unwrap();
    assert_eq!(kv.key, "/t/a");
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.mod_revision, before + 1);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(store.get("/t/a").await.unwrap(), Some(kv));
    assert_eq!(store.get("/t/missing").await.unwrap(), None);
    assert_eq!(store.get("/t/").await.unwrap(), None);
}

pub async fn create_existing_fails(store: Arc<dyn Store>) {
    let kv = store.create("/t/a", b("one")).await.unwrap();
    let err = store.create("/t/a", b("two")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists(k) if k == "/t/a"),
        "{err:?}"
    );
    // The failed create changed nothing.
    assert_eq!(store.get("/t/a").await.unwrap(), Some(kv.clone()));
    assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
}

pub async fn update_compares_and_swaps(store: Arc<dyn Store>) {
    let v1 = store.create("/t/a", b("one")).await.unwrap();
    let v2 = store
        .update("/t/a", b("two"), v1.mod_revision)
        .await
        .unwrap();
    assert_eq!(v2.value, b("two"));
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);
    assert_eq!(store.get("/t/a").await.unwrap(), Some(v2.clone()));

    // A stale revision conflicts and carries the current value.
    let err = store
        .update("/t/a", b("three"), v1.mod_revision)
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            key,
            expected,
            current,
        } => {
            assert_eq!(key, "/t/a");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current.as_deref(), Some(&v2));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get("/t/a").await.unwrap(), Some(v2.clone()));
    assert_eq!(store.current_revision().await.unwrap(), v2.mod_revision);

    let err = store.update("/t/missing", b("x"), 1).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound(k) if k == "/t/missing"),
        "{err:?}"
    );
}

pub async fn delete_with_and_without_precondition(store: Arc<dyn Store>) {
    let a = store.create("/t/a", b("a1")).await.unwrap();
    let a2 = store.update("/t/a", b("a2"), a.mod_revision).await.unwrap();

    let err = store
        .delete("/t/a", Some(a.mod_revision))
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict { current, .. } => assert_eq!(current.as_deref(), Some(&a2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get("/t/a").await.unwrap(), Some(a2.clone()));

    let gone = store.delete("/t/a", Some(a2.mod_revision)).await.unwrap();
    assert_eq!(gone.key, "/t/a");
    assert_eq!(gone.value, b("a2"), "a delete returns the last value");
    assert_eq!(gone.create_revision, a.create_revision);
    assert_eq!(gone.mod_revision, a2.mod_revision + 1);
    assert_eq!(store.current_revision().await.unwrap(), gone.mod_revision);
    assert_eq!(store.get("/t/a").await.unwrap(), None);

    let err = store.delete("/t/a", None).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound(k) if k == "/t/a"),
        "{err:?}"
    );
    let err = store
        .update("/t/a", b("x"), gone.mod_revision)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    store.create("/t/b", b("b1")).await.unwrap();
    let b_gone = store.delete("/t/b", None).await.unwrap();
    assert_eq!(b_gone.value, b("b1"));
    assert_eq!(store.get("/t/b").await.unwrap(), None);
    assert_eq!(store.count("/t/").await.unwrap(), 0);
}

pub async fn recreate_after_delete_starts_new_life(store: Arc<dyn Store>) {
    let first = store.create("/t/a", b("one")).await.unwrap();
    store.delete("/t/a", None).await.unwrap();
    let second = store.create("/t/a", b("two")).await.unwrap();
    assert!(second.create_revision > first.create_revision);
    assert_eq!(second.create_revision, second.mod_revision);
    assert_eq!(store.get("/t/a").await.unwrap(), Some(second));
}

pub async fn list_matches_exact_prefix(store: Arc<dyn Store>) {
    for key in [
        "/registry/pods/default/b",
        "/registry/pods/default/a",
        "/registry/pods/default2/c",
        "/registry/pods/default",
        "/registry/pods/defaul",
        "/registry/pods/kube-system/d",
        "/registry/services/default/a",
    ] {
        store.create(key, b(key)).await.unwrap();
    }
    let kvs = list_all(&*store, "/registry/pods/default/", None).await;
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/registry/pods/default/a", "/registry/pods/default/b"]
    );
    assert_eq!(store.count("/registry/pods/default/").await.unwrap(), 2);

    let kvs = list_all(&*store, "/registry/pods/", None).await;
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/pods/defaul",
            "/registry/pods/default",
            "/registry/pods/default/a",
            "/registry/pods/default/b",
            "/registry/pods/default2/c",
            "/registry/pods/kube-system/d",
        ]
    );
    assert_eq!(store.count("/registry/pods/").await.unwrap(), 6);
    assert_eq!(store.count("/registry/").await.unwrap(), 7);
    assert!(list_all(&*store, "/registry/nodes/", None).await.is_empty());
    assert_eq!(store.count("/registry/nodes/").await.unwrap(), 0);
    // Values come back with their keys.
    for kv in &kvs {
        assert_eq!(kv.value, b(&kv.key));
    }
}

pub async fn list_at_past_revision(store: Arc<dyn Store>) {
    let a1 = store.create("/t/a", b("a1")).await.unwrap();
    let b1 = store.create("/t/b", b("b1")).await.unwrap();
    let a2 = store
        .update("/t/a", b("a2"), a1.mod_revision)
        .await
        .unwrap();
    let b_gone = store.delete("/t/b", None).await.unwrap();
    let c1 = store.create("/t/c", b("c1")).await.unwrap();

    let at = |r: Revision| {
        let store = store.clone();
        async move {
            let res = store
                .list(
                    "/t/",
                    ListOptions {
                        revision: Some(r),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(res.revision, r);
            assert!(!res.more);
            keys_and_values(&res.kvs)
        }
    };
    assert_eq!(at(a1.mod_revision).await, pairs(&[("/t/a", "a1")]));
    assert_eq!(
        at(b1.mod_revision).await,
        pairs(&[("/t/a", "a1"), ("/t/b", "b1")])
    );
    assert_eq!(
        at(a2.mod_revision).await,
        pairs(&[("/t/a", "a2"), ("/t/b", "b1")])
    );
    assert_eq!(at(b_gone.mod_revision).await, pairs(&[("/t/a", "a2")]));
    assert_eq!(
        at(c1.mod_revision).await,
        pairs(&[("/t/a", "a2"), ("/t/c", "c1")])
    );

    // Past entries carry the revisions they had then.
    let res = store
        .list(
            "/t/",
            ListOptions {
                revision: Some(b1.mod_revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(res.kvs, vec![a1.clone(), b1.clone()]);

    let latest = store.list("/t/", ListOptions::default()).await.unwrap();
    assert_eq!(latest.revision, c1.mod_revision);
    assert_eq!(latest.kvs, vec![a2, c1]);
    // A revision of 0 or below means the latest, as in etcd.
    for r in [0, -1] {
        let res = store
            .list(
                "/t/",
                ListOptions {
                    revision: Some(r),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(res, latest);
    }
}

pub async fn list_pages_with_limit_and_start_after(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for i in 0..25 {
        let key = format!("/t/k{i:02}");
        store.create(&key, b(&format!("v{i}"))).await.unwrap();
        expected.push(key);
    }
    store.create("/u/outside", b("x")).await.unwrap();

    let first = store
        .list(
            "/t/",
            ListOptions {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.kvs.len(), 10);
    assert!(first.more);
    assert_eq!(first.remaining, Some(15));
    let snapshot = first.revision;

    // Writes after the first page do not show in pages read at its revision.
    store.create("/t/k10a", b("late")).await.unwrap();
    store.delete("/t/k20", None).await.unwrap();

    let mut seen: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut last = first;
    let mut pages = 1;
    while last.more {
        let next = store
            .list(
                "/t/",
                ListOptions {
                    revision: Some(snapshot),
                    limit: Some(10),
                    start_after: last.kvs.last().map(|kv| kv.key.clone()),
                },
            )
            .await
            .unwrap();
        assert_eq!(next.revision, snapshot);
        let after = seen.len() + next.kvs.len();
        if next.more {
            assert_eq!(next.remaining, Some(25 - after as i64));
        } else {
            assert!(next.remaining.is_none_or(|r| r == 0));
        }
        seen.extend(next.kvs.iter().map(|kv| kv.key.clone()));
        last = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // Limit 0 means all; a limit equal to the count has nothing more.
    let all = store
        .list(
            "/t/",
            ListOptions {
                limit: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.kvs.len(), 25);
    let exact = store
        .list(
            "/t/",
            ListOptions {
                limit: Some(25),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(exact.kvs.len(), 25);
    assert!(!exact.more);

    // start_after a key between others continues from the next one.
    let mid = store
        .list(
            "/t/",
            ListOptions {
                limit: Some(2),
                start_after: Some("/t/k10".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keys: Vec<&str> = mid.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/t/k10a", "/t/k11"]);
}

pub async fn list_returns_many_megabytes(store: Arc<dyn Store>) {
    // 6 MiB in one answer: more than a gRPC message holds by default.
    const KEYS: usize = 48;
    const SIZE: usize = 128 * 1024;
    for i in 0..KEYS {
        let value = Bytes::from(vec![b'a' + (i % 26) as u8; SIZE]);
        store.create(&format!("/t/big{i:02}"), value).await.unwrap();
    }
    let kvs = list_all(&*store, "/t/", None).await;
    assert_eq!(kvs.len(), KEYS);
    for (i, kv) in kvs.iter().enumerate() {
        assert_eq!(kv.value.len(), SIZE);
        assert!(kv.value.iter().all(|&c| c == b'a' + (i % 26) as u8));
    }
}

pub async fn future_revisions_are_refused(store: Arc<dyn Store>) {
    store.create("/t/a", b("a")).await.unwrap();
    let current = store.current_revision().await.unwrap();
    let err = store
        .list(
            "/t/",
            ListOptions {
                revision: Some(current + 1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::FutureRevision { requested, current: c } if requested == current + 1 && c == current),
        "{err:?}"
    );
    let err = store.watch("/t/", current + 1).await.err().expect("error");
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
    let err = store.compact(current + 1).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
}

pub async fn watch_replays_then_streams_live(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let a = store.create("/t/a", b("a1")).await.unwrap();
    let a2 = store.update("/t/a", b("a2"), a.mod_revision).await.unwrap();
    let c = store.create("/t/c", b("c1")).await.unwrap();

    let mut w = store.watch("/t/", start).await.unwrap();
    let replayed = [
        next_event(&mut w).await,
        next_event(&mut w).await,
        next_event(&mut w).await,
    ];
    assert_eq!(replayed[0].kind, EventKind::Put);
    assert_eq!(replayed[0].kv, a);
    assert_eq!(replayed[1].kv, a2);
    assert_eq!(replayed[2].kv, c);

    // From the middle of history: only what came after.
    let mut w_mid = store.watch("/t/", a.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w_mid).await.kv, a2);
    assert_eq!(next_event(&mut w_mid).await.kv, c);

    // From now: nothing until the next write.
    let mut w_now = store
        .watch("/t/", store.current_revision().await.unwrap())
        .await
        .unwrap();
    assert_quiet(&mut w_now).await;

    let d = store.create("/t/d", b("d1")).await.unwrap();
    let d_gone = store.delete("/t/d", None).await.unwrap();
    for w in [&mut w, &mut w_mid, &mut w_now] {
        let put = next_event(w).await;
        assert_eq!((put.kind, &put.kv), (EventKind::Put, &d));
        let del = next_event(w).await;
        assert_eq!((del.kind, &del.kv), (EventKind::Delete, &d_gone));
        assert_quiet(w).await;
    }
}

pub async fn watch_replays_long_history(store: Arc<dyn Store>) {
    // More history than a backend would read in one go, with other keys in between.
    const N: i64 = 2500;
    let start = store.current_revision().await.unwrap();
    let mut kv = store.create("/t/a", b("0")).await.unwrap();
    for i in 1..N {
        if i % 10 == 0 {
            store.create(&format!("/u/{i}"), b("other")).await.unwrap();
        }
        kv = store
            .update("/t/a", b(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    let mut w = store.watch("/t/", start).await.unwrap();
    let mut last = start;
    for i in 0..N {
        let ev = next_event(&mut w).await;
        assert!(ev.revision() > last, "revision order");
        assert_eq!(ev.kv.value, b(&i.to_string()));
        last = ev.revision();
    }
    assert_eq!(last, kv.mod_revision);
    let live = store
        .update("/t/a", b("live"), kv.mod_revision)
        .await
        .unwrap();
    assert_eq!(next_event(&mut w).await.kv, live);
    assert_quiet(&mut w).await;
}

pub async fn watch_ignores_other_prefixes(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    store
        .create("/registry/pods/default/a", b("1"))
        .await
        .unwrap();
    store
        .create("/registry/pods/default2/a", b("2"))
        .await
        .unwrap();
    let mut w = store.watch("/registry/pods/default/", start).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kv.key, "/registry/pods/default/a");
    store
        .create("/registry/pods/defaultx", b("3"))
        .await
        .unwrap();
    store
        .create("/registry/services/default/a", b("4"))
        .await
        .unwrap();
    let b = store
        .create("/registry/pods/default/b", b("5"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut w).await.kv, b);
    assert_quiet(&mut w).await;
}

pub async fn watch_events_carry_previous_values(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let live = store.watch("/t/", start).await.unwrap();
    let a1 = store.create("/t/a", b("a1")).await.unwrap();
    let a2 = store
        .update("/t/a", b("a2"), a1.mod_revision)
        .await
        .unwrap();
    let gone = store.delete("/t/a", None).await.unwrap();
    let replay = store.watch("/t/", start).await.unwrap();

    for mut w in [live, replay] {
        let created = next_event(&mut w).await;
        assert_eq!(created.kind, EventKind::Put);
        assert_eq!(created.prev, None);
        let updated = next_event(&mut w).await;
        assert_eq!(updated.kv, a2);
        assert_eq!(updated.prev.as_ref(), Some(&a1));
        let deleted = next_event(&mut w).await;
        assert_eq!(deleted.kind, EventKind::Delete);
        assert_eq!(deleted.revision(), gone.mod_revision);
        assert_eq!(deleted.kv.value, b("a2"), "delete carries the last value");
        assert_eq!(deleted.kv.create_revision, a1.create_revision);
        assert_eq!(deleted.prev.as_ref(), Some(&a2));
        assert_quiet(&mut w).await;
    }
}

pub async fn compaction_forgets_old_history(store: Arc<dyn Store>) {
    let keep = store.create("/t/keep", b("k1")).await.unwrap();
    let a1 = store.create("/t/a", b("a1")).await.unwrap();
    let a2 = store
        .update("/t/a", b("a2"), a1.mod_revision)
        .await
        .unwrap();
    let gone = store.create("/t/gone", b("g1")).await.unwrap();
    store.delete("/t/gone", None).await.unwrap();
    let late = store.create("/t/late", b("l1")).await.unwrap();
    let point = late.mod_revision;
    let later = store.delete("/t/late", None).await.unwrap();
    let a3 = store
        .update("/t/a", b("a3"), a2.mod_revision)
        .await
        .unwrap();
    assert!(gone.mod_revision < point);

    store.compact(point).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), point);

    // Below the compaction point: Compacted.
    let err = store
        .list(
            "/t/",
            ListOptions {
                revision: Some(point - 1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { requested, compacted } if requested == point - 1 && compacted == point),
        "{err:?}"
    );
    let err = store.watch("/t/", point - 1).await.err().expect("error");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    let err = store.watch("/t/", 0).await.err().expect("error");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");

    // At the compaction point: the state then, including a key deleted since.
    let at_point = list_all(&*store, "/t/", Some(point)).await;
    assert_eq!(at_point, vec![a2.clone(), keep.clone(), late.clone()]);
    // And the latest state is untouched.
    assert_eq!(
        list_all(&*store, "/t/", None).await,
        vec![a3.clone(), keep.clone()]
    );
    assert_eq!(store.get("/t/keep").await.unwrap(), Some(keep));
    assert_eq!(store.count("/t/").await.unwrap(), 2);

    // Watching after the point replays what followed it, with previous values.
    let mut w = store.watch("/t/", point).await.unwrap();
    let del = next_event(&mut w).await;
    assert_eq!((del.kind, &del.kv), (EventKind::Delete, &later));
    assert_eq!(del.prev.as_ref(), Some(&late));
    let upd = next_event(&mut w).await;
    assert_eq!(upd.kv, a3);
    assert_eq!(upd.prev.as_ref(), Some(&a2));
    assert_quiet(&mut w).await;

    // Compacting again below or at the point changes nothing.
    store.compact(point - 1).await.unwrap();
    store.compact(point).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), point);

    // Writes continue the revision sequence, and the store can compact to its head.
    let next = store.create("/t/next", b("n")).await.unwrap();
    assert_eq!(next.mod_revision, a3.mod_revision + 1);
    store.compact(next.mod_revision).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), next.mod_revision);
    assert_eq!(store.current_revision().await.unwrap(), next.mod_revision);
    assert_eq!(
        keys_and_values(&list_all(&*store, "/t/", None).await),
        pairs(&[("/t/a", "a3"), ("/t/keep", "k1"), ("/t/next", "n")])
    );
}

pub async fn concurrent_writers_get_unique_gap_free_revisions(store: Arc<dyn Store>) {
    const WRITERS: usize = 16;
    const KEYS_EACH: usize = 20;
    // Per key: create, update, delete.
    const TOTAL: usize = WRITERS * KEYS_EACH * 3;

    let start = store.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(store.watch("/c/", start).await.unwrap());
    }
    let readers: Vec<_> = watchers
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut events = Vec::with_capacity(TOTAL);
                while events.len() < TOTAL {
                    events.push(next_event(&mut w).await);
                }
                assert_quiet(&mut w).await;
                events
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for k in 0..KEYS_EACH {
                    let key = format!("/c/w{w:02}/k{k:02}");
                    let c = store.create(&key, b("1")).await.unwrap();
                    let u = store.update(&key, b("2"), c.mod_revision).await.unwrap();
                    let d = store.delete(&key, Some(u.mod_revision)).await.unwrap();
                    assert!(c.mod_revision < u.mod_revision && u.mod_revision < d.mod_revision);
                    revisions.extend([c.mod_revision, u.mod_revision, d.mod_revision]);
                }
                revisions
            })
        })
        .collect();

    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<Revision> = (start + 1..=start + TOTAL as i64).collect();
    assert_eq!(all, expected, "revisions are unique and gap-free");
    assert_eq!(
        store.current_revision().await.unwrap(),
        start + TOTAL as i64
    );

    for r in readers {
        let events = r.await.unwrap();
        let revs: Vec<Revision> = events.iter().map(Event::revision).collect();
        assert_eq!(revs, expected, "every event exactly once, in order");
        // Each key's own events arrive as create, update, delete.
        let mut seen = BTreeSet::new();
        for ev in &events {
            let first = seen.insert(ev.kv.key.clone());
            match ev.kind {
                EventKind::Put if first => assert_eq!(ev.kv.value, b("1")),
                EventKind::Put => assert_eq!(ev.kv.value, b("2")),
                EventKind::Delete => assert!(!first),
            }
        }
        assert_eq!(seen.len(), WRITERS * KEYS_EACH);
    }
}

pub async fn concurrent_compare_and_swap_loses_no_update(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 25;
    store.create("/t/counter", b("0")).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                let mut kv = store.get("/t/counter").await.unwrap().unwrap();
                for _ in 0..INCREMENTS {
                    loop {
                        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        match store
                            .update("/t/counter", b(&(n + 1).to_string()), kv.mod_revision)
                            .await
                        {
                            Ok(new) => {
                                kv = new;
                                break;
                            }
                            Err(StoreError::Conflict { current, .. }) => {
                                conflicts += 1;
                                kv = *current.expect("conflict carries the current value");
                            }
                            Err(e) => panic!("update failed: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let kv = store.get("/t/counter").await.unwrap().unwrap();
    assert_eq!(kv.value, b(&(TASKS * INCREMENTS).to_string()));
    assert_eq!(
        store.current_revision().await.unwrap(),
        kv.create_revision + (TASKS * INCREMENTS) as i64
    );
    // Conflicts are likely but not required: a backend may happen to serialise the tasks.
    println!("{conflicts} conflicts retried");
}

pub async fn watches_started_during_writes_miss_nothing(store: Arc<dyn Store>) {
    // Watches begin at revisions reached while 8 tasks write, some from the head and
    // some from a little in the past; each must see every later event exactly once.
    const WRITERS: usize = 8;
    const EACH: usize = 60;
    let start = store.current_revision().await.unwrap();
    let end = start + (WRITERS * EACH) as i64;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    store
                        .create(&format!("/d/w{w}/{i:03}"), b("x"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut watchers = Vec::new();
    for n in 0..12 {
        let head = store.current_revision().await.unwrap();
        let after = if n % 2 == 0 {
            head
        } else {
            (head - 7).max(start)
        };
        if after >= end {
            break;
        }
        let mut w = store.watch("/d/", after).await.unwrap();
        watchers.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            while revs.last().is_none_or(|&r| r < end) {
                revs.push(next_event(&mut w).await.revision());
            }
            assert_quiet(&mut w).await;
            (after, revs)
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(!watchers.is_empty());
    for w in watchers {
        let (after, revs) = w.await.unwrap();
        let expected: Vec<Revision> = (after + 1..=end).collect();
        assert_eq!(revs, expected, "watch after {after}");
    }
}
