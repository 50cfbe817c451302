//! SelectorSpread: spreads the pods of one controller (ReplicaSet, StatefulSet, Job)
//! across nodes and zones, for pods without spread constraints of their own — the
//! job upstream's default topology spread constraints do.

use std::collections::HashMap;

use crate::cache::Cache;
use crate::framework::{CycleState, MAX_NODE_SCORE, PluginId, ScorePlugin};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How much the zone counts against the node (upstream's old `zoneWeighting`).
const ZONE_WEIGHT: f64 = 2.0 / 3.0;

pub struct SelectorSpread;

#[derive(Debug, Clone, Default)]
pub struct PreScoreState {
    controller: u64,
    /// The controller's pods per zone, when nodes have zones.
    zones: HashMap<String, i64>,
}

impl ScorePlugin for SelectorSpread {
    fn id(&self) -> PluginId {
        PluginId::SelectorSpread
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _feasible: &[&NodeInfo],
        cache: &Cache,
    ) {
        if !pod.spread_constraints.is_empty() {
            return;
        }
        let Some(controller) = pod.controller_key else {
            return;
        };
        // Zones holding none of the controller's pods count 0, as absent ones do.
        let mut zones: HashMap<String, i64> = HashMap::new();
        for n in cache.nodes() {
            let Some(z) = &n.zone else { continue };
            let count = i64::from(n.controller_pods(controller));
            if count == 0 {
                continue;
            }
            match zones.get_mut(z) {
                Some(c) => *c += count,
                None => {
                    zones.insert(z.clone(), count);
                }
            }
        }
        state.selector_spread_score = Some(PreScoreState { controller, zones });
    }

    /// The controller's pods on the node (fewer is better).
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(st) = &state.selector_spread_score else {
            return 0;
        };
        i64::from(node.controller_pods(st.controller))
    }

    fn normalize(&self, state: &CycleState, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Some(st) = &state.selector_spread_score else {
            return;
        };
        let reversed = |count: i64, max: i64| -> f64 {
            if max == 0 {
                MAX_NODE_SCORE as f64
            } else {
                (MAX_NODE_SCORE * (max - count)) as f64 / max as f64
            }
        };
        let max = scores.iter().copied().max().unwrap_or(0);
        let max_zone = st.zones.values().copied().max().unwrap_or(0);
        for (node, s) in nodes.iter().zip(scores.iter_mut()) {
            let mut v = reversed(*s, max);
            if let Some(zone) = &node.zone {
                let z = st.zones.get(zone).copied().unwrap_or(0);
                v = v * (1.0 - ZONE_WEIGHT) + reversed(z, max_zone) * ZONE_WEIGHT;
            }
            *s = v.round() as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, score_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn owned(name: &str, node: &str, owner: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": true}]},
            "spec": {"nodeName": node, "containers": []}}))
    }

    #[test]
    fn a_controllers_pods_spread_over_nodes() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
                node(json!({"metadata": {"name": "c"}})),
            ],
            vec![
                owned("x1", "a", "rs1"),
                owned("x2", "a", "rs1"),
                owned("x3", "b", "rs1"),
                owned("y", "c", "rs2"),
            ],
        );
        assert_eq!(
            score_all(&SelectorSpread, &owned("new", "", "rs1"), &c),
            vec![0, 50, 100]
        );
        let zoned = cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {ZONE_LABEL: "z1"}}})),
                node(json!({"metadata": {"name": "b", "labels": {ZONE_LABEL: "z1"}}})),
                node(json!({"metadata": {"name": "c", "labels": {ZONE_LABEL: "z2"}}})),
            ],
            vec![owned("x1", "a", "rs1")],
        );
        // b is empty but shares a's zone: c, alone in an empty zone, wins.
        assert_eq!(
            score_all(&SelectorSpread, &owned("new", "", "rs1"), &zoned),
            vec![0, 33, 100]
        );
        let bare = pod(json!({"metadata": {"name": "bare"}, "spec": {"containers": []}}));
        assert_eq!(
            score_all(&SelectorSpread, &bare, &c),
            vec![0, 0, 0],
            "no controller, no opinion"
        );
    }
}
