//! PodTopologySpread: `topologySpreadConstraints` keep the number of matching pods in
//! each topology domain (node, zone, ...) within `maxSkew` of the emptiest domain
//! (`DoNotSchedule`: a filter) or prefer the emptier domains (`ScheduleAnyway`: a score).

use std::collections::HashMap;

use super::taint_toleration::untolerated;
use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, PluginId, ScorePlugin, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::{PodInfo, SpreadConstraint};

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub struct PodTopologySpread;

/// Matching pods per domain, for each constraint.
#[derive(Debug, Clone, Default)]
struct Counts {
    constraints: Vec<SpreadConstraint>,
    per_domain: Vec<HashMap<String, i64>>,
}

impl Counts {
    /// Counts over the nodes that are eligible for every constraint.
    fn compute(pod: &PodInfo, constraints: Vec<SpreadConstraint>, cache: &Cache) -> Counts {
        let mut per_domain: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in cache.nodes() {
            if !eligible(pod, &constraints, node) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                let value = node.label(&c.topology_key).unwrap_or_default();
                let n = matching_pods(pod, c, node);
                *per_domain[i].entry(value.to_string()).or_default() += n;
            }
        }
        Counts {
            constraints,
            per_domain,
        }
    }

    fn min(&self, i: usize) -> i64 {
        let c = &self.constraints[i];
        let domains = &self.per_domain[i];
        if (domains.len() as i64) < c.min_domains {
            return 0;
        }
        domains.values().copied().min().unwrap_or(0)
    }

    fn adjust(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != pod.namespace || other.terminating {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if let Some(v) = node.label(&c.topology_key)
                && c.selector.matches(&other.labels)
                && let Some(n) = self.per_domain[i].get_mut(v)
            {
                *n += delta;
            }
        }
    }
}

/// Whether a node counts for spreading: it has every topology key, and (by the
/// constraint's policies) matches the pod's node affinity and has tolerated taints.
fn eligible(pod: &PodInfo, constraints: &[SpreadConstraint], node: &NodeInfo) -> bool {
    if !constraints
        .iter()
        .all(|c| node.labels.contains_key(&c.topology_key))
    {
        return false;
    }
    if constraints.iter().any(|c| c.honor_node_affinity)
        && !pod.matches_node_selector(&node.name, &node.labels)
    {
        return false;
    }
    if constraints.iter().any(|c| c.honor_node_taints)
        && untolerated(&node.taints, &pod.tolerations, &["NoSchedule", "NoExecute"]).is_some()
    {
        return false;
    }
    true
}

fn matching_pods(pod: &PodInfo, c: &SpreadConstraint, node: &NodeInfo) -> i64 {
    node.pods
        .iter()
        .filter(|p| p.namespace == pod.namespace && !p.terminating && c.selector.matches(&p.labels))
        .count() as i64
}

#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    counts: Counts,
    mins: Vec<i64>,
}

impl PreFilterState {
    fn refresh_mins(&mut self) {
        self.mins = (0..self.counts.constraints.len())
            .map(|i| self.counts.min(i))
            .collect();
    }
}

#[derive(Debug, Clone, Default)]
pub struct PreScoreState {
    counts: Counts,
    weights: Vec<f64>,
}

impl FilterPlugin for PodTopologySpread {
    fn id(&self) -> PluginId {
        PluginId::PodTopologySpread
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        let hard: Vec<SpreadConstraint> = pod
            .spread_constraints
            .iter()
            .filter(|c| c.hard)
            .cloned()
            .collect();
        if hard.is_empty() {
            return Ok(());
        }
        let mut st = PreFilterState {
            counts: Counts::compute(pod, hard, cache),
            mins: Vec::new(),
        };
        st.refresh_mins();
        state.topology_spread = Some(st);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let Some(st) = &state.topology_spread else {
            return Ok(());
        };
        for (i, c) in st.counts.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                return Err(Status::unresolvable(
                    PluginId::PodTopologySpread,
                    REASON_MISSING_LABEL,
                ));
            };
            let self_match = i64::from(c.selector.matches(&pod.labels));
            let count = st.counts.per_domain[i].get(value).copied().unwrap_or(0);
            if count + self_match - st.mins[i] > c.max_skew {
                return Err(Status::unschedulable(PluginId::PodTopologySpread, REASON));
            }
        }
        Ok(())
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, victim: &PodInfo, node: &NodeInfo) {
        if let Some(st) = &mut state.topology_spread {
            st.counts.adjust(pod, victim, node, -1);
            st.refresh_mins();
        }
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, victim: &PodInfo, node: &NodeInfo) {
        if let Some(st) = &mut state.topology_spread {
            st.counts.adjust(pod, victim, node, 1);
            st.refresh_mins();
        }
    }
}

