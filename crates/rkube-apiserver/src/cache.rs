//! The watch cache: every object under `/registry/` in memory, plus a ring of recent
//! changes, fed by one store watch.
//!
//! Lists, gets and watches are served from here. Objects are kept as their JSON bytes
//! (with `resourceVersion` set) and the few attributes selectors need, so memory stays
//! close to the stored size and a watch event is serialised once for every watcher.
//! A read that must see the latest state first waits until the cache has caught up
//! with the store's current revision (upstream's consistent reads from cache).
//!
//! Live changes go out on one channel per resource (as upstream keeps one cacher
//! per type): a watch of ConfigMaps is not woken by every Pod write. A watch may
//! resume after revision `r` while no change of its resource newer than `r` has
//! left the ring. The ring keeps at least the configured number of changes, and
//! beyond that every change younger than the window (upstream keeps 75 s), up to
//! a hard cap: under a burst of writes a watcher that falls a few seconds behind
//! catches up from the ring instead of listing everything again.
//!
//! The server's own writes are primed: the writer hands over the object it
//! stored, so the store's event for it needs no parsing; other changes are
//! parsed once, outside the lock, and get their resourceVersion spliced in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rkube_store::{EventKind, KeyValue, ListOptions, Revision, Store};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::error::{ApiError, ApiResult};

/// The cache holds every object under this prefix (and follows the revisions of
/// every key).
pub const REGISTRY_PREFIX: &str = "/registry/";

/// Computes the selectable fields of an object, given its storage key.
pub type FieldsFn = Arc<dyn Fn(&str, &Value) -> Vec<(String, String)> + Send + Sync>;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub rv: Revision,
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Selectable fields besides `metadata.name` / `metadata.namespace`.
    pub fields: Vec<(String, String)>,
    /// The object as JSON, `metadata.resourceVersion` included.
    pub json: Bytes,
}

impl CachedObject {
    /// Parses the object.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The value of a selectable field.
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone().unwrap_or_default()),
            _ => self
                .fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        }
    }
}

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change as watchers see it.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    /// The object after the change; for deletes its last state at the delete revision.
    pub obj: Arc<CachedObject>,
    /// The object before the change (for updates and deletes).
    pub prev: Option<Arc<CachedObject>>,
}

impl CacheEvent {
    pub fn revision(&self) -> Revision {
        self.obj.rv
    }
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// Recent changes, oldest first, with when each arrived.
    ring: VecDeque<(Instant, Arc<CacheEvent>)>,
    /// The revision the cache reflects.
    revision: Revision,
    /// The ring holds every change after this revision.
    oldest: Revision,
    /// The revision the cache was last loaded at: no watch resumes before it.
    loaded: Revision,
    /// By resource: the newest of its changes that left the ring.
    evicted: HashMap<String, Revision>,
    /// By resource: the live feed of its changes, made on the first watch.
    events: HashMap<String, broadcast::Sender<Arc<CacheEvent>>>,
}

