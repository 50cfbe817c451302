//! The DaemonSet controller: one pod on every node the pod may run on (its
//! nodeSelector, node affinity and the node's taints against its tolerations, with
//! the tolerations upstream adds to every daemon pod), each created with a node
//! affinity to its node for the scheduler to bind; failed pods replaced after a
//! backoff; RollingUpdate within maxUnavailable/maxSurge or OnDelete; template
//! history in ControllerRevisions; the status `kubectl get ds` and `kubectl
//! rollout status` read.

pub mod placement;
pub mod update;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::clock::Clock;
use crate::controller_ref;
use crate::events::EventRecorder;
use crate::expectations::Expectations;
use crate::history::{self, HistoryError};
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{self, object_key, split_key};
use crate::queue::WorkQueue;
use update::{NodeState, limits, plan_node, rolling_update};

/// The first delay before a failed daemon pod is replaced again, doubled per failure.
const FAILED_POD_BACKOFF: Duration = Duration::from_secs(1);
/// The longest delay between replacements of failing pods on one node.
const MAX_FAILED_POD_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Errors of the DaemonSet controller.
#[derive(Debug, thiserror::Error)]
pub enum DaemonSetError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// Writing a ControllerRevision failed.
    #[error(transparent)]
    History(#[from] HistoryError),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

pub struct DaemonSetController {
    client: Client,
    clock: Arc<dyn Clock>,
    sets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Expectations,
    /// Per DaemonSet and node: when a failed pod was last replaced, and the delay.
    backoff: Mutex<HashMap<String, (Timestamp, Duration)>>,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
}

async fn run(ctx: ControllerContext) {
    let sets = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let ctrl = Arc::new(DaemonSetController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        revisions: revisions.clone(),
        expectations: Expectations::new(),
        backoff: Mutex::new(HashMap::new()),
        recorder: ctx.recorder("daemonset-controller"),
        queue: WorkQueue::new(),
    });
    let mut set_changes = sets.subscribe();
    let mut pod_changes = pods.subscribe();
    let mut node_changes = nodes.subscribe();
    let c = ctrl.clone();
    let set_feed = async move {
        while let Some(ch) = set_changes.recv().await {
            match ch {
                Change::Applied { new, .. } => c.queue.add(object_key(new.as_ref())),
                Change::Deleted(s) => {
                    let key = object_key(s.as_ref());
                    c.expectations.forget(&key);
                    c.queue.add(key);
                }
            }
        }
    };
    let c = ctrl.clone();
    let pod_feed = async move {
        while let Some(ch) = pod_changes.recv().await {
            c.on_pod(ch);
        }
    };
    let c = ctrl.clone();
    let node_feed = async move {
        while let Some(ch) = node_changes.recv().await {
            let relevant = match &ch {
                Change::Applied { old: None, .. } | Change::Deleted(_) => true,
                Change::Applied {
                    old: Some(old),
                    new,
                } => {
                    old.metadata.labels != new.metadata.labels
                        || old.spec.as_ref().and_then(|s| s.taints.clone())
                            != new.spec.as_ref().and_then(|s| s.taints.clone())
                }
            };
            if relevant {
                for s in c.sets.list() {
                    c.queue.add(object_key(s.as_ref()));
                }
            }
        }
    };
    sets.synced().await;
    pods.synced().await;
    nodes.synced().await;
    revisions.synced().await;
    let c = ctrl.clone();
    let workers = ctrl.queue.run(ctx.config.workers, "daemonset", move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
    futures::join!(set_feed, pod_feed, node_feed, workers);
}

impl DaemonSetController {
    fn owner_of(&self, pod: &Pod) -> Option<Arc<DaemonSet>> {
        controller_ref::resolve(&self.sets, &pod.metadata)
    }

    fn on_pod(&self, c: Change<Pod>) {
        let (old, new) = match c {
            Change::Applied { old, new } => (old, new),
            Change::Deleted(p) => {
                if let Some(s) = self.owner_of(&p) {
                    let key = object_key(s.as_ref());
                    self.expectations
                        .deletion_observed(&key, &object_key(p.as_ref()));
                    self.queue.add(key);
                }
                return;
            }
        };
        let Some(a) = controller_ref::affected(&self.sets, old.as_deref(), new.as_ref(), |s| {
            s.spec.as_ref().map(|s| &s.selector)
        }) else {
            return;
        };
        for s in a.previous.iter().chain(&a.candidates) {
            self.queue.add(object_key(s.as_ref()));
        }
        if let Some(s) = a.current {
            let key = object_key(s.as_ref());
            let deleting = new.metadata.deletion_timestamp.is_some();
            if deleting {
                self.expectations
                    .deletion_observed(&key, &object_key(new.as_ref()));
            } else if old.is_none() {
                self.expectations.creation_observed(&key);
            }
            self.queue.add(key);
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, DaemonSetError> {
        let (ns, name) = split_key(key);
        let Some(ds) = self.sets.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let selector = match pod_util::selector(Some(&spec.selector)) {
            Ok(s) if !s.is_empty() => s,
            _ => {
                tracing::warn!("daemonset {key}: empty or invalid selector");
                return Ok(None);
            }
        };
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revs = controller_ref::claim(
            &self.client,
            ds.as_ref(),
            self.revisions.list_namespace(ns),
            |r: &ControllerRevision| pod_util::matches(&selector, r.metadata.labels.as_ref()),
        )
        .await?;
        let revs: Vec<ControllerRevision> = revs.iter().map(|r| (**r).clone()).collect();
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let found =
            history::find_or_create(&rev_api, ds.as_ref(), &spec.template, revs, collision).await?;
        let hash = history::hash_of(&found.update);
        // Read before the pods (see the Job controller).
        let satisfied = self.expectations.satisfied(key);
        let pods = controller_ref::claim(
            &self.client,
            ds.as_ref(),
            self.pods
                .list_claimable(ns, ds.metadata.uid.as_deref().unwrap_or_default()),
            |p: &Pod| pod_util::matches(&selector, p.metadata.labels.as_ref()),
        )
        .await?;
        let nodes = self.nodes.list();
        let now = self.clock.now();
        let mut requeue = None;
        let mut result = Ok(false);
        let pass = Pass {
            ds: ds.as_ref(),
            key,
            nodes: &nodes,
            pods: &pods,
            hash: &hash,
            now,
        };
        if satisfied && ds.metadata.deletion_timestamp.is_none() {
            result = self.manage(&pass, &mut requeue).await;
            // The rolling update works from the same listing: only if nothing changed.
            if matches!(result, Ok(false)) {
                result = self.roll(&pass).await;
            }
        }
        let status = status(&ds, &nodes, &pods, &hash, now, found.collision_count);
        if spec.min_ready_seconds.unwrap_or(0) > 0
            && status.number_ready != status.number_available.unwrap_or(0)
        {
            requeue = Some(Duration::from_secs(
                spec.min_ready_seconds.unwrap_or(0) as u64
            ));
        }
        if ds.status.as_ref() != Some(&status) {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            controller_ref::write_status(&api, ds.as_ref(), |d| d.status = Some(status.clone()))
                .await?;
        }
        result?;
        let mut live: HashSet<String> = pods
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get(history::CONTROLLER_REVISION_HASH)
            })
            .map(|h| history::revision_name(name, h))
            .collect();
        live.insert(found.update.metadata.name.clone().unwrap_or_default());
        history::truncate(
            &rev_api,
            &found.all,
            &live,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await?;
        Ok(requeue)
    }

    /// Creates the missing pods and deletes the excess, failed and misplaced ones.
    async fn manage(
        &self,
        pass: &Pass<'_>,
        requeue: &mut Option<Duration>,
    ) -> Result<bool, DaemonSetError> {
        let Pass {
            ds,
            key,
            nodes,
            pods,
            hash,
            now,
        } = *pass;
        let surge = allows_surge(ds);
        let min_ready = min_ready(ds);
        let by_node = node_states(ds, nodes, pods);
        let mut create = Vec::new();
        let mut delete = Vec::new();
        for n in by_node.iter().filter(|n| nodes_has(nodes, &n.name)) {
            let plan = plan_node(n, hash, surge, min_ready, now);
            if plan.create {
                create.push(n.name.clone());
            }
            delete.extend(plan.delete);
            for failed in plan.failed {
                match self.failed_pod_delay(key, &n.name, now) {
                    Some(wait) => {
                        *requeue = Some(requeue.map_or(wait, |r: Duration| r.min(wait)));
                    }
                    None => {
                        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
                        self.recorder.warning(
                            ds,
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {ns}/{failed} on node {}, will try to kill it",
                                n.name
                            ),
                        );
                        delete.push(failed);
                    }
                }
            }
        }
        self.sync_nodes(ds, key, delete, create, hash).await
    }

    /// Whether a failed pod on `node` must wait before being replaced again; starts
    /// the next backoff period when it need not.
    fn failed_pod_delay(&self, key: &str, node: &str, now: Timestamp) -> Option<Duration> {
        let mut b = self.backoff.lock().expect("backoff lock");
        let entry = b.entry(format!("{key}/{node}"));
        match entry {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let (at, delay) = *e.get();
                let since = now.duration_since(at).unsigned_abs();
                if since < delay {
                    return Some(delay - since);
                }
                let next = if since > 2 * MAX_FAILED_POD_BACKOFF {
                    FAILED_POD_BACKOFF
                } else {
                    (delay * 2).min(MAX_FAILED_POD_BACKOFF)
                };
                e.insert((now, next));
                None
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((now, FAILED_POD_BACKOFF));
                None
            }
        }
    }

    async fn roll(&self, pass: &Pass<'_>) -> Result<bool, DaemonSetError> {
        let strategy = pass
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.clone())
            .unwrap_or_default();
        if strategy.type_.as_deref() == Some("OnDelete") {
            return Ok(false);
        }
        let states: Vec<NodeState> = node_states(pass.ds, pass.nodes, pass.pods)
            .into_iter()
            .filter(|n| n.should_run || !n.pods.is_empty())
            .collect();
        let desired = states.iter().filter(|n| n.should_run).count() as i32;
        let ru = strategy.rolling_update.unwrap_or_default();
        let (surge, unavailable) =
            limits(ru.max_surge.as_ref(), ru.max_unavailable.as_ref(), desired);
        let min_ready = min_ready(pass.ds);
        let plan = rolling_update(&states, pass.hash, surge, unavailable, min_ready, pass.now);
        self.sync_nodes(pass.ds, pass.key, plan.delete, plan.create_on, pass.hash)
            .await
    }

    /// Creates a pod on each of `create` and deletes the pods named in `delete`;
    /// whether there was anything to do.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        mut delete: Vec<String>,
        create: Vec<String>,
        hash: &str,
    ) -> Result<bool, DaemonSetError> {
        delete.sort();
        delete.dedup();
        if create.is_empty() && delete.is_empty() {
            return Ok(false);
        }
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut first_err: Option<kube::Error> = None;
        self.expectations.expect(
            key,
            create.len(),
            delete.iter().map(|n| format!("{ns}/{n}")),
        );
        if !create.is_empty() {
            let results = join_all(create.iter().map(|node| {
                let (api, pod) = (api.clone(), placement::new_pod(ds, node, hash));
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            for r in results {
                match r {
                    Ok(p) => self.recorder.normal(
                        ds,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        self.recorder.warning(
                            ds,
                            "FailedCreate",
                            format!("Error creating: {}", crate::api_error::message(&e)),
                        );
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if !delete.is_empty() {
            let results = join_all(delete.iter().map(|n| {
                let api = api.clone();
                async move { (n, api.delete(n, &DeleteParams::default()).await) }
            }))
            .await;
            for (n, r) in results {
                match r {
                    Ok(_) => {
                        self.recorder
                            .normal(ds, "SuccessfulDelete", format!("Deleted pod: {n}"))
                    }
                    Err(e) => {
                        self.expectations
                            .deletion_observed(key, &format!("{ns}/{n}"));
                        if !crate::api_error::is_not_found(&e) {
                            self.recorder.warning(
                                ds,
                                "FailedDelete",
                                format!("Error deleting: {}", crate::api_error::message(&e)),
                            );
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(true),
        }
    }
}

/// What one sync works from.
#[derive(Clone, Copy)]
struct Pass<'a> {
    ds: &'a DaemonSet,
    key: &'a str,
    nodes: &'a [Arc<Node>],
    pods: &'a [Arc<Pod>],
    hash: &'a str,
    now: Timestamp,
}

fn nodes_has(nodes: &[Arc<Node>], name: &str) -> bool {
    nodes
        .iter()
        .any(|n| n.metadata.name.as_deref() == Some(name))
}

fn min_ready(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Whether the rolling update may surge (start a new pod beside the old one).
fn allows_surge(ds: &DaemonSet) -> bool {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return false;
    }
    let surge = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_surge.as_ref());
    // Any positive surge, as a number or a percentage, allows it.
    crate::deployment::util::scaled(surge, 100, true) > 0
}

/// Every node with what it should run, plus the daemon pods aimed at it; nodes
/// that are gone appear with their pods (to count them misscheduled).
fn node_states<'a>(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &'a [Arc<Pod>],
) -> Vec<NodeState<'a>> {
    let mut by_node: BTreeMap<String, Vec<&'a Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(n) = placement::target_node(p) {
            by_node.entry(n).or_default().push(p.as_ref());
        }
    }
    let mut states = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (should_run, should_continue) = placement::should_run(node, ds);
        states.push(NodeState {
            pods: by_node.remove(&name).unwrap_or_default(),
            name,
            should_run,
            should_continue,
        });
    }
    for (name, pods) in by_node {
        states.push(NodeState {
            name,
            should_run: false,
            should_continue: false,
            pods,
        });
    }
    states
}

/// The status from the nodes and the pods on them.
fn status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
    collision_count: Option<i32>,
) -> DaemonSetStatus {
    let min_ready = min_ready(ds);
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count,
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    for n in node_states(ds, nodes, pods)
        .into_iter()
        .filter(|n| nodes_has(nodes, &n.name))
    {
        let scheduled = !n.pods.is_empty();
        if !n.should_run {
            if scheduled {
                s.number_misscheduled += 1;
            }
            continue;
        }
        s.desired_number_scheduled += 1;
        if !scheduled {
            continue;
        }
        s.current_number_scheduled += 1;
        let mut on_node = n.pods.clone();
        // Oldest first, running before others, as upstream picks the pod to count.
        on_node.sort_by_key(|p| {
            (
                pod_util::phase(p) != "Running",
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        let pod = on_node[0];
        if pod_util::is_ready(pod) {
            s.number_ready += 1;
            if pod_util::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if placement::is_updated(pod, hash) {
            updated += 1;
        }
    }
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(updated);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s
}
