//! A node and the pods on it (bound or assumed), with the sums the filters read.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::labels::Labels;
use crate::plugins::selector_spread::ZONE_LABEL;
use crate::pod_info::{HostPort, PodInfo};
use crate::resources::Resource;

/// Aggregated state of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods name a node the scheduler has not seen (yet).
    pub node: Option<Arc<Node>>,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resource,
    pub requested: Resource,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// How many pods here have pod affinity or anti-affinity terms of any kind.
    pub pods_with_affinity: usize,
    /// How many pods here have required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
    /// The zone label's value (read for every node in every cycle).
    pub zone: Option<String>,
    /// Pods per controller (`PodInfo::controller_key`), for spreading a controller's
    /// pods. A node holds few controllers: a list is faster than a map.
    controller_pods: Vec<(u64, u32)>,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut n = NodeInfo::default();
        n.set_node(node);
        n
    }

    /// A node known only from the pods that name it.
    pub fn placeholder(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.zone = self.labels.get(ZONE_LABEL).cloned();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = Resource::from_list(
            node.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())),
        );
        self.node = Some(node);
        self.generation += 1;
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_cpu += pod.non_zero_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_pod_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        if let Some(c) = pod.controller_key {
            match self.controller_pods.iter_mut().find(|(k, _)| *k == c) {
                Some((_, n)) => *n += 1,
                None => self.controller_pods.push((c, 1)),
            }
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with this uid; returns it if it was here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_cpu -= pod.non_zero_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if pod.has_pod_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        if let Some(c) = pod.controller_key
            && let Some(i) = self.controller_pods.iter().position(|(k, _)| *k == c)
        {
            self.controller_pods[i].1 -= 1;
            if self.controller_pods[i].1 == 0 {
                self.controller_pods.swap_remove(i);
            }
        }
        self.generation += 1;
        Some(pod)
    }

    /// How many of a controller's pods are here.
    pub fn controller_pods(&self, key: u64) -> u32 {
        self.controller_pods
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, n)| *n)
    }

    /// The node's value of a topology label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin tests.
    use super::*;

    /// A node from JSON; `cpu`/`memory`/`pods` allocatable default to 4, 8Gi, 110.
    pub fn node(v: serde_json::Value) -> NodeInfo {
        let mut n: Node = serde_json::from_value(v).expect("a node");
        let status = n.status.get_or_insert_with(Default::default);
        let alloc = status.allocatable.get_or_insert_with(Default::default);
        for (k, v) in [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")] {
            alloc.entry(k.to_string()).or_insert_with(|| {
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.into())
            });
        }
        NodeInfo::new(Arc::new(n))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::node;
    use super::*;
    use crate::pod_info::testing::pod;
    use serde_json::json;

    #[test]
    fn adding_and_removing_pods_keeps_sums() {
        let mut n = node(json!({"metadata": {"name": "n1"}}));
        assert_eq!(n.allocatable.milli_cpu, 4000);
        let p = Arc::new(pod(json!({"metadata": {"name": "a",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicaSet", "name": "r", "uid": "r1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "500m"}},
                "ports": [{"containerPort": 1, "hostPort": 80}]}]}})));
        n.add_pod(p);
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(n.requested.pods, 1);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.controller_pods(crate::pod_info::controller_key("r1")), 1);
        assert!(n.remove_pod("a").is_some());
        assert_eq!(n.requested, Resource::default());
        assert!(n.used_ports.is_empty() && n.controller_pods.is_empty());
        assert!(n.remove_pod("a").is_none());
    }
}
