//! InterPodAffinity: required pod affinity (the pod must land in a topology domain
//! with matching pods), required anti-affinity (it must not, and existing pods'
//! anti-affinity must not be broken by it), and preferred terms as scores.

use std::collections::HashMap;

use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, PluginId, ScorePlugin, Status};
use crate::labels::Labels;
use crate::node_info::NodeInfo;
use crate::pod_info::{AffinityTerm, PodInfo};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The weight of existing pods' required affinity terms when scoring (upstream's
/// default `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinity;

/// Counts per topology value, per topology key.
type TopologyCounts = HashMap<String, HashMap<String, i64>>;

fn bump(m: &mut TopologyCounts, key: &str, value: &str, by: i64) {
    *m.entry(key.to_string())
        .or_default()
        .entry(value.to_string())
        .or_default() += by;
}

fn count_on(m: &TopologyCounts, node: &NodeInfo) -> i64 {
    m.iter()
        .filter_map(|(k, values)| node.label(k).and_then(|v| values.get(v)))
        .sum()
}

#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    /// Where existing pods' anti-affinity forbids the incoming pod.
    existing_anti: TopologyCounts,
    /// Per required affinity term: pods matching all the terms, per topology value.
    affinity: Vec<HashMap<String, i64>>,
    /// Per required anti-affinity term: matching pods, per topology value.
    anti: Vec<HashMap<String, i64>>,
    required_affinity: Vec<AffinityTerm>,
    required_anti: Vec<AffinityTerm>,
    namespace_labels: Option<Labels>,
    /// Namespace labels of every namespace (to match existing pods' terms).
    namespaces: HashMap<String, Labels>,
}

impl PreFilterState {
    /// Adds (`by` = 1) or removes (-1) one existing pod's contribution.
    fn account(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, by: i64) {
        if other.uid == pod.uid {
            return;
        }
        let other_ns = self.namespaces.get(&other.namespace);
        if !self.required_affinity.is_empty()
            && self
                .required_affinity
                .iter()
                .all(|t| t.matches(other, other_ns))
        {
            for (i, t) in self.required_affinity.iter().enumerate() {
                if let Some(v) = node.label(&t.topology_key) {
                    *self.affinity[i].entry(v.to_string()).or_default() += by;
                }
            }
        }
        for (i, t) in self.required_anti.iter().enumerate() {
            if let Some(v) = node.label(&t.topology_key)
                && t.matches(other, other_ns)
            {
                *self.anti[i].entry(v.to_string()).or_default() += by;
            }
        }
        for t in &other.required_anti_affinity {
            if let Some(v) = node.label(&t.topology_key)
                && t.matches(pod, self.namespace_labels.as_ref())
            {
                bump(&mut self.existing_anti, &t.topology_key, v, by);
            }
        }
    }
}

impl FilterPlugin for InterPodAffinity {
    fn id(&self) -> PluginId {
        PluginId::InterPodAffinity
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !own_terms && !cache.any_required_anti_affinity() {
            return Ok(());
        }
        let mut st = PreFilterState {
            affinity: vec![HashMap::new(); pod.required_affinity.len()],
            anti: vec![HashMap::new(); pod.required_anti_affinity.len()],
            required_affinity: pod.required_affinity.clone(),
            required_anti: pod.required_anti_affinity.clone(),
            namespace_labels: cache.namespaces.get(&pod.namespace).cloned(),
            namespaces: cache.namespaces.clone(),
            ..Default::default()
        };
        for node in cache.nodes() {
            if !own_terms && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for other in &node.pods {
                st.account(pod, other, node, 1);
            }
        }
        state.inter_pod_affinity = Some(st);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let Some(st) = &state.inter_pod_affinity else {
            return Ok(());
        };
        if !st.required_affinity.is_empty() {
            let values: Option<Vec<&str>> = st
                .required_affinity
                .iter()
                .map(|t| node.label(&t.topology_key))
                .collect();
            let Some(values) = values else {
                return Err(Status::unresolvable(
                    PluginId::InterPodAffinity,
                    REASON_AFFINITY,
                ));
            };
            let satisfied = values
                .iter()
                .enumerate()
                .all(|(i, v)| st.affinity[i].get(*v).copied().unwrap_or(0) > 0);
            // The first pod of a group that selects itself may go anywhere.
            let no_match_anywhere = st.affinity.iter().all(|m| m.values().all(|n| *n <= 0));
            let self_match = st
                .required_affinity
                .iter()
                .all(|t| t.matches(pod, st.namespace_labels.as_ref()));
            if !(satisfied || no_match_anywhere && self_match) {
                return Err(Status::unresolvable(
                    PluginId::InterPodAffinity,
                    REASON_AFFINITY,
                ));
            }
        }
        for (i, t) in st.required_anti.iter().enumerate() {
            if let Some(v) = node.label(&t.topology_key)
                && st.anti[i].get(v).copied().unwrap_or(0) > 0
            {
                return Err(Status::unschedulable(
                    PluginId::InterPodAffinity,
                    REASON_ANTI_AFFINITY,
                ));
            }
        }
        // Checked last, as upstream: the pod's own rules name the reason first.
        if count_on(&st.existing_anti, node) > 0 {
            return Err(Status::unschedulable(
                PluginId::InterPodAffinity,
                REASON_EXISTING_ANTI_AFFINITY,
            ));
        }
        Ok(())
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, victim: &PodInfo, node: &NodeInfo) {
        if let Some(st) = &mut state.inter_pod_affinity {
            st.account(pod, victim, node, -1);
        }
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, victim: &PodInfo, node: &NodeInfo) {
        if let Some(st) = &mut state.inter_pod_affinity {
            st.account(pod, victim, node, 1);
        }
    }
}

