//! The scheduler component: watches pods, nodes and volumes into the cache, takes
//! pods off the queue one at a time, places them (assume), and binds them through
//! `pods/binding` in the background, many at once. Pods no node fits get the
//! `PodScheduled=False` condition and a `FailedScheduling` event, and may preempt.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use rkube_api::unmanaged::Unmanaged;
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::cache::Cache;
use crate::events::{EventRecord, EventRecorder, pod_reference};
use crate::framework::PluginSet;
use crate::informers::{Change, TaskSet, follow};
use crate::plugins::volume_binding::SELECTED_NODE;
use crate::pod_info::{DEFAULT_SCHEDULER_NAME, PodInfo};
use crate::preemption::{self, Preemption};
use crate::queue::{ClusterEvent, QueueConfig, QueuedPod, SchedulingQueue};
use crate::schedule_one::{Framework, ScheduleError};

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `spec.schedulerName` this scheduler serves.
    pub scheduler_name: String,
    pub queue: QueueConfig,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// `None`: upstream's adaptive share of nodes to search.
    pub percentage_of_nodes_to_score: Option<usize>,
    /// Named in events as the reporting instance.
    pub identity: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            queue: QueueConfig::default(),
            bind_concurrency: 256,
            percentage_of_nodes_to_score: None,
            identity: "rkube".into(),
        }
    }
}

/// Counters a caller may read (benchmarks, logs).
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub scheduled: AtomicU64,
    pub bound: AtomicU64,
    pub bind_errors: AtomicU64,
    pub unschedulable: AtomicU64,
    pub preemptions: AtomicU64,
}

struct State {
    cache: Cache,
    queue: SchedulingQueue,
    framework: Framework,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    client: Client,
    config: SchedulerConfig,
    events: EventRecorder,
    stats: Arc<SchedulerStats>,
    synced: tokio::sync::watch::Sender<u8>,
}

const SYNCED_NODES: u8 = 1;
const SYNCED_PODS: u8 = 2;

/// How often unschedulable pods are checked for having waited too long.
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(30);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cluster_event(&self, st: &mut State, ev: ClusterEvent) {
        if st.queue.on_cluster_event(ev, Instant::now()) {
            self.wake.notify_one();
        }
    }
}

/// Runs the scheduler until the future is dropped (which stops everything it started).
pub async fn run(client: Client, config: SchedulerConfig) {
    run_with_stats(client, config, Arc::new(SchedulerStats::default())).await
}

/// Like [`run`], counting what it does into `stats`.
pub async fn run_with_stats(client: Client, config: SchedulerConfig, stats: Arc<SchedulerStats>) {
    let mut framework = Framework::default();
    framework.percentage_of_nodes_to_score = config.percentage_of_nodes_to_score;
    let events = EventRecorder::start(client.clone(), DEFAULT_SCHEDULER_NAME, &config.identity);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            cache: Cache::new(),
            queue: SchedulingQueue::new(config.queue.clone()),
            framework,
        }),
        wake: Notify::new(),
        client: client.clone(),
        config,
        events,
        stats,
        synced: tokio::sync::watch::channel(0).0,
    });
    let mut tasks = TaskSet::default();
    let s = shared.clone();
    tasks.spawn(follow(
        Api::<Unmanaged<Pod>>::all(client.clone()),
        watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
        move |c| {
            on_pod(&s, c);
            async {}
        },
    ));
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
        Api::<Unmanaged<Namespace>>::all(client.clone()),
        watcher::Config::default(),
        move |c| {
            on_namespace(&s, c);
            async {}
        },
    ));
    let s = shared.clone();
    tasks.spawn(follow(
        Api::<Unmanaged<PersistentVolumeClaim>>::all(client.clone()),
        watcher::Config::default(),
        move |c| {
            on_volume_object(
                &s,
                c,
                |st| &mut st.cache.claims,
                |o: &PersistentVolumeClaim| {
                    format!(
                        "{}/{}",
                        o.metadata.namespace.as_deref().unwrap_or_default(),
                        o.metadata.name.as_deref().unwrap_or_default()
                    )
                },
            );
            async {}
        },
    ));
    let s = shared.clone();
    tasks.spawn(follow(
        Api::<Unmanaged<PersistentVolume>>::all(client.clone()),
        watcher::Config::default(),
        move |c| {
            on_volume_object(
                &s,
                c,
                |st| &mut st.cache.volumes,
                |o: &PersistentVolume| o.metadata.name.clone().unwrap_or_default(),
            );
            async {}
        },
    ));
    let s = shared.clone();
    tasks.spawn(follow(
        Api::<Unmanaged<StorageClass>>::all(client.clone()),
        watcher::Config::default(),
        move |c| {
            on_volume_object(
                &s,
                c,
                |st| &mut st.cache.storage_classes,
                |o: &StorageClass| o.metadata.name.clone().unwrap_or_default(),
            );
            async {}
        },
    ));
    tasks.spawn(housekeeping(shared.clone()));
    schedule_loop(shared).await;
}

