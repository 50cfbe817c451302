//! Shared informers: one kube-runtime watcher and cache per resource type,
//! shared by every controller, with the changes fanned out to each subscriber (old
//! and new object on updates, the last state on deletes) as upstream's informers do.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use rkube_api::unmanaged::Unmanaged;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

/// What a typed informer can hold.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// A change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    /// Added (`old` is `None`) or updated.
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted; the last state seen.
    Deleted(Arc<K>),
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied {
                old: old.clone(),
                new: new.clone(),
            },
            Change::Deleted(o) => Change::Deleted(o.clone()),
        }
    }
}

/// The receiving end of a subscription.
pub type Changes<K> = mpsc::UnboundedReceiver<Change<K>>;

struct Shared<K: Object> {
    subscribers: Vec<mpsc::UnboundedSender<Change<K>>>,
    /// The cache: the objects by namespace ("" for cluster-scoped objects) and
    /// name, so that listing a namespace costs its own objects only. (Each
    /// object is the one the watch decoded, not a copy of it.)
    by_namespace: HashMap<String, BTreeMap<String, Arc<K>>>,
    /// The cached objects by who controls them, so that a controller's sync costs
    /// its own objects and the orphans it may adopt, not the whole namespace.
    by_owner: HashMap<Owner, BTreeMap<(String, String), Arc<K>>>,
}

/// The controller of a cached object: the uid of its owner reference with
/// `controller: true`, or none (an orphan, indexed by its namespace).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Owner {
    Controller(String),
    Orphan(String),
}

fn owner_of<K: Object>(obj: &K) -> Owner {
    match crate::controller_ref::controller_of(obj.meta()) {
        Some(r) => Owner::Controller(r.uid.clone()),
        None => Owner::Orphan(ns_of(obj)),
    }
}

impl<K: Object> Shared<K> {
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.by_namespace.get(namespace)?.get(name).cloned()
    }

    fn all(&self) -> Vec<Arc<K>> {
        self.by_namespace
            .values()
            .flat_map(|objs| objs.values().cloned())
            .collect()
    }

    /// Indexes a cached object, replacing what was indexed under its name.
    fn index(&mut self, old: Option<&K>, new: &Arc<K>) {
        let (ns, name) = (ns_of(new.as_ref()), new.name_any());
        if let Some(old) = old {
            self.unindex_owner(old);
        }
        self.by_owner
            .entry(owner_of(new.as_ref()))
            .or_default()
            .insert((ns.clone(), name.clone()), new.clone());
        self.by_namespace
            .entry(ns)
            .or_default()
            .insert(name, new.clone());
    }

    fn unindex(&mut self, obj: &K) {
        if let Some(objs) = self.by_namespace.get_mut(&ns_of(obj)) {
            objs.remove(&obj.name_any());
        }
        self.unindex_owner(obj);
    }

    fn unindex_owner(&mut self, obj: &K) {
        let owner = owner_of(obj);
        if let Some(objs) = self.by_owner.get_mut(&owner) {
            objs.remove(&(ns_of(obj), obj.name_any()));
            if objs.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }
}

/// One resource type's cache and change feed.
pub struct Informer<K: Object> {
    shared: Arc<Mutex<Shared<K>>>,
    synced: watch::Receiver<bool>,
    task: AbortHandle,
}

