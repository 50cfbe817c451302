//! The scheduling queue, as upstream's: an active queue ordered by priority then
//! arrival, a backoff queue for pods that failed recently (1s doubling to 10s), and
//! a pool of unschedulable pods that wait for a cluster change that could help them
//! (or five minutes). It also remembers pods nominated to nodes by preemption.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framework::{PluginId, PluginSet};
use crate::pod_info::PodInfo;

/// Timing of retries.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest an unschedulable pod waits without a cluster event.
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        }
    }
}

/// A change in the cluster that may make unschedulable pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    AssignedPodAdd,
    AssignedPodDelete,
    VolumeChange,
    NamespaceChange,
}

impl ClusterEvent {
    /// The plugins whose rejections this event may undo.
    fn helps(self) -> PluginSet {
        use PluginId::*;
        match self {
            // Any node change can help any plugin (labels, taints, room, cordon).
            ClusterEvent::NodeAdd | ClusterEvent::NodeUpdate => PluginSet::of(&[
                NodeUnschedulable,
                NodeName,
                TaintToleration,
                NodeAffinity,
                NodePorts,
                NodeResourcesFit,
                VolumeBinding,
                PodTopologySpread,
                InterPodAffinity,
            ]),
            ClusterEvent::AssignedPodDelete => PluginSet::of(&[
                NodePorts,
                NodeResourcesFit,
                PodTopologySpread,
                InterPodAffinity,
            ]),
            ClusterEvent::AssignedPodAdd => PluginSet::of(&[PodTopologySpread, InterPodAffinity]),
            ClusterEvent::VolumeChange => PluginSet::of(&[VolumeBinding]),
            ClusterEvent::NamespaceChange => PluginSet::of(&[InterPodAffinity]),
        }
    }
}

/// A pod waiting in the queue, with its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    /// When it entered the queue (ordering among equal priorities, latency).
    pub added: Instant,
    /// The plugins that rejected it last time.
    pub unschedulable_plugins: PluginSet,
    /// The scheduling cycle it was popped in.
    pub cycle: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Bumped on each move, so stale heap entries are recognised and skipped.
    seq: u64,
    since: Instant,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    order: u64,
    seq: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.order.cmp(&self.order))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The queue of pods to schedule.
pub struct SchedulingQueue {
    config: QueueConfig,
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// The uids of the unschedulable pods (events look only at these).
    unschedulable: HashSet<String>,
    seq: u64,
    scheduling_cycle: u64,
    /// The cycle during which unschedulable pods were last moved by an event; a pod
    /// that failed in a cycle at or before it goes to backoff rather than waiting.
    move_request_cycle: u64,
    /// Pods nominated to nodes by preemption, by node.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
}