fn on_pod(shared: &Shared, change: Change<Pod>) {
    match change {
        Change::Apply(p) => apply_pod(shared, Arc::new(PodInfo::new(Arc::new(p)))),
        Change::Delete(p) => {
            let uid = p.metadata.uid.unwrap_or_default();
            let mut st = shared.lock();
            st.queue.delete(&uid);
            if st.cache.remove_pod(&uid).is_some() {
                shared.cluster_event(&mut st, ClusterEvent::AssignedPodDelete);
            }
        }
        Change::Replace(pods) => {
            let infos: Vec<Arc<PodInfo>> = pods
                .into_iter()
                .map(|p| Arc::new(PodInfo::new(Arc::new(p))))
                .collect();
            let live: HashSet<&str> = infos.iter().map(|p| p.uid.as_str()).collect();
            {
                let mut st = shared.lock();
                for uid in st.cache.pod_uids() {
                    if !live.contains(uid.as_str()) && !st.cache.is_assumed(&uid) {
                        st.cache.remove_pod(&uid);
                    }
                }
                for uid in st.queue.uids() {
                    if !live.contains(uid.as_str()) {
                        st.queue.delete(&uid);
                    }
                }
            }
            for info in infos {
                apply_pod(shared, info);
            }
            shared.synced.send_modify(|s| *s |= SYNCED_PODS);
            let mut st = shared.lock();
            shared.cluster_event(&mut st, ClusterEvent::AssignedPodDelete);
        }
    }
}

fn apply_pod(shared: &Shared, info: Arc<PodInfo>) {
    let uid = info.uid.clone();
    if !info.node_name.is_empty() {
        // What is kept of a placed pod is made before taking the lock (from the
        // info itself: on_pod made it and holds no other reference).
        let kept = (!info.is_terminal()).then(|| Arc::new(Arc::unwrap_or_clone(info).assigned()));
        let mut st = shared.lock();
        st.queue.delete(&uid);
        match kept {
            None => {
                if st.cache.remove_pod(&uid).is_some() {
                    shared.cluster_event(&mut st, ClusterEvent::AssignedPodDelete);
                }
            }
            Some(kept) => {
                st.cache.add_or_update_bound(kept);
                shared.cluster_event(&mut st, ClusterEvent::AssignedPodAdd);
            }
        }
        return;
    }
    let mut st = shared.lock();
    if st.cache.is_assumed(&uid) {
        return; // our binding is in flight
    }
    if info.terminating
        || info.is_terminal()
        || info.scheduler_name() != shared.config.scheduler_name
        || info.is_gated()
    {
        st.queue.delete(&uid);
        return;
    }
    st.queue.add_or_update(info, Instant::now());
    drop(st);
    shared.wake.notify_one();
}

