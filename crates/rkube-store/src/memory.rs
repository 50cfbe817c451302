//! An in-memory [`Store`] with the full semantics of the durable backends (history,
//! reads at past revisions, watch replay, compaction), for tests. Nothing is persisted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::watch::{self, DEFAULT_WATCH_CAPACITY};
use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    WatchStream,
};

/// One write to a key; `value: None` is a delete (tombstone).
#[derive(Clone, Debug)]
struct Version {
    mod_revision: Revision,
    create_revision: Revision,
    value: Option<Bytes>,
}

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    /// Every key's versions in revision order (only those not yet compacted away).
    keys: BTreeMap<String, Vec<Version>>,
    /// Every event with revision > `compacted`, in revision order.
    log: VecDeque<Arc<Event>>,
}

/// The in-memory store. Cheap to create; share it as `Arc<dyn Store>`.
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_watch_capacity(DEFAULT_WATCH_CAPACITY)
    }

    /// A store whose live watchers are cut off (with `WatchLagged`) once they fall
    /// `capacity` events behind.
    pub fn with_watch_capacity(capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        MemoryStore {
            state: Mutex::new(State::default()),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written in a way
        // later readers would misread, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one write under the lock and publishes it to live watchers.
    fn commit(&self, state: &mut State, key: &str, value: Option<Bytes>) -> Arc<Event> {
        state.revision += 1;
        let revision = state.revision;
        let versions = state.keys.entry(key.to_string()).or_default();
        let prev = versions.last().and_then(|v| as_kv(key, v));
        let event = match value {
            Some(value) => {
                let create_revision = prev.as_ref().map_or(revision, |p| p.create_revision);
                versions.push(Version {
                    mod_revision: revision,
                    create_revision,
                    value: Some(value.clone()),
                });
                Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.to_string(),
                        value,
                        create_revision,
                        mod_revision: revision,
                    },
                    prev,
                }
            }
            None => {
                let last = prev.clone().expect("delete of a present key");
                versions.push(Version {
                    mod_revision: revision,
                    create_revision: last.create_revision,
                    value: None,
                });
                Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: revision,
                        ..last
                    },
                    prev,
                }
            }
        };
        let event = Arc::new(event);
        state.log.push_back(event.clone());
        // No receivers is not an error: nobody is watching.
        let _ = self.events.send(event.clone());
        event
    }
}

fn as_kv(key: &str, v: &Version) -> Option<KeyValue> {
    v.value.as_ref().map(|value| KeyValue {
        key: key.to_string(),
        value: value.clone(),
        create_revision: v.create_revision,
        mod_revision: v.mod_revision,
    })
}

/// The value of a key at `revision`, if it existed then.
fn at_revision(key: &str, versions: &[Version], revision: Revision) -> Option<KeyValue> {
    let n = versions.partition_point(|v| v.mod_revision <= revision);
    n.checked_sub(1).and_then(|i| as_kv(key, &versions[i]))
}

fn current(state: &State, key: &str) -> Option<KeyValue> {
    state
        .keys
        .get(key)
        .and_then(|vs| vs.last())
        .and_then(|v| as_kv(key, v))
}

fn range<'a>(
    state: &'a State,
    prefix: &'a str,
    start_after: Option<&'a str>,
) -> impl Iterator<Item = (&'a String, &'a Vec<Version>)> + 'a {
    crate::key_range(&state.keys, prefix, start_after)
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(current(&self.lock(), key))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let state = self.lock();
        let revision = crate::check_read_revision(opts.revision, state.revision, state.compacted)?;
        let live = range(&state, prefix, opts.start_after.as_deref())
            .filter_map(|(k, vs)| at_revision(k, vs, revision));
        Ok(crate::page(live, opts.limit, revision))
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let state = self.lock();
        let n = range(&state, prefix, None)
            .filter(|(_, vs)| vs.last().is_some_and(|v| v.value.is_some()))
            .count();
        Ok(n as i64)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut state = self.lock();
        if current(&state, key).is_some() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        Ok(self.commit(&mut state, key, Some(value)).kv.clone())
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let mut state = self.lock();
        let existing = current(&state, key).ok_or_else(|| StoreError::NotFound(key.into()))?;
        if existing.mod_revision != expected {
            return Err(crate::conflict(key, expected, existing));
        }
        Ok(self.commit(&mut state, key, Some(value)).kv.clone())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.lock();
        let existing = current(&state, key).ok_or_else(|| StoreError::NotFound(key.into()))?;
        if let Some(expected) = expected.filter(|&e| e != existing.mod_revision) {
            return Err(crate::conflict(key, expected, existing));
        }
        Ok(self.commit(&mut state, key, None).kv.clone())
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let state = self.lock();
        crate::check_watch_revision(after, state.revision, state.compacted)?;
        // Subscribing under the lock that every commit takes means the replay and the
        // live stream meet exactly at `state.revision`.
        let rx = self.events.subscribe();
        let start = state.log.partition_point(|e| e.revision() <= after);
        let replay: Vec<Result<Event>> = state
            .log
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .map(|e| Ok((**e).clone()))
            .collect();
        let live = watch::live(rx, prefix.to_string(), state.revision);
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.keys.retain(|_, versions| {
            // Keep the version current at `revision` (unless it is a delete) and later.
            let n = versions.partition_point(|v| v.mod_revision <= revision);
            let keep_from = match n.checked_sub(1) {
                Some(i) if versions[i].value.is_some() => i,
                _ => n,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        while state.log.front().is_some_and(|e| e.revision() <= revision) {
            state.log.pop_front();
        }
        state.compacted = revision;
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }
}
