//! The garbage collector: keeps a graph of ownerReferences over every resource the
//! API serves (custom resources included, re-discovered as CRDs come and go) and
//! deletes what has no owner left:
//! * Background: dependents of a deleted owner are deleted after it is gone;
//! * Foreground: an owner with the `foregroundDeletion` finalizer waits until its
//!   dependents that block owner deletion are gone, then loses the finalizer;
//! * Orphan: an owner with the `orphan` finalizer is removed from its dependents'
//!   ownerReferences, then loses the finalizer;
//! * a dependent whose owner does not exist (by uid) is deleted.
//!
//! Before deleting anything the collector asks the API (not a cache) whether the
//! owners exist, so a lagging watch never makes it delete a live object's dependents.

pub mod graph;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, DynamicObject, Preconditions, PropagationPolicy};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::controller_ref::patch_metadata_field;
use crate::discovery::{Resources, Served};
use crate::manager::ControllerContext;
use crate::queue::WorkQueue;
use graph::{FOREGROUND, Graph, GraphEvent, ORPHAN, ObjectId, Observed, Work};

/// How often the served resources are looked up again (upstream: 30s).
const REDISCOVERY: Duration = Duration::from_secs(30);
/// Owners known to be absent, remembered to spare API reads.
const ABSENT_CACHE: usize = 500;

/// Errors of the garbage collector.
#[derive(Debug, thiserror::Error)]
pub enum GarbageCollectorError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// An owner reference names a kind the API does not serve (yet).
    #[error("cannot resolve {0} {1}: not served")]
    UnknownKind(String, String),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    resources: RwLock<Resources>,
    graph_events: mpsc::UnboundedSender<GraphEvent>,
    attempt_to_delete: WorkQueue<String>,
    attempt_to_orphan: WorkQueue<String>,
    absent: Mutex<(HashSet<String>, VecDeque<String>)>,
}

async fn run(ctx: ControllerContext) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gc = Arc::new(GarbageCollector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        resources: RwLock::new(Resources::default()),
        graph_events: tx,
        attempt_to_delete: WorkQueue::new(),
        attempt_to_orphan: WorkQueue::new(),
        absent: Mutex::new((HashSet::new(), VecDeque::new())),
    });
    let builder = gc.clone().process_graph_changes(rx);
    let monitors = gc.clone().run_monitors(ctx.clone());
    let g = gc.clone();
    let deleters =
        gc.attempt_to_delete
            .run(ctx.config.workers * 4, "garbage-collector", move |uid| {
                let g = g.clone();
                async move { g.attempt_to_delete_item(&uid).await }
            });
    let g = gc.clone();
    let orphaners =
        gc.attempt_to_orphan
            .run(ctx.config.workers, "garbage-collector-orphan", move |uid| {
                let g = g.clone();
                async move { g.attempt_to_orphan_item(&uid).await }
            });
    futures::join!(builder, monitors, deleters, orphaners);
}

