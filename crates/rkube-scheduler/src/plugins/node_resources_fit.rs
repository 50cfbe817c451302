//! NodeResourcesFit: the pod's requests must fit in what the node has left
//! (allocatable minus the requests of its pods, bound or assumed, and of pods
//! nominated there by preemption); scores favour the least allocated nodes.

use std::borrow::Cow;

use crate::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, PluginId, ScorePlugin, Status,
};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::resources::Resource;

pub struct NodeResourcesFit;

/// The reasons a pod does not fit, empty when it does. `extra` is requested on top
/// of the node's pods (nominated pods).
pub fn insufficient(
    pod: &Resource,
    node: &NodeInfo,
    extra: Option<&Resource>,
) -> Vec<Cow<'static, str>> {
    let mut used = node.requested.clone();
    if let Some(e) = extra {
        used.add(e);
    }
    let alloc = &node.allocatable;
    let mut out = Vec::new();
    if used.pods + pod.pods > alloc.pods {
        out.push(Cow::Borrowed("Too many pods"));
    }
    if pod.milli_cpu == 0
        && pod.memory == 0
        && pod.ephemeral_storage == 0
        && pod.scalar.iter().all(|(_, v)| *v == 0)
    {
        return out;
    }
    if pod.milli_cpu > 0 && pod.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        out.push(Cow::Borrowed("Insufficient cpu"));
    }
    if pod.memory > 0 && pod.memory > alloc.memory - used.memory {
        out.push(Cow::Borrowed("Insufficient memory"));
    }
    if pod.ephemeral_storage > 0
        && pod.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        out.push(Cow::Borrowed("Insufficient ephemeral-storage"));
    }
    for (name, v) in &pod.scalar {
        if *v > 0 && *v > alloc.scalar(name) - used.scalar(name) {
            out.push(Cow::Owned(format!("Insufficient {name}")));
        }
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn id(&self) -> PluginId {
        PluginId::NodeResourcesFit
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let reasons = insufficient(&pod.requests, node, state.nominated.get(&node.name));
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Status {
                code: Code::Unschedulable,
                plugin: PluginId::NodeResourcesFit,
                reasons,
            })
        }
    }
}

/// The share of a resource left free after placing the pod, out of 100.
fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl ScorePlugin for NodeResourcesFit {
    fn id(&self) -> PluginId {
        PluginId::NodeResourcesFit
    }

    fn weight(&self) -> i64 {
        1
    }

    /// LeastAllocated over CPU and memory, weighted equally.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_allocated(
            node.non_zero_cpu + pod.non_zero_cpu,
            node.allocatable.milli_cpu,
        );
        let mem = least_allocated(
            node.non_zero_memory + pod.non_zero_memory,
            node.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all, score_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn requesting(name: &str, node: &str, cpu: &str, mem: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
        )
    }

    #[test]
    fn requests_against_what_is_left() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
                node(json!({"metadata": {"name": "c"}, "status": {"allocatable": {"pods": "1"}}})),
            ],
            vec![
                requesting("x", "a", "3", "1Gi"),
                requesting("y", "c", "1m", "1"),
            ],
        );
        let r = filter_all(&NodeResourcesFit, &requesting("p", "", "2", "8Gi"), &c);
        assert_eq!(
            r[0].as_ref().unwrap_err().reasons,
            vec!["Insufficient cpu", "Insufficient memory"]
        );
        assert_eq!(r[1], Ok(()));
        assert_eq!(
            r[2].as_ref().unwrap_err().reasons,
            vec!["Too many pods", "Insufficient memory"]
        );
        let huge = filter_all(&NodeResourcesFit, &requesting("p", "", "5", "1"), &c);
        assert!(huge.iter().all(|r| {
            r.as_ref()
                .unwrap_err()
                .reasons
                .contains(&Cow::Borrowed("Insufficient cpu"))
        }));
    }

    #[test]
    fn nominated_pods_hold_their_room() {
        let c = cache(vec![node(json!({"metadata": {"name": "a"}}))], vec![]);
        let mut state = CycleState::default();
        state.nominated.insert(
            "a".into(),
            Resource {
                milli_cpu: 3000,
                pods: 1,
                ..Default::default()
            },
        );
        let p = requesting("p", "", "2", "1");
        let n = c.node("a").unwrap();
        assert!(NodeResourcesFit.filter(&state, &p, n).is_err());
        assert!(
            NodeResourcesFit
                .filter(&CycleState::default(), &p, n)
                .is_ok()
        );
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![requesting("x", "a", "2", "4Gi")],
        );
        let s = score_all(&NodeResourcesFit, &requesting("p", "", "1", "2Gi"), &c);
        // a: cpu (4-3)/4 = 25, mem (8-6)/8 = 25; b: 75 and 75.
        assert_eq!(s, vec![25, 75]);
    }
}
