//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that
//! tolerate the `node.kubernetes.io/unschedulable` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerates;
use crate::framework::{CycleState, FilterPlugin, PluginId, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const REASON: &str = "node(s) were unschedulable";
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn id(&self) -> PluginId {
        PluginId::NodeUnschedulable
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            return Ok(());
        }
        Err(Status::unresolvable(PluginId::NodeUnschedulable, REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_reject_pods_without_the_toleration() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![],
        );
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        let r = filter_all(&NodeUnschedulable, &plain, &c);
        assert_eq!(
            r[0],
            Err(Status::unresolvable(PluginId::NodeUnschedulable, REASON))
        );
        assert_eq!(r[1], Ok(()));
        let tolerant = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert!(
            filter_all(&NodeUnschedulable, &tolerant, &c)
                .iter()
                .all(Result::is_ok)
        );
    }
}