/// The identity of an object a monitor reports.
fn object_id(ar: &ApiResource, meta: &ObjectMeta) -> ObjectId {
    ObjectId {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

fn observed(ar: &ApiResource, meta: &ObjectMeta) -> Observed {
    Observed {
        id: object_id(ar, meta),
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    }
}

/// Whether the collector watches a resource: anything that can be listed, watched
/// and deleted, except events (as upstream).
fn monitored(s: &Served) -> bool {
    s.supports("list")
        && s.supports("watch")
        && s.supports("delete")
        && !(s.resource.plural == "events"
            && (s.resource.group.is_empty() || s.resource.group == "events.k8s.io"))
}

/// An object's metadata as the collector reads it, through metadata-only requests
/// as `PartialObjectMeta`. Decoding keeps only what the graph uses: labels,
/// annotations and managedFields (most of a pod's metadata) are skipped without
/// being built.
#[derive(Clone, Debug, serde::Deserialize)]
struct Owned {
    #[serde(default, deserialize_with = "rkube_api::meta::deserialize_lean")]
    metadata: ObjectMeta,
}

impl kube::Resource for Owned {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn metadata_api() -> bool {
        true
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Watches one resource's metadata and feeds the graph.
async fn monitor(client: Client, ar: ApiResource, tx: mpsc::UnboundedSender<GraphEvent>) {
    let api: Api<Owned> = Api::all_with(client, &ar);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashMap<String, ObjectId> = HashMap::new();
    let mut relist: HashMap<String, ObjectId> = HashMap::new();
    while let Some(ev) = events.next().await {
        let sent = match ev {
            Ok(Event::Apply(o)) => {
                let ob = observed(&ar, &o.metadata);
                known.insert(ob.id.uid.clone(), ob.id.clone());
                tx.send(GraphEvent::Observed(ob))
            }
            Ok(Event::InitApply(o)) => {
                let ob = observed(&ar, &o.metadata);
                relist.insert(ob.id.uid.clone(), ob.id.clone());
                tx.send(GraphEvent::Observed(ob))
            }
            Ok(Event::Delete(o)) => {
                let id = object_id(&ar, &o.metadata);
                known.remove(&id.uid);
                tx.send(GraphEvent::Removed(id))
            }
            Ok(Event::Init) => {
                relist.clear();
                Ok(())
            }
            Ok(Event::InitDone) => {
                // What the relist no longer has was deleted while we were not watching.
                let mut r = Ok(());
                for (uid, id) in known.drain() {
                    if !relist.contains_key(&uid) {
                        r = r.and(tx.send(GraphEvent::Removed(id)));
                    }
                }
                known = std::mem::take(&mut relist);
                r
            }
            Err(e) => {
                tracing::debug!("garbage collector: watching {}: {e}", ar.plural);
                Ok(())
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

impl GarbageCollector {
    /// The graph builder: one task applies every change in order and queues the work.
    async fn process_graph_changes(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<GraphEvent>) {
        while let Some(ev) = rx.recv().await {
            let work = self.graph.lock().expect("graph lock").apply(ev);
            for w in work {
                match w {
                    Work::AttemptToDelete(uid) => self.attempt_to_delete.add(uid),
                    Work::AttemptToOrphan(uid) => self.attempt_to_orphan.add(uid),
                }
            }
        }
    }

    /// Discovers the served resources and keeps one monitor per resource running;
    /// looks again periodically and soon after a CRD changes.
    async fn run_monitors(self: Arc<Self>, ctx: ControllerContext) {
        let crds = ctx.informers.get::<CustomResourceDefinition>();
        let mut crd_changes = crds.subscribe();
        let mut running: HashMap<(String, String), AbortHandle> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        // After a CRD change, look again soon (the API serves it a moment later).
        let mut soon: VecDeque<Duration> = VecDeque::new();
        loop {
            match Resources::discover(&self.client).await {
                Ok(res) => {
                    let wanted: HashMap<(String, String), ApiResource> = res
                        .all
                        .iter()
                        .filter(|s| monitored(s))
                        .map(|s| {
                            (
                                (s.resource.group.clone(), s.resource.plural.clone()),
                                s.resource.clone(),
                            )
                        })
                        .collect();
                    running.retain(|k, h| {
                        let keep = wanted.contains_key(k);
                        if !keep {
                            h.abort();
                        }
                        keep
                    });
                    for (k, ar) in wanted {
                        running.entry(k).or_insert_with(|| {
                            tasks.spawn(monitor(self.client.clone(), ar, self.graph_events.clone()))
                        });
                    }
                    *self.resources.write().expect("resources lock") = res;
                }
                Err(e) => tracing::warn!("garbage collector: discovery: {e}"),
            }
            let wait = soon.pop_front().unwrap_or(REDISCOVERY);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                c = crd_changes.recv() => {
                    if c.is_none() {
                        return;
                    }
                    while crd_changes.try_recv().is_ok() {}
                    soon = VecDeque::from([Duration::from_secs(2), Duration::from_secs(5)]);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("garbage collector: a monitor panicked: {e}");
                }
            }
        }
    }

    /// The API of an object's resource, if the API serves its kind.
    fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, GarbageCollectorError> {
        let res = self.resources.read().expect("resources lock");
        let s = res
            .by_api_version_kind(api_version, kind)
            .ok_or_else(|| GarbageCollectorError::UnknownKind(api_version.into(), kind.into()))?;
        Ok(match (s.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &s.resource),
            _ => Api::all_with(self.client.clone(), &s.resource),
        })
    }

    fn is_absent(&self, uid: &str) -> bool {
        self.absent.lock().expect("absent lock").0.contains(uid)
    }

    fn mark_absent(&self, uid: &str) {
        let mut a = self.absent.lock().expect("absent lock");
        if a.0.insert(uid.to_string()) {
            a.1.push_back(uid.to_string());
        }
        while a.1.len() > ABSENT_CACHE {
            if let Some(old) = a.1.pop_front() {
                a.0.remove(&old);
            }
        }
    }

    /// Decides about one object: delete it if its owners are all gone, drop the
    /// references to gone owners if some remain, or finish a foreground deletion.
    async fn attempt_to_delete_item(
        &self,
        uid: &str,
    ) -> Result<Option<Duration>, GarbageCollectorError> {
        let Some(node) = self.graph.lock().expect("graph lock").node(uid).cloned() else {
            return Ok(None);
        };
        // Being deleted is a one-way trip: its dependents are handled once it is gone.
        if node.deleting && !node.deleting_dependents {
            return Ok(None);
        }
        let id = &node.id;
        let api = self.api_for(&id.api_version, &id.kind, id.namespace.as_deref())?;
        let latest = api.get_metadata_opt(&id.name).await?;
        let latest = match latest {
            Some(o) if o.metadata.uid.as_deref() == Some(uid) => o.metadata,
            _ => {
                // Gone (or replaced by a namesake): the graph forgets it and looks
                // at its dependents.
                self.mark_absent(uid);
                let _ = self
                    .graph_events
                    .send(GraphEvent::VirtualRemoved(id.clone()));
                return Ok(None);
            }
        };
        if node.virtual_ {
            // It exists; its monitor will report it.
            return Ok(None);
        }
        if node.deleting_dependents {
            return self.process_deleting_dependents(&node, &api, &latest).await;
        }
        let refs = latest.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(None);
        }
        let (solid, dangling, waiting) = self.classify(id, &refs).await?;
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(None);
            }
            // Some owners remain: only the references to gone or going ones are dropped.
            let drop: HashSet<&str> = dangling
                .iter()
                .chain(waiting.iter())
                .map(|r| r.uid.as_str())
                .collect();
            let kept: Vec<&OwnerReference> = refs
                .iter()
                .filter(|r| !drop.contains(r.uid.as_str()))
                .collect();
            tracing::debug!("garbage collector: removing gone owners from {id}");
            return self
                .patch_or_retry(&api, &latest, "ownerReferences", json!(kept))
                .await;
        }
        let policy = if !waiting.is_empty() && !node.dependents.is_empty() {
            // An owner waits for this object, which has dependents of its own: delete
            // those first. A dependent that waits for us too would be a cycle: stop
            // blocking on it.
            let cyclic = {
                let g = self.graph.lock().expect("graph lock");
                node.dependents
                    .iter()
                    .any(|d| g.node(d).is_some_and(|d| d.deleting_dependents))
            };
            if cyclic {
                let unblocked: Vec<OwnerReference> = refs
                    .iter()
                    .map(|r| OwnerReference {
                        block_owner_deletion: Some(false),
                        ..r.clone()
                    })
                    .collect();
                self.patch_or_retry(&api, &latest, "ownerReferences", json!(unblocked))
                    .await?;
            }
            PropagationPolicy::Foreground
        } else if has(&latest, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has(&latest, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::debug!("garbage collector: deleting {id} ({policy:?})");
        delete(&api, &id.name, uid, policy).await?;
        Ok(None)
    }

    /// Sorts an object's owner references into solid (the owner exists), dangling
    /// (absent, or a namesake with another uid) and waiting (being deleted in the
    /// foreground), asking the API.
    async fn classify(
        &self,
        id: &ObjectId,
        refs: &[OwnerReference],
    ) -> Result<
        (
            Vec<OwnerReference>,
            Vec<OwnerReference>,
            Vec<OwnerReference>,
        ),
        GarbageCollectorError,
    > {
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in refs {
            if self.is_absent(&r.uid) {
                dangling.push(r.clone());
                continue;
            }
            let api = self.api_for(&r.api_version, &r.kind, id.namespace.as_deref())?;
            match api.get_metadata_opt(&r.name).await? {
                Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                    if o.metadata.deletion_timestamp.is_some() && has(&o.metadata, FOREGROUND) {
                        waiting.push(r.clone());
                    } else {
                        solid.push(r.clone());
                    }
                }
                _ => {
                    self.mark_absent(&r.uid);
                    dangling.push(r.clone());
                }
            }
        }
        Ok((solid, dangling, waiting))
    }

    /// An owner deleting in the foreground: once no dependent blocks it, its
    /// finalizer goes; until then, its blocking dependents are looked at.
    async fn process_deleting_dependents(
        &self,
        node: &graph::Node,
        api: &Api<DynamicObject>,
        latest: &ObjectMeta,
    ) -> Result<Option<Duration>, GarbageCollectorError> {
        let blocking = self
            .graph
            .lock()
            .expect("graph lock")
            .blocking_dependents(&node.id.uid);
        if blocking.is_empty() {
            tracing::debug!("garbage collector: dependents of {} gone", node.id);
            return self.remove_finalizer(api, latest, FOREGROUND).await;
        }
        for (d, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.attempt_to_delete.add(d);
            }
        }
        Ok(None)
    }

    /// An owner deleted with the Orphan policy: its dependents lose their references
    /// to it, then it loses its `orphan` finalizer.
    async fn attempt_to_orphan_item(
        &self,
        uid: &str,
    ) -> Result<Option<Duration>, GarbageCollectorError> {
        let (owner, dependents) = {
            let g = self.graph.lock().expect("graph lock");
            let Some(owner) = g.node(uid).cloned() else {
                return Ok(None);
            };
            let deps: Vec<ObjectId> = owner
                .dependents
                .iter()
                .filter_map(|d| g.node(d).map(|n| n.id.clone()))
                .collect();
            (owner, deps)
        };
        for d in dependents {
            let api = self.api_for(&d.api_version, &d.kind, d.namespace.as_deref())?;
            let Some(o) = api.get_metadata_opt(&d.name).await? else {
                continue;
            };
            if o.metadata.uid.as_deref() != Some(d.uid.as_str()) {
                continue;
            }
            let refs = o.metadata.owner_references.clone().unwrap_or_default();
            if !refs.iter().any(|r| r.uid == uid) {
                continue;
            }
            let kept: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
            patch_metadata_field(&api, &o.metadata, "ownerReferences", json!(kept)).await?;
        }
        let id = &owner.id;
        let api = self.api_for(&id.api_version, &id.kind, id.namespace.as_deref())?;
        let Some(latest) = api.get_metadata_opt(&id.name).await? else {
            return Ok(None);
        };
        if latest.metadata.uid.as_deref() != Some(uid) {
            return Ok(None);
        }
        self.remove_finalizer(&api, &latest.metadata, ORPHAN).await
    }

    async fn remove_finalizer(
        &self,
        api: &Api<DynamicObject>,
        latest: &ObjectMeta,
        finalizer: &str,
    ) -> Result<Option<Duration>, GarbageCollectorError> {
        if !has(latest, finalizer) {
            return Ok(None);
        }
        let left: Vec<&String> = latest
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        self.patch_or_retry(api, latest, "finalizers", json!(left))
            .await
    }

    /// Patches a metadata field; a conflict (the object changed) retries the item.
    async fn patch_or_retry(
        &self,
        api: &Api<DynamicObject>,
        latest: &ObjectMeta,
        field: &str,
        value: serde_json::Value,
    ) -> Result<Option<Duration>, GarbageCollectorError> {
        match patch_metadata_field(api, latest, field, value).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// Deletes an object if it still has `uid`.
async fn delete(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    policy: PropagationPolicy,
) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
