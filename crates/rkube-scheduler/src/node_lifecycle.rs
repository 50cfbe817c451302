//! Node lifecycle: watches kubelet heartbeats (Leases in `kube-node-lease` and the
//! Ready condition's `lastHeartbeatTime`); a node silent for longer than the grace
//! period gets `Ready=Unknown` ("Kubelet stopped posting node status."). Nodes get
//! the `node.kubernetes.io/unreachable` (Ready=Unknown) or `.../not-ready`
//! (Ready=False) taints, NoSchedule and NoExecute, removed again once Ready. Pods on
//! nodes with NoExecute taints are evicted when their tolerations run out
//! (`tolerationSeconds`, counted from the taint's `timeAdded`), at once if they do not
//! tolerate the taint at all. Only those nodes' pods are read, when needed: no watch
//! of every pod in the cluster is kept.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use rkube_api::unmanaged::Unmanaged;
use serde_json::json;
use tokio::sync::Notify;

use crate::events::{EventRecord, EventRecorder};
use crate::informers::{Change, TaskSet, follow};
use crate::plugins::taint_toleration::tolerates;

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Timing of the controller.
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked.
    pub monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is Unknown.
    pub grace_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
        }
    }
}

#[derive(Debug)]
struct NodeHealth {
    node: Arc<Node>,
    /// When (our clock) we last saw the kubelet alive.
    probe: Instant,
    lease_renew: Option<String>,
    heartbeat: Option<String>,
}

/// What eviction needs to know of a pod (not the whole object: there may be many).
#[derive(Debug)]
struct PodEntry {
    namespace: String,
    name: String,
    uid: String,
    tolerations: Vec<Toleration>,
    terminating: bool,
}

impl PodEntry {
    fn new(p: Pod) -> PodEntry {
        PodEntry {
            namespace: p.metadata.namespace.unwrap_or_default(),
            name: p.metadata.name.unwrap_or_default(),
            uid: p.metadata.uid.unwrap_or_default(),
            tolerations: p.spec.and_then(|s| s.tolerations).unwrap_or_default(),
            terminating: p.metadata.deletion_timestamp.is_some(),
        }
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, NodeHealth>,
    /// Lease renew times seen before their node.
    leases: HashMap<String, String>,
    /// Pods of the nodes with NoExecute taints, by node, then uid.
    pods: HashMap<String, HashMap<String, Arc<PodEntry>>>,
    /// Pods we asked to delete and have not yet seen terminating.
    evicting: HashSet<String>,
    /// Per zone: the budget for tainting more nodes NoExecute.
    limiters: HashMap<String, TokenBucket>,
}

/// Of a zone's nodes, the share not Ready from which the zone counts as partly
/// disrupted (upstream's `--unhealthy-zone-threshold`).
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
/// Nodes tainted NoExecute per second in a healthy zone (`--node-eviction-rate`).
const EVICTION_RATE: f64 = 0.1;
/// ... and in a large zone that is partly disrupted (`--secondary-node-eviction-rate`).
const SECONDARY_EVICTION_RATE: f64 = 0.01;
/// A partly disrupted zone of at most this many nodes taints none
/// (`--large-cluster-size-threshold`).
const LARGE_CLUSTER_THRESHOLD: usize = 50;

/// How much of a zone looks down (upstream's zone states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The zone a node is in (region and zone labels; "" when it has neither).
fn zone_of(n: &Node) -> String {
    let label = |k: &str| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_default()
    };
    format!(
        "{}:{}",
        label("topology.kubernetes.io/region"),
        label("topology.kubernetes.io/zone")
    )
}

/// A token bucket holding at most one token (upstream's eviction limiter).
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: 1.0,
            last: now,
        }
    }

    /// Takes a token if one has accrued at `rate` per second.
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    client: Client,
    config: NodeLifecycleConfig,
    events: EventRecorder,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ready_heartbeat(n: &Node) -> Option<String> {
    ready_condition(n).and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()))
}

fn ready_condition(n: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Runs the controller until dropped.
pub async fn run(client: Client, config: NodeLifecycleConfig) {
    let events = EventRecorder::start(client.clone(), "node-controller", "node-controller");
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Notify::new(),
        client: client.clone(),
        config,
        events,
    });
    let mut tasks = TaskSet::default();
    let s = shared.clone();
    tasks.spawn(follow(
        Api::<Unmanaged<Node>>::all(client.clone()),
        watcher::Config::default(),
        move |c| {
            on_node(&s, c);
            async {}
        },
    ));
    let s = shared.clone();
    tasks.spawn(follow(
        Api::<Unmanaged<Lease>>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        watcher::Config::default(),
        move |c| {
            on_lease(&s, c);
            async {}
        },
    ));
    monitor(shared).await;
}

