//! NodeResourcesBalancedAllocation: prefers nodes where CPU and memory would be used
//! in the same proportion after placing the pod.

use crate::framework::{CycleState, MAX_NODE_SCORE, PluginId, ScorePlugin};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub struct BalancedAllocation;

fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        return 1.0;
    }
    (requested as f64 / capacity as f64).min(1.0)
}

impl ScorePlugin for BalancedAllocation {
    fn id(&self) -> PluginId {
        PluginId::NodeResourcesBalancedAllocation
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = fraction(
            node.non_zero_cpu + pod.non_zero_cpu,
            node.allocatable.milli_cpu,
        );
        let mem = fraction(
            node.non_zero_memory + pod.non_zero_memory,
            node.allocatable.memory,
        );
        // The standard deviation of two values is half their distance.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, score_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    #[test]
    fn balanced_nodes_score_higher() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![pod(
                json!({"metadata": {"name": "x"}, "spec": {"nodeName": "a", "containers": [
                {"name": "c", "image": "i", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]}}),
            )],
        );
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}));
        let s = score_all(&BalancedAllocation, &p, &c);
        // a: cpu 4/4 = 1.0, mem 3/8 = .375 -> 68; b: .25 and .25 -> 100.
        assert_eq!(s, vec![68, 100]);
    }
}