/// The parts of a node that change where pods fit (not its heartbeats).
fn node_fingerprint(n: &Node) -> impl PartialEq + use<> {
    let spec = n.spec.as_ref();
    (
        n.metadata.labels.clone(),
        spec.and_then(|s| s.taints.clone()),
        spec.and_then(|s| s.unschedulable),
        n.status.as_ref().and_then(|s| s.allocatable.clone()),
    )
}

fn on_node(shared: &Shared, change: Change<Node>) {
    let mut st = shared.lock();
    match change {
        Change::Apply(n) => {
            let name = n.metadata.name.clone().unwrap_or_default();
            let event = match st.cache.node(&name).and_then(|i| i.node.clone()) {
                None => Some(ClusterEvent::NodeAdd),
                Some(old) => (node_fingerprint(&old) != node_fingerprint(&n))
                    .then_some(ClusterEvent::NodeUpdate),
            };
            st.cache.set_node(Arc::new(n));
            if let Some(ev) = event {
                shared.cluster_event(&mut st, ev);
            }
        }
        Change::Delete(n) => st
            .cache
            .remove_node(n.metadata.name.as_deref().unwrap_or_default()),
        Change::Replace(nodes) => {
            let live: HashSet<String> = nodes
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let gone: Vec<String> = st
                .cache
                .nodes()
                .map(|n| n.name.clone())
                .filter(|n| !live.contains(n))
                .collect();
            for n in gone {
                st.cache.remove_node(&n);
            }
            for n in nodes {
                st.cache.set_node(Arc::new(n));
            }
            shared.synced.send_modify(|s| *s |= SYNCED_NODES);
            shared.cluster_event(&mut st, ClusterEvent::NodeAdd);
        }
    }
}

fn on_namespace(shared: &Shared, change: Change<Namespace>) {
    let mut st = shared.lock();
    let labels = |n: &Namespace| n.metadata.labels.clone().unwrap_or_default();
    match change {
        Change::Apply(n) => {
            let name = n.metadata.name.clone().unwrap_or_default();
            st.cache.namespaces.insert(name, labels(&n));
        }
        Change::Delete(n) => {
            st.cache
                .namespaces
                .remove(n.metadata.name.as_deref().unwrap_or_default());
        }
        Change::Replace(all) => {
            st.cache.namespaces = all
                .iter()
                .map(|n| (n.metadata.name.clone().unwrap_or_default(), labels(n)))
                .collect();
        }
    }
    shared.cluster_event(&mut st, ClusterEvent::NamespaceChange);
}

/// Claims, volumes and classes: kept by key, any change may help VolumeBinding.
fn on_volume_object<K>(
    shared: &Shared,
    change: Change<K>,
    map: impl Fn(&mut State) -> &mut std::collections::HashMap<String, Arc<K>>,
    key: impl Fn(&K) -> String,
) {
    let mut st = shared.lock();
    match change {
        Change::Apply(o) => {
            let k = key(&o);
            map(&mut st).insert(k, Arc::new(o));
        }
        Change::Delete(o) => {
            map(&mut st).remove(&key(&o));
        }
        Change::Replace(all) => {
            *map(&mut st) = all.into_iter().map(|o| (key(&o), Arc::new(o))).collect();
        }
    }
    shared.cluster_event(&mut st, ClusterEvent::VolumeChange);
}

/// Expires assumed pods that never showed up bound, and retries pods that waited
/// too long for a helpful event.
async fn housekeeping(shared: Arc<Shared>) {
    let mut last_flush = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = Instant::now();
        let mut st = shared.lock();
        if !st.cache.cleanup_expired(now).is_empty() {
            shared.cluster_event(&mut st, ClusterEvent::AssignedPodDelete);
        }
        if now.duration_since(last_flush) >= UNSCHEDULABLE_FLUSH {
            last_flush = now;
            st.queue.flush_unschedulable(now);
            shared.wake.notify_one();
        }
    }
}