fn observe(h: &mut NodeHealth, lease: Option<&String>) {
    if let Some(l) = lease
        && h.lease_renew.as_ref() != Some(l)
    {
        h.lease_renew = Some(l.clone());
        h.probe = Instant::now();
    }
    let hb = ready_heartbeat(&h.node);
    if hb.is_some() && hb != h.heartbeat {
        h.heartbeat = hb;
        h.probe = Instant::now();
    }
}

fn on_node(shared: &Shared, change: Change<Node>) {
    let mut guard = shared.lock();
    let st = &mut *guard;
    let apply = |st: &mut State, n: Node| {
        let name = n.metadata.name.clone().unwrap_or_default();
        let lease = st.leases.get(&name).cloned();
        let h = st.nodes.entry(name).or_insert_with(|| NodeHealth {
            node: Arc::new(n.clone()),
            // A node (or the controller) just started: give it the full grace period.
            probe: Instant::now(),
            lease_renew: lease.clone(),
            heartbeat: ready_heartbeat(&n),
        });
        h.node = Arc::new(n);
        observe(h, lease.as_ref());
    };
    match change {
        Change::Apply(n) => apply(st, n),
        Change::Delete(n) => {
            st.nodes
                .remove(n.metadata.name.as_deref().unwrap_or_default());
        }
        Change::Replace(all) => {
            let live: HashSet<String> =
                all.iter().filter_map(|n| n.metadata.name.clone()).collect();
            st.nodes.retain(|k, _| live.contains(k));
            for n in all {
                apply(st, n);
            }
        }
    }
    drop(guard);
    shared.changed.notify_one();
}

fn on_lease(shared: &Shared, change: Change<Lease>) {
    let mut st = shared.lock();
    let apply = |st: &mut State, l: Lease| {
        let name = l.metadata.name.clone().unwrap_or_default();
        let Some(renew) = l.spec.and_then(|s| s.renew_time).map(|t| t.0.to_string()) else {
            return;
        };
        if let Some(h) = st.nodes.get_mut(&name) {
            observe(h, Some(&renew));
        }
        st.leases.insert(name, renew);
    };
    match change {
        Change::Apply(l) => apply(&mut st, l),
        Change::Delete(l) => {
            st.leases
                .remove(l.metadata.name.as_deref().unwrap_or_default());
        }
        Change::Replace(all) => {
            for l in all {
                apply(&mut st, l);
            }
        }
    }
}

/// Whether a taint is one this controller sets for the Ready condition.
fn is_ours(t: &Taint) -> bool {
    t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY
}

/// The taints a node should carry for its Ready condition (besides its others);
/// the NoExecute one only if `no_execute`.
fn wanted_taints(ready: Option<&str>, existing: &[Taint], no_execute: bool) -> Vec<Taint> {
    let mut out: Vec<Taint> = existing.iter().filter(|t| !is_ours(t)).cloned().collect();
    let key = match ready {
        Some("True") => return out,
        Some("False") => TAINT_NOT_READY,
        _ => TAINT_UNREACHABLE,
    };
    let effects: &[&str] = if no_execute {
        &["NoSchedule", "NoExecute"]
    } else {
        &["NoSchedule"]
    };
    for &effect in effects {
        // Keep the time a taint was first added: evictions count from it.
        let kept = existing
            .iter()
            .find(|t| t.key == key && t.effect == effect)
            .cloned();
        out.push(kept.unwrap_or_else(|| Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: (effect == "NoExecute").then(|| Time(jiff::Timestamp::now())),
        }));
    }
    out
}

/// When a pod must leave a node with these NoExecute taints: `Some(None)` at once,
/// `Some(Some(t))` at `t`, `None` never. As upstream: a taint no toleration matches
/// evicts at once; otherwise the shortest `tolerationSeconds` among the matching
/// tolerations counts (from when the taint was added), and only tolerations without
/// seconds keep the pod forever.
fn eviction_time(taints: &[Taint], tolerations: &[Toleration]) -> Option<Option<jiff::Timestamp>> {
    let mut seconds: Option<i64> = None;
    let mut since: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(None);
        }
        for s in matching.iter().filter_map(|t| t.toleration_seconds) {
            seconds = Some(seconds.map_or(s, |m| m.min(s)));
        }
        let added = taint
            .time_added
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(jiff::Timestamp::now);
        since = Some(since.map_or(added, |m| m.min(added)));
    }
    let (secs, since) = (seconds?, since?);
    if secs <= 0 {
        return Some(None);
    }
    Some(Some(
        since
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(since),
    ))
}