/// Whether an update to a pod can change where it fits (status updates cannot).
fn scheduling_relevant_change(old: &PodInfo, new: &PodInfo) -> bool {
    old.pod.spec != new.pod.spec
        || old.pod.metadata.labels != new.pod.metadata.labels
        || old.pod.metadata.annotations != new.pod.metadata.annotations
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            config,
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashSet::new(),
            seq: 0,
            scheduling_cycle: 0,
            move_request_cycle: 0,
            nominated: HashMap::new(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, uid: &str, now: Instant) {
        let seq = self.next_seq();
        self.unschedulable.remove(uid);
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = Place::Active;
        e.seq = seq;
        e.since = now;
        self.active.push(ActiveKey {
            priority: e.pod.info.priority,
            order: seq,
            seq,
            uid: uid.to_string(),
        });
    }

    fn push_backoff(&mut self, uid: &str, until: Instant, now: Instant) {
        let seq = self.next_seq();
        self.unschedulable.remove(uid);
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = Place::Backoff;
        e.seq = seq;
        e.since = now;
        self.backoff.push(Reverse((until, seq, uid.to_string())));
    }

    /// When the backoff of a pod that failed (for the `attempts`th time) at `failed`
    /// ends: the initial backoff doubled per earlier attempt, capped.
    fn backoff_until(&self, attempts: u32, failed: Instant) -> Instant {
        let mut d = self.config.initial_backoff.min(self.config.max_backoff);
        for _ in 1..attempts {
            d = (d * 2).min(self.config.max_backoff);
        }
        failed + d
    }

    /// A new pod to schedule, or a newer version of a queued one.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let uid = info.uid.clone();
        match self.entries.get_mut(&uid) {
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod: QueuedPod {
                            info,
                            attempts: 0,
                            added: now,
                            unschedulable_plugins: PluginSet::default(),
                            cycle: 0,
                        },
                        place: Place::Active,
                        seq: 0,
                        since: now,
                    },
                );
                self.push_active(&uid, now);
            }
            Some(e) => {
                let relevant = scheduling_relevant_change(&e.pod.info, &info);
                e.pod.info = info;
                if relevant && e.place == Place::Unschedulable {
                    self.push_active(&uid, now);
                }
            }
        }
    }

    /// The pod is gone (deleted, or bound by someone else).
    pub fn delete(&mut self, uid: &str) {
        if self.entries.remove(uid).is_some() {
            self.unschedulable.remove(uid);
        }
        if !self.nominated.is_empty() {
            self.remove_nominated(uid);
        }
    }

    /// Every pod in the queue (for reconciling after a re-list).
    pub fn uids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// The next pod to try, if any is ready.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        while let Some(k) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&k.uid) else {
                continue;
            };
            if e.seq != k.seq || e.place != Place::Active {
                continue;
            }
            self.scheduling_cycle += 1;
            e.place = Place::InFlight;
            e.pod.attempts += 1;
            e.pod.cycle = self.scheduling_cycle;
            return Some(e.pod.clone());
        }
        None
    }

    /// The pod was placed (assumed on a node): it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        if self
            .entries
            .get(uid)
            .is_some_and(|e| e.place == Place::InFlight)
        {
            self.entries.remove(uid);
        }
    }

    /// A pod that fit nowhere. It waits for a helpful event unless one came while it
    /// was being scheduled, in which case it only backs off.
    pub fn add_unschedulable(&mut self, pod: QueuedPod, plugins: PluginSet, now: Instant) {
        let uid = pod.info.uid.clone();
        let Some(e) = self.entries.get_mut(&uid) else {
            return; // deleted meanwhile
        };
        e.pod.attempts = pod.attempts;
        e.pod.unschedulable_plugins = plugins;
        if self.move_request_cycle >= pod.cycle {
            let until = self.backoff_until(pod.attempts, now);
            self.push_backoff(&uid, until, now);
        } else {
            let seq = self.next_seq();
            let e = self.entries.get_mut(&uid).expect("checked above");
            e.place = Place::Unschedulable;
            e.seq = seq;
            e.since = now;
            self.unschedulable.insert(uid);
        }
    }

    /// A pod whose scheduling or binding failed for another reason: retry after backoff.
    pub fn add_backoff(&mut self, pod: QueuedPod, now: Instant) {
        let uid = pod.info.uid.clone();
        let entry = self.entries.entry(uid.clone()).or_insert(Entry {
            pod: pod.clone(),
            place: Place::InFlight,
            seq: 0,
            since: now,
        });
        entry.pod.attempts = pod.attempts.max(entry.pod.attempts);
        let attempts = entry.pod.attempts;
        let until = self.backoff_until(attempts, now);
        self.push_backoff(&uid, until, now);
    }

    /// Moves unschedulable pods that `event` may help to the active (or backoff)
    /// queue. Returns whether any pod moved.
    pub fn on_cluster_event(&mut self, event: ClusterEvent, now: Instant) -> bool {
        self.move_request_cycle = self.scheduling_cycle;
        if self.unschedulable.is_empty() {
            return false;
        }
        let helps = event.helps();
        let movable: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries.get(*uid).is_some_and(|e| {
                    e.pod.unschedulable_plugins.is_empty()
                        || e.pod.unschedulable_plugins.intersects(helps)
                })
            })
            .cloned()
            .collect();
        let moved = !movable.is_empty();
        for uid in movable {
            self.requeue(&uid, now);
        }
        moved
    }

    fn requeue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        // Backoff counts from the failure, which is when it became unschedulable.
        let until = self.backoff_until(e.pod.attempts, e.since);
        if until > now {
            self.push_backoff(uid, until, now);
        } else {
            self.push_active(uid, now);
        }
    }

    /// Moves pods whose backoff ended to the active queue.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.seq == seq && e.place == Place::Backoff)
            {
                self.push_active(&uid, now);
            }
        }
    }

    /// Retries pods that have been unschedulable for too long without an event.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let max = self.config.max_unschedulable;
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries
                    .get(*uid)
                    .is_some_and(|e| now.duration_since(e.since) >= max)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.push_active(&uid, now);
        }
    }

    /// When the next backoff ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Pods waiting, by where they are: (active, backoff, unschedulable).
    pub fn lengths(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Place::Active => n.0 += 1,
                Place::Backoff => n.1 += 1,
                Place::Unschedulable => n.2 += 1,
                Place::InFlight => {}
            }
        }
        n
    }

    /// Records that preemption made room for `pod` on `node`.
    pub fn add_nominated(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_nominated(&pod.uid);
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
    }

    pub fn remove_nominated(&mut self, uid: &str) {
        self.nominated.retain(|_, pods| {
            pods.retain(|p| p.uid != uid);
            !pods.is_empty()
        });
    }

    /// Pods nominated to each node, other than `except`, with at least `priority`.
    pub fn nominated_at_least(
        &self,
        priority: i32,
        except: &str,
    ) -> impl Iterator<Item = (&str, &Arc<PodInfo>)> {
        self.nominated.iter().flat_map(move |(n, pods)| {
            pods.iter()
                .filter(move |p| p.priority >= priority && p.uid != except)
                .map(move |p| (n.as_str(), p))
        })
    }

    /// The node a pod is nominated to, if any.
    pub fn nominated_node(&self, uid: &str) -> Option<&str> {
        self.nominated
            .iter()
            .find(|(_, pods)| pods.iter().any(|p| p.uid == uid))
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name}, "spec": {"priority": priority, "containers": []}}),
        ))
    }

    fn fast() -> QueueConfig {
        QueueConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            max_unschedulable: Duration::from_secs(60),
        }
    }

    #[test]
    fn higher_priority_first_then_arrival() {
        let mut q = SchedulingQueue::new(fast());
        let now = Instant::now();
        q.add_or_update(p("low", 0), now);
        q.add_or_update(p("high", 100), now);
        q.add_or_update(p("low2", 0), now);
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop().map(|p| p.info.name.clone())).collect();
        assert_eq!(order, vec!["high", "low", "low2"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_helpful_event() {
        let mut q = SchedulingQueue::new(fast());
        let now = Instant::now();
        q.add_or_update(p("a", 0), now);
        let popped = q.pop().unwrap();
        q.add_unschedulable(popped, PluginSet::of(&[PluginId::NodeResourcesFit]), now);
        assert_eq!(q.lengths(), (0, 0, 1));
        // A new pod elsewhere does not help a pod short of CPU.
        q.on_cluster_event(ClusterEvent::AssignedPodAdd, now);
        assert_eq!(q.lengths(), (0, 0, 1));
        // A deleted pod does; it backs off first (one attempt: 100ms).
        q.on_cluster_event(ClusterEvent::AssignedPodDelete, now);
        assert_eq!(q.lengths(), (0, 1, 0));
        assert!(q.pop().is_none());
        q.flush_backoff(now + Duration::from_millis(100));
        assert_eq!(q.pop().unwrap().attempts, 2);
    }

    #[test]
    fn an_event_during_the_cycle_means_backoff_not_waiting() {
        let mut q = SchedulingQueue::new(fast());
        let now = Instant::now();
        q.add_or_update(p("a", 0), now);
        let popped = q.pop().unwrap();
        q.on_cluster_event(ClusterEvent::NodeAdd, now);
        q.add_unschedulable(popped, PluginSet::of(&[PluginId::NodeResourcesFit]), now);
        assert_eq!(q.lengths(), (0, 1, 0));
    }

    #[test]
    fn status_updates_do_not_requeue_but_spec_changes_do() {
        let mut q = SchedulingQueue::new(fast());
        let now = Instant::now();
        q.add_or_update(p("a", 0), now);
        let popped = q.pop().unwrap();
        q.add_unschedulable(popped, PluginSet::of(&[PluginId::NodeAffinity]), now);
        let mut with_status = (*p("a", 0)).clone();
        let mut pod = (*with_status.pod).clone();
        pod.status = Some(Default::default());
        with_status.pod = Arc::new(pod);
        q.add_or_update(Arc::new(with_status), now);
        assert_eq!(q.lengths(), (0, 0, 1));
        q.add_or_update(p("a", 5), now);
        assert_eq!(q.lengths(), (1, 0, 0));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let q = SchedulingQueue::new(fast());
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        assert_eq!(q.backoff_until(1, t), ms(100));
        assert_eq!(q.backoff_until(2, t), ms(200));
        assert_eq!(q.backoff_until(3, t), ms(400));
        assert_eq!(q.backoff_until(10, t), ms(400));
    }

    #[test]
    fn nominations() {
        let mut q = SchedulingQueue::new(fast());
        q.add_nominated(p("a", 10), "n1");
        q.add_nominated(p("b", 1), "n1");
        let high: Vec<&str> = q
            .nominated_at_least(5, "x")
            .map(|(_, p)| p.name.as_str())
            .collect();
        assert_eq!(high, vec!["a"]);
        assert_eq!(q.nominated_node("b"), Some("n1"));
        q.remove_nominated("a");
        assert_eq!(q.nominated_at_least(0, "b").count(), 0);
    }
}