/// An object's JSON (`json`, as stored or cached) with `metadata.resourceVersion`
/// set to `rv`: spliced into the bytes, or, where the splice finds no metadata
/// object, set in the parsed object (`parsed`) and serialised again.
fn json_at(json: &[u8], rv: Revision) -> Bytes {
    if let Some(spliced) = crate::rv_splice::with_resource_version(json, rv) {
        return Bytes::from(spliced);
    }
    let mut value: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
    rkube_api::meta::set_meta_str(&mut value, "resourceVersion", rv.to_string());
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// The resource part of a storage key or prefix: `/registry/<group>/<plural>/`.
pub fn resource_of(key: &str) -> &str {
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    match slashes.nth(3) {
        Some(end) => &key[..=end],
        None => key,
    }
}

/// The watch cache. Cheap to share (`Arc`).
pub struct Cache {
    store: Arc<dyn Store>,
    fields: FieldsFn,
    state: RwLock<State>,
    revision_tx: watch::Sender<Revision>,
    ring: RingLimits,
    /// Objects this server is writing or has just written, by key, until their
    /// event arrives.
    primed: Mutex<Primes>,
    /// The JSON watch lines of recent changes.
    pub lines: WatchLines,
}

/// The JSON watch lines of recent changes, by revision: the watchers that show a
/// change the same way (most do) share one line rather than each copying the
/// object into its own. A slot is reused 1,024 revisions later, so only changes
/// watchers are sending now are held, not the ring's history.
pub struct WatchLines {
    slots: Mutex<Vec<Option<(Revision, EventType, Bytes)>>>,
}

const WATCH_LINE_SLOTS: usize = 1024;

impl WatchLines {
    fn new() -> WatchLines {
        WatchLines {
            slots: Mutex::new(vec![None; WATCH_LINE_SLOTS]),
        }
    }

    /// The line of change `rev` shown as `kind`, made by `make` if no watcher
    /// made it yet.
    pub fn get_or_make(
        &self,
        rev: Revision,
        kind: EventType,
        make: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let slot = rev.rem_euclid(WATCH_LINE_SLOTS as Revision) as usize;
        if let Some((r, k, line)) = &self.slots.lock().expect("lines lock")[slot]
            && *r == rev
            && *k == kind
        {
            return line.clone();
        }
        let line = make();
        self.slots.lock().expect("lines lock")[slot] = Some((rev, kind, line.clone()));
        line
    }
}

/// The primed objects, and the size at which stale ones are next swept out.
#[derive(Default)]
struct Primes {
    by_key: HashMap<String, Primed>,
    sweep_at: usize,
}

/// An object this server writes, handed to the cache before the store has it:
/// the store's event may come back before the writer hears of its revision.
enum Primed {
    /// Being written: everything but the revision (and the JSON that carries it).
    Writing {
        stored: Bytes,
        object: CachedObject,
        /// The cache's revision when it was handed over (for sweeping).
        at: Revision,
    },
    /// Written at a known revision.
    Written(Arc<CachedObject>),
}

/// How many changes the ring keeps.
#[derive(Clone, Copy, Debug)]
pub struct RingLimits {
    /// Always kept.
    pub events: usize,
    /// Beyond `events`, changes younger than this are kept too...
    pub window: Duration,
    /// ...up to this many.
    pub max_events: usize,
}

/// Primed objects kept before those whose event has passed are dropped (an
/// object can be primed just after its event was applied).
const PRIMED_SWEEP: usize = 512;

/// What a new watcher gets: the changes it missed, then a live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The watch has seen everything up to here: what follows is newer.
    pub revision: Revision,
}

/// Changes a watch may fall behind its resource's live feed; further behind, it
/// catches up from the ring.
const BROADCAST_CAPACITY: usize = 1024;

