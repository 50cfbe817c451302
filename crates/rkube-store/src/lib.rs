//! rkube's datastore: a revisioned key-value store with the etcd data model.
//!
//! Every write gets the next value of one global, monotonic revision. Each key keeps
//! its `create_revision` and `mod_revision`; the API server uses `mod_revision` as an
//! object's `resourceVersion`. Reads can be made at a past revision until it is
//! compacted; watches replay every change after a revision, in revision order.
//!
//! Backends: `memory` (tests), `sqlite` (the embedded default, cargo feature `sqlite`,
//! on by default), `etcd` (HA, feature `etcd`, off by default: building it needs
//! `protoc`). Callers hold an `Arc<dyn Store>` and never know which one they have.
//! Feature `testing` adds [`conformance`](crate::conformance), the one test suite every
//! backend passes.

use bytes::Bytes;
use futures::stream::BoxStream;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod watch;

/// A store revision. Revisions start at 1; 0 means "none yet".
pub type Revision = i64;

/// A key with its current value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created the key (its latest incarnation).
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`: the new key-value. For `Delete`: the key with its last value and
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this change, when the backend knows it (always for `Delete`).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// How to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read the state as of this revision; `None` (or a revision <= 0) reads the latest.
    pub revision: Option<Revision>,
    /// At most this many keys; `None` or `Some(0)` means all.
    pub limit: Option<usize>,
    /// Start strictly after this key (for continuing a paged list).
    pub start_after: Option<String>,
}

/// The answer to a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Matching keys in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// Whether more keys follow the last one returned.
    pub more: bool,
    /// How many keys follow, when `more` (best effort; backends may count lazily).
    pub remaining: Option<i64>,
}

/// Store failures. Callers match on the first six; `Backend` is an I/O or engine fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key present.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// The key does not exist (update/delete of a missing key).
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A compare-and-swap saw a different `mod_revision`; carries the current value.
    #[error("key {key:?} was modified (expected revision {expected})")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision is older than the last compaction.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A watcher fell too far behind the writes and was cut off; `revision` is the last
    /// revision it was sent. The caller re-lists and watches again.
    #[error("watcher fell behind after revision {revision} ({skipped} events dropped)")]
    WatchLagged { revision: Revision, skipped: u64 },
    /// The backend failed (disk, database, network to etcd).
    #[error("datastore error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of changes; ends only if the store shuts down or the watcher falls behind
/// (then the last item is an error, and the caller re-lists).
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The revisioned key-value store. All methods are safe to call concurrently.
///
/// Durability: when a write returns `Ok`, the write survives a crash of the process.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of a key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, at a revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// How many keys start with `prefix` now.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Creates a key that must not exist. Returns the stored key-value.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces a key's value if its `mod_revision` is `expected`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes a key, if `expected` is given only when its `mod_revision` matches.
    /// Returns the deleted key-value with `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every change to keys under `prefix` with revision > `after`, then live changes.
    /// `after` older than the compaction point fails with `Compacted`, newer than the
    /// current revision with `FutureRevision`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Forgets history older than `revision` (the latest value of every key is kept):
    /// reads at `revision` and watches after it still work, older ones fail with
    /// `Compacted`. Compacting at or below the compaction point does nothing; beyond
    /// the current revision fails with `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision history has been compacted up to (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;
}

/// The entries of `map` under `prefix`, strictly after `start_after` when given, in key
/// order.
pub(crate) fn key_range<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    prefix: &'a str,
    start_after: Option<&'a str>,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    use std::ops::Bound;
    let start = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    map.range::<str, _>((start, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// A list answer from the key-values in range, in key order, cut at `limit`.
pub(crate) fn page(
    mut kvs: impl Iterator<Item = KeyValue>,
    limit: Option<usize>,
    revision: Revision,
) -> ListResult {
    let limit = limit.filter(|&l| l > 0).unwrap_or(usize::MAX);
    let page: Vec<KeyValue> = kvs.by_ref().take(limit).collect();
    let remaining = kvs.count() as i64;
    ListResult {
        kvs: page,
        revision,
        more: remaining > 0,
        remaining: (remaining > 0).then_some(remaining),
    }
}

/// The revision a list reads at, or why it cannot be read.
pub(crate) fn check_read_revision(
    requested: Option<Revision>,
    current: Revision,
    compacted: Revision,
) -> Result<Revision> {
    match requested {
        None => Ok(current),
        Some(r) if r <= 0 => Ok(current),
        Some(r) if r > current => Err(StoreError::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) if r < compacted => Err(StoreError::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) => Ok(r),
    }
}

/// Whether a watch may start after `after`.
pub(crate) fn check_watch_revision(
    after: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<()> {
    if after > current {
        return Err(StoreError::FutureRevision {
            requested: after,
            current,
        });
    }
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    Ok(())
}

pub(crate) fn conflict(key: &str, expected: Revision, current: KeyValue) -> StoreError {
    StoreError::Conflict {
        key: key.to_string(),
        expected,
        current: Some(Box::new(current)),
    }
}

/// The exclusive upper bound of the keys starting with `prefix` (`None`: no bound).
#[cfg(any(feature = "sqlite", feature = "etcd"))]
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
