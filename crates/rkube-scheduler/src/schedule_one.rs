//! One scheduling cycle: PreFilter, Filter over a rotating window of nodes (enough
//! feasible ones, as upstream's `percentageOfNodesToScore`), Score, and the choice of
//! the best node (ties broken at random).

use std::collections::HashMap;
use std::fmt;

use rand::Rng;

use crate::cache::Cache;
use crate::framework::{CycleState, Diagnosis, FilterPlugin, FitError, ScorePlugin, Status};
use crate::node_info::NodeInfo;
use crate::plugins;
use crate::pod_info::PodInfo;
use crate::resources::Resource;

/// Below this many nodes, every node is filtered.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The least share of nodes searched in large clusters.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Why a cycle placed nothing.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// There are no nodes at all.
    NoNodes,
    /// No node fits.
    Fit(FitError),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => write!(f, "no nodes available to schedule pods"),
            ScheduleError::Fit(e) => e.fmt(f),
        }
    }
}

/// Where a cycle placed the pod, and how much it looked.
#[derive(Debug, Clone)]
pub struct Placement {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// The plugins and the cycle's search position.
pub struct Framework {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<Box<dyn ScorePlugin>>,
    /// `None`: upstream's adaptive percentage (50% minus 1% per 125 nodes, at least 5%).
    pub percentage_of_nodes_to_score: Option<usize>,
    next_start: usize,
}

impl Default for Framework {
    fn default() -> Self {
        Framework {
            filters: plugins::default_filters(),
            scores: plugins::default_scores(),
            percentage_of_nodes_to_score: None,
            next_start: 0,
        }
    }
}

impl Framework {
    /// How many feasible nodes are enough to pick from.
    pub fn num_feasible_nodes_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES_TO_FIND {
            return all;
        }
        let pct = self
            .percentage_of_nodes_to_score
            .unwrap_or_else(|| {
                50usize
                    .saturating_sub(all / 125)
                    .max(MIN_FEASIBLE_NODES_PERCENTAGE)
            })
            .clamp(1, 100);
        (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Runs every PreFilter; the first rejection rejects the pod everywhere.
    pub fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        for f in &self.filters {
            f.pre_filter(state, pod, cache)?;
        }
        Ok(())
    }

    /// Runs the filters on one node; the first rejection wins.
    pub fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        for f in &self.filters {
            f.filter(state, pod, node)?;
        }
        Ok(())
    }

    /// Resources of pods nominated (by preemption) to each node with at least the
    /// pod's priority: they keep their room.
    pub fn nominated_requests<'a>(
        pods: impl Iterator<Item = (&'a str, &'a std::sync::Arc<PodInfo>)>,
    ) -> HashMap<String, Resource> {
        let mut out: HashMap<String, Resource> = HashMap::new();
        for (node, p) in pods {
            out.entry(node.to_string()).or_default().add(&p.requests);
        }
        out
    }

    /// Finds the best node for a pod. `nominated_node` (from an earlier preemption)
    /// is tried first and taken if it fits. The cycle's state comes back either way
    /// (the caller reserves or preempts with it), hence its size on both sides.
    #[allow(clippy::result_large_err)]
    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        cache: &Cache,
        nominated: HashMap<String, Resource>,
        nominated_node: Option<&str>,
    ) -> Result<(Placement, CycleState), (ScheduleError, CycleState)> {
        let slots = cache.node_slots();
        let mut state = CycleState {
            nominated,
            ..Default::default()
        };
        if slots.is_empty() {
            return Err((ScheduleError::NoNodes, state));
        }
        let mut diagnosis = Diagnosis::default();
        if let Err(status) = self.pre_filter(&mut state, pod, cache) {
            diagnosis.unschedulable_plugins.insert(status.plugin);
            diagnosis.pre_filter = Some(status);
            let e = FitError {
                num_all_nodes: slots.len(),
                diagnosis,
            };
            return Err((ScheduleError::Fit(e), state));
        }
        if let Some(n) = nominated_node.and_then(|n| cache.node(n))
            && self.filter(&state, pod, n).is_ok()
        {
            let placement = Placement {
                node: n.name.clone(),
                evaluated: 1,
                feasible: 1,
            };
            return Ok((placement, state));
        }

        let want = self.num_feasible_nodes_to_find(slots.len());
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
        let start = self.next_start % slots.len();
        let mut evaluated = 0;
        for i in 0..slots.len() {
            let node = cache.node_at(slots[(start + i) % slots.len()]);
            evaluated += 1;
            match self.filter(&state, pod, node) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Err(status) => diagnosis.reject(&node.name, status),
            }
        }
        self.next_start = (start + evaluated) % slots.len();
        if feasible.is_empty() {
            let e = FitError {
                num_all_nodes: slots.len(),
                diagnosis,
            };
            return Err((ScheduleError::Fit(e), state));
        }
        let node = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            let totals = self.score(&mut state, pod, &feasible, cache);
            select_host(&feasible, &totals)
        };
        let placement = Placement {
            node,
            evaluated,
            feasible: feasible.len(),
        };
        Ok((placement, state))
    }

    /// The weighted sum of every score plugin's normalized score, per node.
    pub fn score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        cache: &Cache,
    ) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for p in &self.scores {
            p.pre_score(state, pod, nodes, cache);
        }
        for p in &self.scores {
            for (s, n) in scores.iter_mut().zip(nodes) {
                *s = p.score(state, pod, n);
            }
            p.normalize(state, nodes, &mut scores);
            let w = p.weight();
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += w * s;
            }
        }
        totals
    }
}

/// The node with the highest score; among equals, one at random (reservoir sampling).
fn select_host(nodes: &[&NodeInfo], totals: &[i64]) -> String {
    let mut rng = rand::rng();
    let mut best = 0;
    let mut ties = 1;
    for i in 1..nodes.len() {
        if totals[i] > totals[best] {
            best = i;
            ties = 1;
        } else if totals[i] == totals[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::cache;
    use crate::pod_info::testing::pod;
    use serde_json::json;

    #[test]
    fn adaptive_share_of_nodes() {
        let f = Framework::default();
        assert_eq!(f.num_feasible_nodes_to_find(50), 50);
        assert_eq!(f.num_feasible_nodes_to_find(1000), 420);
        assert_eq!(f.num_feasible_nodes_to_find(5000), 500);
        assert_eq!(f.num_feasible_nodes_to_find(200), 100);
    }

    #[test]
    fn picks_the_emptier_node_and_rotates_the_window() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![pod(
                json!({"metadata": {"name": "x"}, "spec": {"nodeName": "a", "containers": [
                {"name": "c", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}}),
            )],
        );
        let mut f = Framework::default();
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}]}}));
        for _ in 0..5 {
            let (placed, _) = f.schedule(&p, &c, HashMap::new(), None).unwrap();
            assert_eq!(placed.node, "b");
            assert_eq!(placed.evaluated, 2);
        }
    }

    #[test]
    fn the_unschedulable_message() {
        let c = cache(
            ["a", "b", "c"]
                .iter()
                .map(|n| node(json!({"metadata": {"name": n}})))
                .collect(),
            vec![],
        );
        let p = pod(json!({"metadata": {"name": "big"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": "64"}}}]}}));
        let Err((ScheduleError::Fit(e), _)) =
            Framework::default().schedule(&p, &c, HashMap::new(), None)
        else {
            panic!("should not fit");
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
        let Err((e, _)) = Framework::default().schedule(&p, &Cache::new(), HashMap::new(), None)
        else {
            panic!("no nodes");
        };
        assert_eq!(e.to_string(), "no nodes available to schedule pods");
    }
}
