//! NodePorts: two pods cannot bind the same host port (and protocol, and IP) on a node.

use crate::framework::{CycleState, FilterPlugin, PluginId, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn id(&self) -> PluginId {
        PluginId::NodePorts
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let taken = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(Status::unschedulable(PluginId::NodePorts, REASON))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn with_port(name: &str, node: &str, port: i32, proto: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": port, "protocol": proto}]}]}}),
        )
    }

    #[test]
    fn a_taken_host_port_rejects() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![with_port("x", "a", 8080, "TCP")],
        );
        let r = filter_all(&NodePorts, &with_port("p", "", 8080, "TCP"), &c);
        assert_eq!(
            r,
            vec![
                Err(Status::unschedulable(PluginId::NodePorts, REASON)),
                Ok(())
            ]
        );
        let udp = filter_all(&NodePorts, &with_port("p", "", 8080, "UDP"), &c);
        assert!(udp.iter().all(Result::is_ok), "another protocol is free");
    }
}