impl ScorePlugin for PodTopologySpread {
    fn id(&self) -> PluginId {
        PluginId::PodTopologySpread
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
        let soft: Vec<SpreadConstraint> = pod
            .spread_constraints
            .iter()
            .filter(|c| !c.hard)
            .cloned()
            .collect();
        if soft.is_empty() {
            return;
        }
        let counts = Counts::compute(pod, soft, cache);
        // Constraints over many domains weigh more (upstream: log(domains + 2)).
        let weights = counts
            .per_domain
            .iter()
            .map(|d| ((d.len() + 2) as f64).ln())
            .collect();
        state.topology_spread_score = Some(PreScoreState { counts, weights });
    }

    /// Matching pods in the node's domains, weighted; -1 for nodes lacking a key.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(st) = &state.topology_spread_score else {
            return 0;
        };
        let mut total = 0.0;
        for (i, c) in st.counts.constraints.iter().enumerate() {
            let Some(v) = node.label(&c.topology_key) else {
                return -1;
            };
            let n = st.counts.per_domain[i].get(v).copied().unwrap_or(0);
            total += n as f64 * st.weights[i];
        }
        total.round() as i64
    }

    fn normalize(&self, state: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        if state.topology_spread_score.is_none() {
            return;
        }
        let counted = || scores.iter().copied().filter(|s| *s >= 0);
        let (Some(max), Some(min)) = (counted().max(), counted().min()) else {
            return;
        };
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all, score_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn app_pod(name: &str, node: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"nodeName": node, "containers": []}}),
        )
    }

    fn spreading(when: &str, key: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": "new", "labels": {"app": "web"}}, "spec": {"containers": [],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        )
    }

    fn zones() -> Cache {
        cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {"zone": "z1"}}})),
                node(json!({"metadata": {"name": "b", "labels": {"zone": "z1"}}})),
                node(json!({"metadata": {"name": "c", "labels": {"zone": "z2"}}})),
                node(json!({"metadata": {"name": "d"}})),
            ],
            vec![app_pod("x", "a"), app_pod("y", "b")],
        )
    }

    #[test]
    fn hard_constraints_keep_the_skew() {
        let r = filter_all(
            &PodTopologySpread,
            &spreading("DoNotSchedule", "zone"),
            &zones(),
        );
        assert_eq!(
            r[0],
            Err(Status::unschedulable(PluginId::PodTopologySpread, REASON))
        );
        assert_eq!(
            r[1],
            Err(Status::unschedulable(PluginId::PodTopologySpread, REASON))
        );
        assert_eq!(r[2], Ok(()));
        assert_eq!(
            r[3],
            Err(Status::unresolvable(
                PluginId::PodTopologySpread,
                REASON_MISSING_LABEL
            ))
        );
    }

    #[test]
    fn removing_a_pod_in_the_what_if_changes_the_counts() {
        let c = zones();
        let p = spreading("DoNotSchedule", "zone");
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &p, &c).unwrap();
        let a = c.node("a").unwrap();
        PodTopologySpread.remove_pod(&mut state, &p, &a.pods[0], a);
        // z1 now has 1, z2 0: placing in z1 makes the skew 2.
        assert!(PodTopologySpread.filter(&state, &p, a).is_err());
        let b = c.node("b").unwrap();
        PodTopologySpread.remove_pod(&mut state, &p, &b.pods[0], b);
        assert!(PodTopologySpread.filter(&state, &p, a).is_ok());
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let s = score_all(
            &PodTopologySpread,
            &spreading("ScheduleAnyway", "zone"),
            &zones(),
        );
        assert_eq!(s[3], 0, "a node without the key is ignored");
        assert!(s[2] > s[0] && s[0] == s[1], "{s:?}");
        assert_eq!(s[2], MAX_NODE_SCORE);
    }
}