/// Score per topology value, per key.
#[derive(Debug, Clone, Default)]
pub struct PreScoreState {
    scores: TopologyCounts,
}

impl ScorePlugin for InterPodAffinity {
    fn id(&self) -> PluginId {
        PluginId::InterPodAffinity
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
        let own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !own && !cache.any_affinity() {
            return;
        }
        let pod_ns = cache.namespaces.get(&pod.namespace);
        let mut scores = TopologyCounts::new();
        for node in cache.nodes() {
            if !own && node.pods_with_affinity == 0 {
                continue;
            }
            for other in &node.pods {
                if other.uid == pod.uid {
                    continue;
                }
                let other_ns = cache.namespaces.get(&other.namespace);
                // The incoming pod's preferences about existing pods.
                for (terms, sign) in [
                    (&pod.preferred_affinity, 1),
                    (&pod.preferred_anti_affinity, -1),
                ] {
                    for t in terms.iter() {
                        if let Some(v) = node.label(&t.topology_key)
                            && t.matches(other, other_ns)
                        {
                            bump(&mut scores, &t.topology_key, v, sign * t.weight);
                        }
                    }
                }
                // Existing pods' preferences (and hard affinity) about the incoming pod.
                let required = other
                    .required_affinity
                    .iter()
                    .map(|t| (t, HARD_POD_AFFINITY_WEIGHT));
                let preferred = other.preferred_affinity.iter().map(|t| (t, t.weight));
                let anti = other.preferred_anti_affinity.iter().map(|t| (t, -t.weight));
                for (t, w) in required.chain(preferred).chain(anti) {
                    if let Some(v) = node.label(&t.topology_key)
                        && t.matches(pod, pod_ns)
                    {
                        bump(&mut scores, &t.topology_key, v, w);
                    }
                }
            }
        }
        if !scores.is_empty() {
            state.inter_pod_affinity_score = Some(PreScoreState { scores });
        }
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        state
            .inter_pod_affinity_score
            .as_ref()
            .map(|s| count_on(&s.scores, node))
            .unwrap_or(0)
    }

    fn normalize(&self, state: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        if state.inter_pod_affinity_score.is_none() {
            return;
        }
        let max = scores.iter().copied().max().unwrap_or(0);
        let min = scores.iter().copied().min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max > min {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            } else {
                0
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

    fn nodes() -> Vec<NodeInfo> {
        ["a", "b", "c"]
            .iter()
            .map(|n| node(json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "zone": if *n == "c" {"z2"} else {"z1"}}}})))
            .collect()
    }

    fn labelled(name: &str, node: &str, app: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"nodeName": node, "containers": []}}),
        )
    }

    fn with_terms(kind: &str, key: &str, app: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": "new", "labels": {"app": "new"}}, "spec": {"containers": [], "affinity": {kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}}),
        )
    }

    fn ok(r: Vec<Result<(), Status>>) -> Vec<bool> {
        r.iter().map(Result::is_ok).collect()
    }

    #[test]
    fn required_affinity_follows_matching_pods() {
        let c = cache(nodes(), vec![labelled("db", "c", "db")]);
        assert_eq!(
            ok(filter_all(
                &InterPodAffinity,
                &with_terms("podAffinity", "zone", "db"),
                &c
            )),
            vec![false, false, true]
        );
        let r = filter_all(
            &InterPodAffinity,
            &with_terms("podAffinity", "zone", "cache"),
            &c,
        );
        assert_eq!(
            r[0],
            Err(Status::unresolvable(
                PluginId::InterPodAffinity,
                REASON_AFFINITY
            ))
        );
        // A pod that matches its own affinity term may start the group anywhere.
        assert_eq!(
            ok(filter_all(
                &InterPodAffinity,
                &with_terms("podAffinity", "zone", "new"),
                &c
            )),
            vec![true, true, true]
        );
    }

    #[test]
    fn required_anti_affinity_both_ways() {
        let c = cache(nodes(), vec![labelled("w1", "a", "web")]);
        let r = filter_all(
            &InterPodAffinity,
            &with_terms("podAntiAffinity", "kubernetes.io/hostname", "web"),
            &c,
        );
        assert_eq!(
            r[0],
            Err(Status::unschedulable(
                PluginId::InterPodAffinity,
                REASON_ANTI_AFFINITY
            ))
        );
        assert_eq!(ok(r), vec![false, true, true]);

        // An existing pod that keeps `app=new` pods out of its zone.
        let mut guard = with_terms("podAntiAffinity", "zone", "new");
        guard.name = "guard".into();
        guard.uid = "guard".into();
        guard.node_name = "a".into();
        let c = cache(nodes(), vec![guard]);
        let plain = labelled("p", "", "new");
        let r = filter_all(&InterPodAffinity, &plain, &c);
        assert_eq!(
            r[1],
            Err(Status::unschedulable(
                PluginId::InterPodAffinity,
                REASON_EXISTING_ANTI_AFFINITY
            ))
        );
        assert_eq!(ok(r), vec![false, false, true]);
    }

    #[test]
    fn preferred_terms_score() {
        let c = cache(
            nodes(),
            vec![labelled("w1", "a", "web"), labelled("w2", "c", "web")],
        );
        let p = pod(
            json!({"metadata": {"name": "new"}, "spec": {"containers": [], "affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5,
                "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
        );
        // a: +10 (z1) -5 (own host) = 5; b: +10; c: +10 -5 = 5.
        assert_eq!(score_all(&InterPodAffinity, &p, &c), vec![0, 100, 0]);
    }
}
