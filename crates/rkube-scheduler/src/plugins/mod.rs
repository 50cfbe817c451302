//! The scheduling plugins, one module each, named as upstream names them.

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod selector_spread;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::{FilterPlugin, ScorePlugin};

/// The filters, in upstream's default order (cheap and decisive ones first).
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(volume_binding::VolumeBinding),
        Box::new(pod_topology_spread::PodTopologySpread),
        Box::new(inter_pod_affinity::InterPodAffinity),
    ]
}

/// The scores with upstream's default weights.
pub fn default_scores() -> Vec<Box<dyn ScorePlugin>> {
    vec![
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(balanced_allocation::BalancedAllocation),
        Box::new(pod_topology_spread::PodTopologySpread),
        Box::new(inter_pod_affinity::InterPodAffinity),
        Box::new(selector_spread::SelectorSpread),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Running one plugin the way the scheduling cycle does.
    use crate::cache::Cache;
    use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
    use crate::node_info::NodeInfo;
    use crate::pod_info::PodInfo;

    /// PreFilter then Filter for each node of the cache, in order.
    pub fn filter_all(
        p: &dyn FilterPlugin,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Vec<Result<(), Status>> {
        let mut state = CycleState::default();
        if let Err(s) = p.pre_filter(&mut state, pod, cache) {
            return cache.nodes().map(|_| Err(s.clone())).collect();
        }
        cache.nodes().map(|n| p.filter(&state, pod, n)).collect()
    }

    /// PreScore, Score and NormalizeScore over every node of the cache.
    pub fn score_all(p: &dyn ScorePlugin, pod: &PodInfo, cache: &Cache) -> Vec<i64> {
        let mut state = CycleState::default();
        let nodes: Vec<&NodeInfo> = cache.nodes().collect();
        p.pre_score(&mut state, pod, &nodes, cache);
        let mut scores: Vec<i64> = nodes.iter().map(|n| p.score(&state, pod, n)).collect();
        p.normalize(&state, &nodes, &mut scores);
        scores
    }

    /// A cache holding these nodes and pods (pods go to their `spec.nodeName`).
    pub fn cache(nodes: Vec<NodeInfo>, pods: Vec<PodInfo>) -> Cache {
        let mut c = Cache::new();
        for n in nodes {
            c.set_node(n.node.expect("a node object"));
        }
        for p in pods {
            c.add_or_update_bound(std::sync::Arc::new(p));
        }
        c
    }
}