async fn schedule_loop(shared: Arc<Shared>) {
    let mut synced = shared.synced.subscribe();
    if synced
        .wait_for(|s| *s == SYNCED_NODES | SYNCED_PODS)
        .await
        .is_err()
    {
        return;
    }
    tracing::info!("scheduler caches synced; scheduling");
    let permits = Arc::new(Semaphore::new(shared.config.bind_concurrency.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let queued = next_pod(&shared).await;
        schedule_pod(&shared, queued, permit);
    }
}

async fn next_pod(shared: &Shared) -> QueuedPod {
    loop {
        let now = Instant::now();
        let next = {
            let mut st = shared.lock();
            st.queue.flush_backoff(now);
            if let Some(p) = st.queue.pop() {
                return p;
            }
            st.queue.next_backoff()
        };
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What to do after a failed cycle, outside the lock.
struct Failure {
    pod: Arc<PodInfo>,
    message: String,
    nominated: Option<(String, Vec<Arc<PodInfo>>)>,
}

fn schedule_pod(shared: &Arc<Shared>, queued: QueuedPod, permit: OwnedSemaphorePermit) {
    let info = queued.info.clone();
    let now = Instant::now();
    let mut guard = shared.lock();
    let st = &mut *guard;
    let nominated =
        Framework::nominated_requests(st.queue.nominated_at_least(info.priority, &info.uid));
    let nominated_node = st
        .queue
        .nominated_node(&info.uid)
        .map(str::to_string)
        .or_else(|| info.nominated_node.clone());
    match st
        .framework
        .schedule(&info, &st.cache, nominated, nominated_node.as_deref())
    {
        Ok((placement, state)) => {
            st.cache.assume(info.clone(), &placement.node);
            st.queue.done(&info.uid);
            st.queue.remove_nominated(&info.uid);
            drop(guard);
            shared.stats.scheduled.fetch_add(1, Ordering::Relaxed);
            let delayed: Vec<String> = state
                .volume_binding
                .map(|v| v.delayed.into_iter().map(|d| d.name).collect())
                .unwrap_or_default();
            tokio::spawn(bind(
                shared.clone(),
                queued,
                placement.node,
                delayed,
                permit,
            ));
        }
        Err((err, state)) => {
            drop(permit);
            let (plugins, message, nominated) = match err {
                ScheduleError::NoNodes => (PluginSet::default(), err.to_string(), None),
                ScheduleError::Fit(mut fit) => {
                    let nominated = match preemption::preempt(
                        &st.framework,
                        &state,
                        &info,
                        &st.cache,
                        &fit.diagnosis,
                    ) {
                        Preemption::Nominate { node, victims } => {
                            st.queue.add_nominated(info.clone(), &node);
                            Some((node, victims))
                        }
                        Preemption::NotPossible(msg) => {
                            fit.diagnosis.post_filter_msg = Some(msg);
                            None
                        }
                    };
                    (
                        fit.diagnosis.unschedulable_plugins,
                        fit.to_string(),
                        nominated,
                    )
                }
            };
            st.queue.add_unschedulable(queued, plugins, now);
            drop(guard);
            shared.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
            if nominated.is_some() {
                shared.stats.preemptions.fetch_add(1, Ordering::Relaxed);
            }
            tokio::spawn(record_failure(
                shared.clone(),
                Failure {
                    pod: info,
                    message,
                    nominated,
                },
            ));
        }
    }
}

fn pods_api(client: &Client, pod: &PodInfo) -> Api<Pod> {
    Api::namespaced(client.clone(), &pod.namespace)
}

/// Binds an assumed pod; on failure forgets it and queues it for a retry.
async fn bind(
    shared: Arc<Shared>,
    queued: QueuedPod,
    node: String,
    claims: Vec<String>,
    _permit: OwnedSemaphorePermit,
) {
    let pod = queued.info.clone();
    let result = async {
        // VolumeBinding's PreBind: tell provisioners where the pod goes.
        let pvcs: Api<PersistentVolumeClaim> =
            Api::namespaced(shared.client.clone(), &pod.namespace);
        for claim in &claims {
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..Default::default()
            },
        };
        pods_api(&shared.client, &pod)
            .create_subresource::<Binding, serde_json::Value>(
                "binding",
                &pod.name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => {
            shared.lock().cache.finish_binding(&pod.uid, Instant::now());
            shared.stats.bound.fetch_add(1, Ordering::Relaxed);
            shared.events.record(EventRecord {
                regarding: pod_reference(&pod.pod),
                type_: "Normal",
                reason: "Scheduled".into(),
                action: "Binding",
                message: format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                ),
            });
        }
        Err(e) => {
            shared.stats.bind_errors.fetch_add(1, Ordering::Relaxed);
            let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
            let mut st = shared.lock();
            st.cache.forget(&pod.uid);
            if gone {
                // Deleted, or bound by someone else: the watch tells the rest.
                st.queue.delete(&pod.uid);
            } else {
                st.queue.add_backoff(queued, Instant::now());
            }
            shared.cluster_event(&mut st, ClusterEvent::AssignedPodDelete);
            drop(st);
            shared.wake.notify_one();
            tracing::debug!(pod = %pod.key(), error = %e, "binding failed");
            if !gone {
                shared.events.record(EventRecord {
                    regarding: pod_reference(&pod.pod),
                    type_: "Warning",
                    reason: "FailedScheduling".into(),
                    action: "Scheduling",
                    message: format!("Binding rejected: {e}"),
                });
            }
        }
    }
}

/// Whether the pod already shows this unschedulable message (and nomination).
fn condition_unchanged(pod: &Pod, message: &str, nominated: Option<&str>) -> bool {
    let status = pod.status.as_ref();
    let same_nomination = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|s| !s.is_empty())
        == nominated
        || nominated.is_none();
    same_nomination
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref() == Some(message)
            })
}