enum Action {
    MarkUnknown(String),
    SetTaints(Arc<Node>, Vec<Taint>),
    Evict(Arc<PodEntry>),
}

/// Decides what to do now; returns the actions and when to look again.
fn plan(st: &mut State, config: &NodeLifecycleConfig) -> (Vec<Action>, Instant) {
    let now = Instant::now();
    let wall = jiff::Timestamp::now();
    let mut next = now + config.monitor_period;
    let mut actions = Vec::new();
    // As upstream: a zone whose nodes are mostly down loses its nodes to NoExecute
    // taints slowly or not at all, and when every zone is down the control plane
    // itself is the likelier culprit: nothing is evicted and those taints go.
    let mut zones: HashMap<String, (usize, usize)> = HashMap::new();
    for h in st.nodes.values() {
        let counts = zones.entry(zone_of(&h.node)).or_default();
        match ready_condition(&h.node).map(|c| c.status.as_str()) {
            Some("True") => counts.0 += 1,
            _ => counts.1 += 1,
        }
    }
    let states: HashMap<&String, ZoneState> = zones
        .iter()
        .map(|(z, (ready, not_ready))| (z, zone_state(*ready, *not_ready)))
        .collect();
    let all_down = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
    let (nodes, limiters) = (&st.nodes, &mut st.limiters);
    let mut no_execute_allowed = |h: &NodeHealth, taints: &[Taint]| {
        if all_down {
            return false;
        }
        if taints.iter().any(|t| is_ours(t) && t.effect == "NoExecute") {
            return true;
        }
        let zone = zone_of(&h.node);
        let size = zones.get(&zone).map_or(0, |(r, n)| r + n);
        let rate = match states.get(&zone) {
            Some(ZoneState::PartialDisruption) if size <= LARGE_CLUSTER_THRESHOLD => 0.0,
            Some(ZoneState::PartialDisruption) => SECONDARY_EVICTION_RATE,
            _ => EVICTION_RATE,
        };
        rate > 0.0
            && limiters
                .entry(zone)
                .or_insert_with(|| TokenBucket::full(now))
                .take(rate, now)
    };
    for (name, h) in nodes {
        let ready = ready_condition(&h.node).map(|c| c.status.as_str());
        let silent = now.duration_since(h.probe);
        if silent >= config.grace_period && ready != Some("Unknown") {
            actions.push(Action::MarkUnknown(name.clone()));
        } else if silent < config.grace_period {
            next = next.min(h.probe + config.grace_period);
        }
        let taints: &[Taint] = h
            .node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        if ready == Some("True") && !taints.iter().any(|t| is_ours(t) || t.effect == "NoExecute") {
            // The common case: a healthy node without our taints; nothing to do.
            continue;
        }
        let wanted = wanted_taints(ready, taints, no_execute_allowed(h, taints));
        let same = wanted.len() == taints.len()
            && wanted.iter().all(|w| {
                taints
                    .iter()
                    .any(|t| t.key == w.key && t.effect == w.effect)
            });
        if !same {
            actions.push(Action::SetTaints(h.node.clone(), wanted));
        }
        if all_down || !taints.iter().any(|t| t.effect == "NoExecute") {
            continue;
        }
        for pod in st.pods.get(name).into_iter().flat_map(|m| m.values()) {
            if pod.terminating || st.evicting.contains(&pod.uid) {
                continue;
            }
            match eviction_time(taints, &pod.tolerations) {
                None => {}
                Some(None) => actions.push(Action::Evict(pod.clone())),
                Some(Some(at)) if at <= wall => actions.push(Action::Evict(pod.clone())),
                Some(Some(at)) => {
                    let wait = wall.duration_until(at).unsigned_abs();
                    next = next.min(now + wait);
                }
            }
        }
    }
    for a in &actions {
        if let Action::Evict(p) = a {
            st.evicting.insert(p.uid.clone());
        }
    }
    (actions, next)
}

/// Above this many tainted nodes, one list of every bound pod is cheaper than a
/// list per node.
const LIST_PER_NODE_UP_TO: usize = 8;
/// Pods read per request when listing them.
const LIST_PAGE: u32 = 500;

