//! NodeAffinity: `nodeSelector` and required node affinity filter nodes; preferred
//! node affinity terms add their weights to the score of nodes they match.

use crate::framework::{
    CycleState, FilterPlugin, PluginId, ScorePlugin, Status, default_normalize,
};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn id(&self) -> PluginId {
        PluginId::NodeAffinity
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        if pod.matches_node_selector(&node.name, &node.labels) {
            Ok(())
        } else {
            Err(Status::unresolvable(PluginId::NodeAffinity, REASON))
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn id(&self) -> PluginId {
        PluginId::NodeAffinity
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.preferred_node_affinity
            .iter()
            .filter(|(_, term)| term.matches(&node.name, &node.labels))
            .map(|(w, _)| *w)
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all, score_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn nodes() -> crate::cache::Cache {
        cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {"disk": "ssd", "zone": "z1"}}})),
                node(json!({"metadata": {"name": "b", "labels": {"disk": "hdd", "zone": "z2"}}})),
                node(json!({"metadata": {"name": "c", "labels": {"zone": "z2"}}})),
            ],
            vec![],
        )
    }

    #[test]
    fn node_selector_and_required_affinity_filter() {
        let c = nodes();
        let by_selector = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeSelector": {"disk": "ssd"}}}),
        );
        let r = filter_all(&NodeAffinity, &by_selector, &c);
        assert_eq!(r[0], Ok(()));
        assert_eq!(
            r[1],
            Err(Status::unresolvable(PluginId::NodeAffinity, REASON))
        );
        let by_affinity = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]},
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]}}}}}),
        );
        let ok: Vec<bool> = filter_all(&NodeAffinity, &by_affinity, &c)
            .iter()
            .map(Result::is_ok)
            .collect();
        assert_eq!(ok, vec![false, true, true]);
    }

    #[test]
    fn preferred_affinity_scores() {
        let c = nodes();
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}}),
        );
        assert_eq!(score_all(&NodeAffinity, &p, &c), vec![20, 100, 80]);
    }
}