impl<K: Object> Drop for Informer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K: Object> Informer<K> {
    /// Starts watching every object of the type in every namespace.
    pub fn start(client: Client) -> Arc<Informer<K>> {
        let shared = Arc::new(Mutex::new(Shared {
            subscribers: Vec::new(),
            by_namespace: HashMap::new(),
            by_owner: HashMap::new(),
        }));
        let (synced_tx, synced) = watch::channel(false);
        // No controller reads managedFields: leaving them out (as upstream's
        // informers drop them) keeps the cache at about half the memory, and not
        // building them saves most of the decoding.
        let api: Api<Unmanaged<K>> = Api::all(client);
        let feed = shared.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut relist: Vec<K> = Vec::new();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) => {
                        let ev = managed_out(ev);
                        let done = matches!(ev, Event::InitDone);
                        apply(&feed, ev, &mut relist);
                        if done {
                            let _ = synced_tx.send(true);
                        }
                    }
                    Err(e) => tracing::warn!("watching {}: {e}", K::plural(&())),
                }
            }
        })
        .abort_handle();
        Arc::new(Informer {
            shared,
            synced,
            task,
        })
    }

    /// Waits until the first full list is in the cache.
    pub async fn synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The changes from now on; the objects already cached come first as additions.
    pub fn subscribe(&self) -> Changes<K> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = self.shared.lock().expect("informer lock");
        for obj in s.all() {
            let _ = tx.send(Change::Applied {
                old: None,
                new: obj,
            });
        }
        s.subscribers.push(tx);
        rx
    }

    /// One cached object.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let s = self.shared.lock().expect("informer lock");
        s.get(namespace.unwrap_or_default(), name)
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.shared.lock().expect("informer lock").all()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let s = self.shared.lock().expect("informer lock");
        s.by_namespace
            .get(namespace)
            .map(|objs| objs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The cached objects of `namespace` that a controller with `owner_uid` may
    /// claim: those it controls and the orphans (no controller at all). Objects
    /// another controller owns are left out, as claiming would ignore them anyway.
    pub fn list_claimable(&self, namespace: &str, owner_uid: &str) -> Vec<Arc<K>> {
        let s = self.shared.lock().expect("informer lock");
        let owned = s
            .by_owner
            .get(&Owner::Controller(owner_uid.to_string()))
            .into_iter()
            .flat_map(|objs| objs.iter())
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, o)| o);
        let orphans = s
            .by_owner
            .get(&Owner::Orphan(namespace.to_string()))
            .into_iter()
            .flat_map(|objs| objs.values());
        owned.chain(orphans).cloned().collect()
    }

    /// How many cached objects have a controller reference with `owner_uid`.
    pub fn count_controlled_by(&self, owner_uid: &str) -> usize {
        let s = self.shared.lock().expect("informer lock");
        s.by_owner
            .get(&Owner::Controller(owner_uid.to_string()))
            .map_or(0, BTreeMap::len)
    }

    /// The cached objects whose controller reference has `owner_uid`.
    pub fn list_controlled_by(&self, owner_uid: &str) -> Vec<Arc<K>> {
        let s = self.shared.lock().expect("informer lock");
        s.by_owner
            .get(&Owner::Controller(owner_uid.to_string()))
            .map(|objs| objs.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// A watch event of objects decoded without managedFields, as one of the objects.
fn managed_out<K>(ev: Event<Unmanaged<K>>) -> Event<K> {
    match ev {
        Event::Apply(o) => Event::Apply(o.0),
        Event::Delete(o) => Event::Delete(o.0),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(o.0),
        Event::InitDone => Event::InitDone,
    }
}

fn ns_of<K: Object>(obj: &K) -> String {
    obj.namespace().unwrap_or_default()
}

/// Applies one watch event to the cache and tells the subscribers what changed.
fn apply<K: Object>(shared: &Mutex<Shared<K>>, ev: Event<K>, relist: &mut Vec<K>) {
    let mut s = shared.lock().expect("informer lock");
    let mut changes = Vec::new();
    match ev {
        Event::Apply(obj) => {
            let old = s.get(&ns_of(&obj), &obj.name_any());
            let new = Arc::new(obj);
            s.index(old.as_deref(), &new);
            changes.push(Change::Applied { old, new });
        }
        Event::Delete(obj) => {
            let last = s.get(&ns_of(&obj), &obj.name_any());
            s.unindex(last.as_deref().unwrap_or(&obj));
            changes.push(Change::Deleted(last.unwrap_or_else(|| Arc::new(obj))));
        }
        Event::Init => {
            tracing::debug!("informer of {}: (re)listing", K::plural(&()));
            relist.clear();
        }
        Event::InitApply(obj) => relist.push(obj),
        Event::InitDone => {
            // A (re)list replaces the cache: what changed or vanished is reported.
            let mut before: HashMap<(String, String), Arc<K>> = s
                .all()
                .into_iter()
                .map(|o| ((ns_of(o.as_ref()), o.name_any()), o))
                .collect();
            s.by_namespace.clear();
            s.by_owner.clear();
            for obj in relist.drain(..) {
                let old = before.remove(&(ns_of(&obj), obj.name_any()));
                let unchanged = old
                    .as_ref()
                    .is_some_and(|o| o.resource_version() == obj.resource_version());
                let new = Arc::new(obj);
                s.index(None, &new);
                if !unchanged {
                    changes.push(Change::Applied { old, new });
                }
            }
            changes.extend(before.into_values().map(Change::Deleted));
        }
    }
    s.subscribers
        .retain(|tx| changes.iter().all(|c| tx.send(c.clone()).is_ok()));
}

/// The informers of one controller manager term, one per type, made on first use.
#[derive(Clone)]
pub struct InformerFactory {
    client: Client,
    informers: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl InformerFactory {
    pub fn new(client: Client) -> Self {
        InformerFactory {
            client,
            informers: Default::default(),
        }
    }

    /// The shared informer of `K`, started if it is the first ask.
    pub fn get<K: Object>(&self) -> Arc<Informer<K>> {
        let mut map = self.informers.lock().expect("factory lock");
        let entry = map.entry(TypeId::of::<K>()).or_insert_with(|| {
            Informer::<K>::start(self.client.clone()) as Arc<dyn Any + Send + Sync>
        });
        entry
            .clone()
            .downcast::<Informer<K>>()
            .expect("informer of the right type")
    }
}

/// Feeds a work queue from a subscription: every change becomes the keys `keys`
/// maps it to. Runs until the informer goes away.
pub async fn feed<K, T, F, I>(mut changes: Changes<K>, queue: crate::queue::WorkQueue<T>, keys: F)
where
    K: Object,
    T: Clone + Eq + std::hash::Hash + Send + 'static,
    F: Fn(Change<K>) -> I,
    I: IntoIterator<Item = T>,
{
    while let Some(c) = changes.recv().await {
        for k in keys(c) {
            queue.add(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn cm(name: &str, rv: &str, owner: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        controller: Some(true),
                        uid: uid.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// What a change says: ("applied"/"deleted", name, old rv, new rv).
    fn said(c: Change<ConfigMap>) -> (&'static str, String, Option<String>, String) {
        match c {
            Change::Applied { old, new } => (
                "applied",
                new.name_any(),
                old.and_then(|o| o.resource_version()),
                new.resource_version().unwrap_or_default(),
            ),
            Change::Deleted(o) => (
                "deleted",
                o.name_any(),
                None,
                o.resource_version().unwrap_or_default(),
            ),
        }
    }

    fn drain(rx: &mut Changes<ConfigMap>) -> Vec<(&'static str, String, Option<String>, String)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(said)
            .collect()
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        let mut n: Vec<String> = objs.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    }

    #[test]
    fn the_cache_follows_events_and_relists_report_what_changed() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shared = Mutex::new(Shared {
            subscribers: vec![tx],
            by_namespace: HashMap::new(),
            by_owner: HashMap::new(),
        });
        let mut relist = Vec::new();
        let mut feed = |ev| apply(&shared, ev, &mut relist);
        feed(Event::Apply(cm("a", "1", Some("rs1"))));
        feed(Event::Apply(cm("b", "2", None)));
        feed(Event::Apply(cm("a", "3", Some("rs2"))));
        feed(Event::Delete(cm("b", "4", None)));
        assert_eq!(
            drain(&mut rx),
            vec![
                ("applied", "a".into(), None, "1".into()),
                ("applied", "b".into(), None, "2".into()),
                ("applied", "a".into(), Some("1".into()), "3".into()),
                // The last state the cache held.
                ("deleted", "b".into(), None, "2".into()),
            ]
        );
        {
            let s = shared.lock().unwrap();
            assert_eq!(
                s.get("ns", "a").unwrap().resource_version().as_deref(),
                Some("3")
            );
            assert!(s.get("ns", "b").is_none());
            // Re-owned: indexed under its new controller only.
            assert!(!s.by_owner.contains_key(&Owner::Controller("rs1".into())));
            assert_eq!(s.by_owner[&Owner::Controller("rs2".into())].len(), 1);
        }

        // A relist: `a` unchanged, `c` new, and `d` (cached) gone meanwhile.
        feed(Event::Apply(cm("d", "5", None)));
        let _ = rx.try_recv();
        feed(Event::Init);
        feed(Event::InitApply(cm("a", "3", Some("rs2"))));
        feed(Event::InitApply(cm("c", "6", None)));
        feed(Event::InitDone);
        assert_eq!(
            drain(&mut rx),
            vec![
                ("applied", "c".into(), None, "6".into()),
                ("deleted", "d".into(), None, "5".into()),
            ]
        );
        let s = shared.lock().unwrap();
        assert_eq!(names(s.all()), vec!["a", "c"]);
        assert_eq!(s.by_owner[&Owner::Orphan("ns".into())].len(), 1);
    }
}