/// The pods on each node with a NoExecute taint, read when needed (a node rarely
/// has one, so no watch of every pod in the cluster is kept for it).
async fn pods_on_tainted_nodes(shared: &Shared) -> HashMap<String, HashMap<String, Arc<PodEntry>>> {
    let tainted: HashSet<String> = shared
        .lock()
        .nodes
        .iter()
        .filter(|(_, h)| {
            h.node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.effect == "NoExecute"))
        })
        .map(|(n, _)| n.clone())
        .collect();
    let selectors: Vec<String> = if tainted.len() > LIST_PER_NODE_UP_TO {
        vec!["spec.nodeName!=".to_string()]
    } else {
        tainted
            .iter()
            .map(|n| format!("spec.nodeName={n}"))
            .collect()
    };
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let mut out: HashMap<String, HashMap<String, Arc<PodEntry>>> = HashMap::new();
    for fields in selectors {
        // In pages: only the small entries are kept, not a whole cluster of pods.
        let mut params = ListParams::default().fields(&fields).limit(LIST_PAGE);
        loop {
            let list = match pods.list(&params).await {
                Ok(list) => list,
                Err(e) => {
                    tracing::debug!(fields = %fields, error = %e, "listing the pods of tainted nodes");
                    break;
                }
            };
            for p in list.items {
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                if tainted.contains(&node) {
                    let e = PodEntry::new(p);
                    out.entry(node)
                        .or_default()
                        .insert(e.uid.clone(), Arc::new(e));
                }
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => params = params.continue_token(&c),
                None => break,
            }
        }
    }
    out
}

async fn monitor(shared: Arc<Shared>) {
    loop {
        let pods = pods_on_tainted_nodes(&shared).await;
        let (actions, next) = {
            let mut st = shared.lock();
            // Evictions in flight end when the pod shows up terminating or gone.
            let pending: HashSet<String> = pods
                .values()
                .flat_map(|m| m.values())
                .filter(|p| !p.terminating)
                .map(|p| p.uid.clone())
                .collect();
            st.evicting.retain(|u| pending.contains(u));
            st.pods = pods;
            plan(&mut st, &shared.config)
        };
        for a in actions {
            act(&shared, a).await;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = shared.changed.notified() => {}
        }
    }
}