impl Cache {
    /// Loads every object and starts following the store.
    pub async fn start(
        store: Arc<dyn Store>,
        fields: FieldsFn,
        ring: RingLimits,
    ) -> ApiResult<Arc<Cache>> {
        let (revision_tx, _) = watch::channel(0);
        let cache = Arc::new(Cache {
            store,
            fields,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                ring: VecDeque::new(),
                revision: 0,
                oldest: 0,
                loaded: 0,
                evicted: HashMap::new(),
                events: HashMap::new(),
            }),
            revision_tx,
            ring,
            primed: Mutex::new(Primes::default()),
            lines: WatchLines::new(),
        });
        let revision = cache.reload().await?;
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move { follow(weak, revision).await });
        Ok(cache)
    }

    /// Replaces the cache's contents with a fresh list from the store.
    async fn reload(&self) -> ApiResult<Revision> {
        let list = self
            .store
            .list(REGISTRY_PREFIX, ListOptions::default())
            .await?;
        let mut objects = BTreeMap::new();
        for kv in &list.kvs {
            if let Some(obj) = self.cached(kv, kv.mod_revision) {
                objects.insert(kv.key.clone(), Arc::new(obj));
            }
        }
        let mut st = self.state.write().expect("cache lock");
        st.objects = objects;
        st.ring.clear();
        st.revision = list.revision;
        st.oldest = list.revision;
        st.loaded = list.revision;
        st.evicted.clear();
        // Watchers of the old state must start over: their feeds close.
        st.events.clear();
        drop(st);
        self.revision_tx.send_replace(list.revision);
        Ok(list.revision)
    }

    /// Builds the cached form of a stored value at a revision.
    fn cached(&self, kv: &KeyValue, rv: Revision) -> Option<CachedObject> {
        // What the cache reads of an object (name, labels, selectable fields) is
        // never in its managedFields: they are stepped over, not built.
        let mut de = serde_json::Deserializer::from_slice(&kv.value);
        let value: Value = match rkube_api::unmanaged::without_managed_fields(&mut de) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key = %kv.key, "skipping undecodable object: {e}");
                return None;
            }
        };
        Some(self.cached_value(&kv.key, rv, &value, json_at(&kv.value, rv)))
    }

    /// Hands the cache an object this server is about to store (`stored`, the
    /// bytes it writes; `value`, the same object parsed), so that the store's
    /// event for it is applied without parsing it again, whenever it comes.
    pub(crate) fn prime(&self, key: &str, value: &Value, stored: &Bytes) {
        let object = self.cached_value(key, 0, value, Bytes::new());
        let at = self.revision();
        let mut guard = self.primed.lock().expect("primed lock");
        let p = &mut *guard;
        if p.by_key.len() > p.sweep_at.max(PRIMED_SWEEP) {
            // Writes that failed, or whose event came before they were settled.
            // Many writes in flight are no reason to sweep at every one: the next
            // sweep waits until the map doubled.
            p.by_key.retain(|_, e| match e {
                Primed::Writing { at: a, .. } => *a + PRIMED_SWEEP as Revision > at,
                Primed::Written(o) => o.rv > at,
            });
            p.sweep_at = p.by_key.len() * 2;
        }
        p.by_key.insert(
            key.to_string(),
            Primed::Writing {
                stored: stored.clone(),
                object,
                at,
            },
        );
    }

    /// The object primed as `written` was stored at revision `rv`: unless its
    /// event has been applied already, it waits for it (and answers `written`).
    /// Another write of the key primed since is left alone.
    pub(crate) fn settle(&self, key: &str, written: &Bytes, rv: Revision) {
        let mut guard = self.primed.lock().expect("primed lock");
        let p = &mut guard.by_key;
        let ours = matches!(p.get(key), Some(Primed::Writing { stored, .. })
            if stored.as_ptr() == written.as_ptr() && stored.len() == written.len());
        if ours && let Some(Primed::Writing { stored, object, .. }) = p.remove(key) {
            let json = json_at(&stored, rv);
            let object = Arc::new(CachedObject { rv, json, ..object });
            p.insert(key.to_string(), Primed::Written(object));
        }
    }

    /// The JSON of the object `key` as written at `rv` (resourceVersion included),
    /// while the cache still holds that version: a write answers with it rather
    /// than encoding the object again.
    pub fn written(&self, key: &str, rv: Revision) -> Option<Bytes> {
        let primed = match self.primed.lock().expect("primed lock").by_key.get(key) {
            Some(Primed::Written(o)) => Some(o.clone()),
            _ => None,
        };
        primed
            .or_else(|| self.get(key))
            .filter(|o| o.rv == rv)
            .map(|o| o.json.clone())
    }

    /// The object a Put event stores: primed by its writer, or parsed.
    fn take_primed_or_parse(&self, kv: &KeyValue, rv: Revision) -> Option<Arc<CachedObject>> {
        let primed = {
            let p = &mut self.primed.lock().expect("primed lock").by_key;
            // Taken when it is this change; left for a later write's event;
            // dropped when its write came before this one.
            let take = match p.get(&kv.key) {
                Some(Primed::Written(o)) => o.rv <= rv,
                Some(Primed::Writing { stored, .. }) => *stored == kv.value,
                None => false,
            };
            if take { p.remove(&kv.key) } else { None }
        };
        match primed {
            Some(Primed::Written(o)) if o.rv == rv => Some(o),
            Some(Primed::Writing { object, .. }) => Some(Arc::new(CachedObject {
                rv,
                json: json_at(&kv.value, rv),
                ..object
            })),
            _ => self.cached(kv, rv).map(Arc::new),
        }
    }

    fn cached_value(&self, key: &str, rv: Revision, value: &Value, json: Bytes) -> CachedObject {
        let labels = rkube_api::meta::labels(value)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        CachedObject {
            key: key.to_string(),
            rv,
            name: rkube_api::meta::name(value).unwrap_or_default().to_string(),
            namespace: rkube_api::meta::namespace(value).map(str::to_string),
            labels,
            fields: (self.fields)(key, value),
            json,
        }
    }

    fn apply(&self, ev: rkube_store::Event) {
        let rev = ev.revision();
        // The new object is made before the lock is taken: readers wait less.
        let fresh = match ev.kind {
            EventKind::Put if ev.kv.key.starts_with(REGISTRY_PREFIX) && rev > self.revision() => {
                self.take_primed_or_parse(&ev.kv, rev)
            }
            _ => None,
        };
        let mut st = self.state.write().expect("cache lock");
        if rev <= st.revision {
            return;
        }
        // Keys outside the registry (allocations) only move the revision on, so
        // reads waiting for the store's latest revision are not held up.
        if !ev.kv.key.starts_with(REGISTRY_PREFIX) {
            st.revision = rev;
            drop(st);
            self.revision_tx.send_replace(rev);
            return;
        }
        let prev = st.objects.get(&ev.kv.key).cloned();
        let event = match ev.kind {
            EventKind::Put => {
                let Some(obj) = fresh else {
                    st.revision = rev;
                    return;
                };
                st.objects.insert(ev.kv.key.clone(), obj.clone());
                CacheEvent {
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    obj,
                    prev,
                }
            }
            EventKind::Delete => {
                st.objects.remove(&ev.kv.key);
                let last = match (&prev, &ev.prev) {
                    (Some(p), _) => Some(Self::at_revision(p, rev)),
                    (None, Some(kv)) => self.cached(kv, rev),
                    (None, None) => None,
                };
                let Some(last) = last else {
                    st.revision = rev;
                    return;
                };
                CacheEvent {
                    kind: EventType::Deleted,
                    obj: Arc::new(last),
                    prev,
                }
            }
        };
        let event = Arc::new(event);
        let now = Instant::now();
        st.ring.push_back((now, event.clone()));
        let limits = self.ring;
        while st.ring.len() > limits.events.max(limits.max_events)
            || (st.ring.len() > limits.events
                && st
                    .ring
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > limits.window))
        {
            if let Some((_, old)) = st.ring.pop_front() {
                st.oldest = old.revision();
                st.evicted
                    .insert(resource_of(&old.obj.key).to_string(), old.revision());
            }
        }
        st.revision = rev;
        if let Some(tx) = st.events.get(resource_of(&event.obj.key)) {
            let _ = tx.send(event);
        }
        drop(st);
        self.revision_tx.send_replace(rev);
    }

    /// An object as it was, at a later revision (its delete).
    fn at_revision(obj: &CachedObject, rev: Revision) -> CachedObject {
        CachedObject {
            key: obj.key.clone(),
            rv: rev,
            name: obj.name.clone(),
            namespace: obj.namespace.clone(),
            labels: obj.labels.clone(),
            fields: obj.fields.clone(),
            json: json_at(&obj.json, rev),
        }
    }

    /// The revision the cache reflects now.
    pub fn revision(&self) -> Revision {
        self.state.read().expect("cache lock").revision
    }

    /// Waits until the cache reflects at least `rev`.
    pub async fn wait_for(&self, rev: Revision) -> ApiResult<()> {
        let mut rx = self.revision_tx.subscribe();
        let wait = rx.wait_for(|r| *r >= rev);
        match tokio::time::timeout(Duration::from_secs(3), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "Too large resource version: {rev}, current: {}",
                self.revision()
            ))),
        }
    }

    /// Waits until the cache has every write the store acknowledged so far.
    pub async fn wait_fresh(&self) -> ApiResult<Revision> {
        let rev = self.store.current_revision().await?;
        self.wait_for(rev).await?;
        Ok(rev)
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state
            .read()
            .expect("cache lock")
            .objects
            .get(key)
            .cloned()
    }

    /// Objects whose key starts with `prefix`, in key order, and the cache revision.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, Revision) {
        let st = self.state.read().expect("cache lock");
        let items = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.revision)
    }

    /// Visits the objects under `prefix` with keys after `start_after`, in key order,
    /// as they were at revision `rev`, until `visit` returns `false`. The current
    /// objects are rolled back through the ring's later changes; `false` when the
    /// ring no longer reaches back to `rev` (or `rev` is ahead of the cache).
    pub fn visit_at(
        &self,
        prefix: &str,
        start_after: &str,
        rev: Revision,
        mut visit: impl FnMut(&Arc<CachedObject>) -> bool,
    ) -> bool {
        let st = self.state.read().expect("cache lock");
        if rev < st.oldest || rev > st.revision {
            return false;
        }
        let in_range = |k: &str| k.starts_with(prefix) && k > start_after;
        // Each key changed after `rev`: its state before the first such change.
        let mut undo: BTreeMap<&str, Option<&Arc<CachedObject>>> = BTreeMap::new();
        for (_, ev) in st.ring.iter().filter(|(_, e)| e.revision() > rev) {
            if in_range(&ev.obj.key) {
                undo.entry(ev.obj.key.as_str())
                    .or_insert_with(|| match ev.kind {
                        EventType::Added => None,
                        EventType::Modified | EventType::Deleted => ev.prev.as_ref(),
                    });
            }
        }
        let mut now = st
            .objects
            .range::<str, _>((
                std::ops::Bound::Excluded(start_after),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        let mut then = undo.into_iter().peekable();
        loop {
            let at_rev = match (now.peek(), then.peek()) {
                (None, None) => return true,
                (Some((k, _)), Some((u, _))) if k.as_str() == *u => {
                    now.next();
                    then.next().and_then(|(_, o)| o)
                }
                (Some((k, _)), Some((u, _))) if *u < k.as_str() => then.next().and_then(|(_, o)| o),
                (Some(_), _) => now.next().map(|(_, o)| o),
                (None, Some(_)) => then.next().and_then(|(_, o)| o),
            };
            if let Some(o) = at_rev
                && !visit(o)
            {
                return true;
            }
        }
    }

    /// Number of objects under a prefix.
    pub fn count(&self, prefix: &str) -> usize {
        let st = self.state.read().expect("cache lock");
        st.objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// The live feed of the changes under `prefix`'s resource.
    fn feed(&self, prefix: &str) -> broadcast::Receiver<Arc<CacheEvent>> {
        let resource = resource_of(prefix);
        if let Some(tx) = self.state.read().expect("cache lock").events.get(resource) {
            return tx.subscribe();
        }
        let mut st = self.state.write().expect("cache lock");
        st.events
            .entry(resource.to_string())
            .or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
            .subscribe()
    }

    /// Starts a watch of the objects under `prefix` after revision `after`: the
    /// ring's events after it (of every resource: the caller filters), then live
    /// ones of the prefix's resource. `None` starts at the current revision. Fails
    /// with 410 when a change of the resource after `after` has left the ring.
    pub fn subscribe(&self, prefix: &str, after: Option<Revision>) -> ApiResult<Subscription> {
        // Subscribed before reading the ring: what is sent in between comes twice,
        // and the watcher skips it by revision.
        let live = self.feed(prefix);
        let st = self.state.read().expect("cache lock");
        let after = after.unwrap_or(st.revision);
        let oldest = st
            .loaded
            .max(st.evicted.get(resource_of(prefix)).copied().unwrap_or(0));
        if after < oldest {
            return Err(ApiError::gone(format!(
                "too old resource version: {after} ({oldest})"
            )));
        }
        let start = st.ring.partition_point(|(_, e)| e.revision() <= after);
        let backlog = st.ring.range(start..).map(|(_, e)| e.clone()).collect();
        Ok(Subscription {
            backlog,
            live,
            revision: after,
        })
    }

    /// The revision a watch of `live`'s resource has seen everything up to, when it
    /// has received every change sent to it (for bookmarks of quiet resources).
    pub fn progress(&self, live: &broadcast::Receiver<Arc<CacheEvent>>) -> Option<Revision> {
        let st = self.state.read().expect("cache lock");
        live.is_empty().then_some(st.revision)
    }

    /// A snapshot of current objects under `prefix` plus a live feed after it, taken
    /// atomically (for watches that start with the current state).
    pub fn snapshot_and_subscribe(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, Subscription) {
        let live = self.feed(prefix);
        let st = self.state.read().expect("cache lock");
        let items = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (
            items,
            Subscription {
                backlog: Vec::new(),
                live,
                revision: st.revision,
            },
        )
    }

    /// Approximate bytes held by cached objects (for metrics).
    pub fn bytes(&self) -> usize {
        let st = self.state.read().expect("cache lock");
        st.objects.values().map(|o| o.json.len()).sum()
    }
}

/// Follows the store from `revision`, re-listing when the watch breaks.
async fn follow(cache: std::sync::Weak<Cache>, mut revision: Revision) {
    'watch: loop {
        let Some(c) = cache.upgrade() else { return };
        // The whole keyspace: revisions of keys outside the registry count too.
        let stream = c.store.watch("/", revision).await;
        drop(c);
        match stream {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let Some(c) = cache.upgrade() else { return };
                    match item {
                        Ok(ev) => {
                            revision = ev.revision();
                            c.apply(ev);
                        }
                        Err(rkube_store::StoreError::WatchLagged { skipped, .. }) => {
                            // The store still has the history: read what was missed
                            // from it rather than start every watcher over.
                            tracing::info!(
                                revision,
                                skipped,
                                "the watch cache fell behind the store; catching up from its history"
                            );
                            continue 'watch;
                        }
                        Err(e) => {
                            tracing::warn!("store watch ended: {e}; reloading the cache");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("store watch failed: {e}; reloading the cache"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(c) = cache.upgrade() else { return };
        match c.reload().await {
            Ok(r) => revision = r,
            Err(e) => tracing::warn!("cache reload failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_share_the_line_of_a_change_shown_the_same_way() {
        let lines = WatchLines::new();
        let made = std::cell::Cell::new(0);
        let make = |text: &'static str| {
            made.set(made.get() + 1);
            Bytes::from_static(text.as_bytes())
        };
        let a = lines.get_or_make(7, EventType::Modified, || make("m7"));
        let b = lines.get_or_make(7, EventType::Modified, || make("other"));
        assert_eq!(
            (a.as_ref(), b.as_ref(), made.get()),
            (&b"m7"[..], &b"m7"[..], 1)
        );
        // The same change seen as an addition (a selector it now matches) differs.
        let added = lines.get_or_make(7, EventType::Added, || make("a7"));
        assert_eq!(added.as_ref(), b"a7");
        // A later change in the same slot is its own line.
        let later = lines.get_or_make(7 + WATCH_LINE_SLOTS as Revision, EventType::Added, || {
            make("later")
        });
        assert_eq!((later.as_ref(), made.get()), (&b"later"[..], 3));
    }
}
