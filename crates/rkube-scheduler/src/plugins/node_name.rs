//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::framework::{CycleState, FilterPlugin, PluginId, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn id(&self) -> PluginId {
        PluginId::NodeName
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        if pod.node_name.is_empty() || pod.node_name == node.name {
            Ok(())
        } else {
            Err(Status::unresolvable(PluginId::NodeName, REASON))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::pod_info::testing::pod;
    use serde_json::json;

    #[test]
    fn only_the_named_node() {
        let p =
            pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "a", "containers": []}}));
        let state = CycleState::default();
        assert!(
            NodeName
                .filter(&state, &p, &node(json!({"metadata": {"name": "a"}})))
                .is_ok()
        );
        assert!(
            NodeName
                .filter(&state, &p, &node(json!({"metadata": {"name": "b"}})))
                .is_err()
        );
    }
}