async fn act(shared: &Shared, action: Action) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    match action {
        Action::MarkUnknown(name) => {
            let now = jiff::Timestamp::now().to_string();
            let conditions: Vec<serde_json::Value> = CONDITIONS
                .iter()
                .map(|t| {
                    json!({"type": t, "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.", "lastTransitionTime": now})
                })
                .collect();
            let patch = json!({"status": {"conditions": conditions}});
            match nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %name, "node stopped posting status: Ready=Unknown");
                    shared.events.record(EventRecord {
                        regarding: ObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Node".into()),
                            name: Some(name.clone()),
                            uid: Some(name.clone()),
                            ..Default::default()
                        },
                        type_: "Normal",
                        reason: "NodeNotReady".into(),
                        action: "NodeNotReady",
                        message: format!("Node {name} status is now: NodeNotReady"),
                    });
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "marking the node Unknown"),
            }
        }
        Action::SetTaints(node, taints) => {
            let mut n = (*node).clone();
            n.spec.get_or_insert_with(Default::default).taints =
                (!taints.is_empty()).then_some(taints);
            let name = n.metadata.name.clone().unwrap_or_default();
            // A full update: its resourceVersion makes a concurrent change win.
            if let Err(e) = nodes.replace(&name, &PostParams::default(), &n).await {
                tracing::debug!(node = %name, error = %e, "updating taints (retried)");
            }
        }
        Action::Evict(pod) => {
            let (ns, name) = (pod.namespace.as_str(), pod.name.as_str());
            let pods: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
            let cond = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
            let _ = pods
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&cond))
                .await;
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(pod.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(name, &dp).await {
                Ok(_) => shared.events.record(EventRecord {
                    regarding: pod.reference(),
                    type_: "Normal",
                    reason: "TaintManagerEviction".into(),
                    action: "Evicting",
                    message: format!("Marking for deletion Pod {ns}/{name}"),
                }),
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "evicting");
                    shared.lock().evicting.remove(&pod.uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, effect: &str, added: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|t| Time(t.parse().unwrap())),
        }
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let other = taint("dedicated", "NoSchedule", None);
        let t = wanted_taints(Some("Unknown"), std::slice::from_ref(&other), true);
        let keys: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute")
            ]
        );
        assert!(t[2].time_added.is_some());
        let f = wanted_taints(Some("False"), &t, true);
        assert!(
            f.iter().any(|t| t.key == TAINT_NOT_READY)
                && !f.iter().any(|t| t.key == TAINT_UNREACHABLE)
        );
        assert_eq!(wanted_taints(Some("True"), &f, true), vec![other]);
        // An existing taint keeps its timeAdded.
        let again = wanted_taints(Some("Unknown"), &t, true);
        assert_eq!(again[2].time_added, t[2].time_added);
    }

    #[test]
    fn eviction_honours_toleration_seconds() {
        let taints = [taint(
            TAINT_UNREACHABLE,
            "NoExecute",
            Some("2025-01-01T00:00:00Z"),
        )];
        assert_eq!(
            eviction_time(&taints, &[]),
            Some(None),
            "no toleration: at once"
        );
        let five_min = tol(
            json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        );
        assert_eq!(
            eviction_time(&taints, std::slice::from_ref(&five_min)),
            Some(Some("2025-01-01T00:05:00Z".parse().unwrap()))
        );
        let forever = tol(json!({"operator": "Exists"}));
        assert_eq!(
            eviction_time(&taints, &[five_min, forever.clone()]),
            Some(Some("2025-01-01T00:05:00Z".parse().unwrap())),
            "the shortest finite toleration counts"
        );
        assert_eq!(eviction_time(&taints, &[forever]), None);
        assert_eq!(eviction_time(&[taint("x", "NoSchedule", None)], &[]), None);
    }

    /// A node with the given Ready status and taints, in zone "a".
    fn node(name: &str, ready: &str, taints: Vec<Taint>) -> NodeHealth {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "a"}},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap();
        NodeHealth {
            node: Arc::new(n),
            probe: Instant::now(),
            lease_renew: None,
            heartbeat: None,
        }
    }

    /// The nodes `plan` would give a NoExecute taint.
    fn no_execute_planned(st: &mut State) -> Vec<String> {
        let (actions, _) = plan(st, &NodeLifecycleConfig::default());
        let mut out: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::SetTaints(n, t) if t.iter().any(|t| t.effect == "NoExecute") => {
                    n.metadata.name.clone()
                }
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn zones_are_normal_partly_or_fully_disrupted() {
        assert_eq!(zone_state(10, 0), ZoneState::Normal);
        assert_eq!(zone_state(1, 2), ZoneState::Normal, "two down never count");
        assert_eq!(zone_state(4, 5), ZoneState::PartialDisruption);
        assert_eq!(zone_state(5, 4), ZoneState::Normal);
        assert_eq!(zone_state(0, 1), ZoneState::FullDisruption);
    }

    #[test]
    fn no_execute_taints_come_one_at_a_time_and_never_when_every_node_is_down() {
        // Two of ten nodes down: the first is tainted at once, the next waits
        // for the rate limit.
        let mut st = State::default();
        for i in 0..10 {
            let ready = if i < 2 { "Unknown" } else { "True" };
            st.nodes
                .insert(format!("n{i}"), node(&format!("n{i}"), ready, vec![]));
        }
        assert_eq!(no_execute_planned(&mut st).len(), 1);
        assert!(no_execute_planned(&mut st).is_empty());

        // Every node down (the control plane lost them all): no NoExecute taint,
        // and the one already there goes.
        let mut st = State::default();
        let tainted = taint(TAINT_UNREACHABLE, "NoExecute", Some("2025-01-01T00:00:00Z"));
        st.nodes
            .insert("n0".into(), node("n0", "Unknown", vec![tainted]));
        for i in 1..10 {
            st.nodes
                .insert(format!("n{i}"), node(&format!("n{i}"), "Unknown", vec![]));
        }
        assert!(no_execute_planned(&mut st).is_empty());
        let (actions, _) = plan(&mut st, &NodeLifecycleConfig::default());
        assert!(actions.iter().any(|a| matches!(a, Action::SetTaints(n, t)
            if n.metadata.name.as_deref() == Some("n0")
                && t.iter().all(|t| t.effect == "NoSchedule"))));

        // Six of ten down in a small zone (partly disrupted): none tainted.
        let mut st = State::default();
        for i in 0..10 {
            let ready = if i < 6 { "Unknown" } else { "True" };
            st.nodes
                .insert(format!("n{i}"), node(&format!("n{i}"), ready, vec![]));
        }
        assert!(no_execute_planned(&mut st).is_empty());
    }
}
