//! The plugin framework: filter and score extension points, per-cycle state, and the
//! diagnosis of a pod no node fits (upstream's `FitError` and its message).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::cache::Cache;
use crate::node_info::NodeInfo;
use crate::plugins;
use crate::pod_info::PodInfo;
use crate::resources::Resource;

/// The highest score a score plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// The plugins, by their upstream names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginId {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    VolumeBinding,
    PodTopologySpread,
    InterPodAffinity,
    NodeResourcesBalancedAllocation,
    SelectorSpread,
    DefaultPreemption,
}

impl PluginId {
    pub fn name(self) -> &'static str {
        match self {
            PluginId::NodeUnschedulable => "NodeUnschedulable",
            PluginId::NodeName => "NodeName",
            PluginId::TaintToleration => "TaintToleration",
            PluginId::NodeAffinity => "NodeAffinity",
            PluginId::NodePorts => "NodePorts",
            PluginId::NodeResourcesFit => "NodeResourcesFit",
            PluginId::VolumeBinding => "VolumeBinding",
            PluginId::PodTopologySpread => "PodTopologySpread",
            PluginId::InterPodAffinity => "InterPodAffinity",
            PluginId::NodeResourcesBalancedAllocation => "NodeResourcesBalancedAllocation",
            PluginId::SelectorSpread => "SelectorSpread",
            PluginId::DefaultPreemption => "DefaultPreemption",
        }
    }
}

/// A set of plugins (which rejected a pod), as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginSet(u32);

impl PluginSet {
    pub fn insert(&mut self, p: PluginId) {
        self.0 |= 1 << p as u32;
    }

    pub fn contains(self, p: PluginId) -> bool {
        self.0 & (1 << p as u32) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersects(self, other: PluginSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn of(ids: &[PluginId]) -> PluginSet {
        let mut s = PluginSet::default();
        for i in ids {
            s.insert(*i);
        }
        s
    }
}

/// Why a node (or every node) cannot take the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The node could take the pod if some pods left it (preemption may help).
    Unschedulable,
    /// Removing pods would not help (labels, taints, node name, volume topology).
    UnschedulableAndUnresolvable,
}

/// A plugin's rejection, with upstream's reason strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub plugin: PluginId,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Status {
    pub fn unschedulable(plugin: PluginId, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code: Code::Unschedulable,
            plugin,
            reasons: vec![reason.into()],
        }
    }

    pub fn unresolvable(plugin: PluginId, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            plugin,
            reasons: vec![reason.into()],
        }
    }
}

/// What a plugin's PreFilter learned about a pod for this cycle. One field per
/// stateful plugin: the plugins are fixed at build time, so no type erasure.
#[derive(Debug, Clone, Default)]
pub struct CycleState {
    pub inter_pod_affinity: Option<plugins::inter_pod_affinity::PreFilterState>,
    pub topology_spread: Option<plugins::pod_topology_spread::PreFilterState>,
    pub volume_binding: Option<plugins::volume_binding::PreFilterState>,
    pub inter_pod_affinity_score: Option<plugins::inter_pod_affinity::PreScoreState>,
    pub topology_spread_score: Option<plugins::pod_topology_spread::PreScoreState>,
    pub selector_spread_score: Option<plugins::selector_spread::PreScoreState>,
    /// Resources of higher-or-equal priority pods nominated to each node (they will
    /// take the room preemption made for them).
    pub nominated: HashMap<String, Resource>,
}

/// The Filter extension point (with its PreFilter).
pub trait FilterPlugin: Send + Sync {
    fn id(&self) -> PluginId;

    /// Runs once per scheduling cycle; an error rejects the pod for every node.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _cache: &Cache,
    ) -> Result<(), Status> {
        Ok(())
    }

    /// Whether the node can take the pod.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status>;

    /// Preemption's what-if: `victim` is taken off `node`; adjust the PreFilter state.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _victim: &PodInfo,
        _node: &NodeInfo,
    ) {
    }

    /// Preemption's what-if: `victim` is put back on `node`; adjust the PreFilter state.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _victim: &PodInfo,
        _node: &NodeInfo,
    ) {
    }
}

/// The Score extension point (with its PreScore and NormalizeScore).
pub trait ScorePlugin: Send + Sync {
    fn id(&self) -> PluginId;

    fn weight(&self) -> i64;

    /// Runs once per cycle over the nodes that passed the filters.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _cache: &Cache,
    ) {
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Maps raw scores (one per node of `nodes`) onto `0..=MAX_NODE_SCORE`.
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// Scales scores so the highest becomes `MAX_NODE_SCORE` (and reverses them if asked:
/// then the lowest raw score is the best).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Why no node fits a pod.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Each rejected node with the status that rejected it.
    pub node_status: Vec<(String, Status)>,
    /// A PreFilter rejection (applies to every node).
    pub pre_filter: Option<Status>,
    /// What preemption said, e.g. `preemption: 0/3 nodes are available: ...`.
    pub post_filter_msg: Option<String>,
    pub unschedulable_plugins: PluginSet,
}

impl Diagnosis {
    pub fn reject(&mut self, node: &str, status: Status) {
        self.unschedulable_plugins.insert(status.plugin);
        self.node_status.push((node.to_string(), status));
    }
}

/// A pod no node fits; its `Display` is upstream's message.
#[derive(Debug, Clone)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

/// Counts reasons and lists them sorted as text, as upstream (`3 Insufficient cpu`).
pub fn reason_histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut lines: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    lines.sort();
    lines.join(", ")
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(pre) = &self.diagnosis.pre_filter {
            let msg: Vec<&str> = pre.reasons.iter().map(|r| r.as_ref()).collect();
            write!(f, " {}.", msg.join(", "))?;
        } else {
            let hist = reason_histogram(
                self.diagnosis
                    .node_status
                    .iter()
                    .flat_map(|(_, s)| s.reasons.iter().map(|r| r.as_ref())),
            );
            if !hist.is_empty() {
                write!(f, " {hist}.")?;
            }
        }
        if let Some(post) = &self.diagnosis.post_filter_msg {
            write!(f, " {post}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_message_matches_upstream() {
        let mut d = Diagnosis::default();
        for n in ["a", "b", "c"] {
            d.reject(
                n,
                Status::unschedulable(PluginId::NodeResourcesFit, "Insufficient cpu"),
            );
        }
        d.post_filter_msg = Some(
            "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
                .into(),
        );
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: d,
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn histogram_is_sorted_text() {
        let reasons = [
            "node(s) were unschedulable",
            "Insufficient cpu",
            "Insufficient memory",
            "Insufficient cpu",
        ];
        assert_eq!(
            reason_histogram(reasons.into_iter()),
            "1 Insufficient memory, 1 node(s) were unschedulable, 2 Insufficient cpu"
        );
    }

    #[test]
    fn prefilter_rejection_names_no_histogram() {
        let d = Diagnosis {
            pre_filter: Some(Status::unresolvable(
                PluginId::VolumeBinding,
                "persistentvolumeclaim \"data\" not found",
            )),
            ..Default::default()
        };
        let e = FitError {
            num_all_nodes: 2,
            diagnosis: d,
        };
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: persistentvolumeclaim \"data\" not found."
        );
    }

    #[test]
    fn normalizing() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
    }
}