/// Records why a pod could not be scheduled, and carries out a preemption.
async fn record_failure(shared: Arc<Shared>, f: Failure) {
    let pods = pods_api(&shared.client, &f.pod);
    let nominated_node = f.nominated.as_ref().map(|(n, _)| n.as_str());
    if !condition_unchanged(&f.pod.pod, &f.message, nominated_node) {
        let already_false = f
            .pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False");
        let mut cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": f.message, "lastProbeTime": null});
        if !already_false {
            cond["lastTransitionTime"] = json!(jiff::Timestamp::now().to_string());
        }
        let mut patch = json!({"status": {"conditions": [cond]}});
        if let Some(n) = nominated_node {
            patch["status"]["nominatedNodeName"] = json!(n);
        }
        if let Err(e) = pods
            .patch_status(
                &f.pod.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            tracing::debug!(pod = %f.pod.key(), error = %e, "updating the PodScheduled condition");
        }
    }
    shared.events.record(EventRecord {
        regarding: pod_reference(&f.pod.pod),
        type_: "Warning",
        reason: "FailedScheduling".into(),
        action: "Scheduling",
        message: f.message.clone(),
    });
    let Some((node, victims)) = f.nominated else {
        return;
    };
    for v in victims {
        let api = pods_api(&shared.client, &v);
        let cond = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", shared.config.scheduler_name),
            "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
        let _ = api
            .patch_status(&v.name, &PatchParams::default(), &Patch::Strategic(&cond))
            .await;
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(v.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&v.name, &dp).await {
            Ok(_) => shared.events.record(EventRecord {
                regarding: pod_reference(&v.pod),
                type_: "Normal",
                reason: "Preempted".into(),
                action: "Preempting",
                message: format!("Preempted by pod {} on node {node}", f.pod.uid),
            }),
            Err(e) => tracing::debug!(pod = %v.key(), error = %e, "preempting"),
        }
    }
}
