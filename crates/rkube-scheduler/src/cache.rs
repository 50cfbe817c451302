//! The scheduler's picture of the cluster: nodes and the pods placed on them, whether
//! bound (seen with `spec.nodeName`) or only assumed (chosen, binding in flight), plus
//! the namespaces, claims, volumes and storage classes the plugins read.
//!
//! Assume-then-bind, as upstream: a pod is added to its node here the moment the
//! scheduler picks the node, so the next pod already sees the resources taken; the
//! binding runs asynchronously; a failed binding forgets the pod again, and an assumed
//! pod whose binding finished but which never shows up bound expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::labels::Labels;
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

/// How long an assumed pod whose binding succeeded may wait for its bound version.
pub const ASSUMED_POD_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct PodState {
    node: String,
    assumed: bool,
    /// When an assumed pod stops being trusted (set once its binding finished).
    deadline: Option<Instant>,
}

/// Nodes, pods on nodes, and namespaces' labels.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodState>,
    /// Labels of namespaces (for namespace selectors of affinity terms).
    pub namespaces: HashMap<String, Labels>,
    /// PersistentVolumeClaims by `namespace/name`.
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// PersistentVolumes by name.
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    /// StorageClasses by name.
    pub storage_classes: HashMap<String, Arc<StorageClass>>,
    /// Pods with required anti-affinity anywhere (when zero, the incoming pod cannot
    /// break any existing pod's anti-affinity and the check is skipped).
    pods_with_required_anti_affinity: usize,
    pods_with_affinity: usize,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo::placeholder(name));
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    /// Adds or updates a node.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.node_mut(&name).set_node(node);
    }

    /// Removes a node; its pods stay (as a placeholder) until they go themselves.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if !self.nodes[i].pods.is_empty() {
            self.nodes[i].node = None;
            self.nodes[i].generation += 1;
            return;
        }
        self.index.remove(name);
        self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.index.insert(moved, i);
        }
    }

    /// Every node known (with a Node object), in a stable order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.node.is_some())
    }

    /// The slots of nodes with a Node object (the scheduler's node list).
    pub fn node_slots(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.is_some())
            .collect()
    }

    pub fn node_at(&self, slot: usize) -> &NodeInfo {
        &self.nodes[slot]
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index
            .get(name)
            .map(|i| &self.nodes[*i])
            .filter(|n| n.node.is_some())
    }

    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.node.is_some()).count()
    }

    pub fn any_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }

    pub fn any_affinity(&self) -> bool {
        self.pods_with_affinity > 0
    }

    fn add_to_node(&mut self, pod: Arc<PodInfo>, node: &str) {
        if pod.has_pod_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.node_mut(node).add_pod(pod);
    }

    fn remove_from_node(&mut self, uid: &str, node: &str) -> Option<Arc<PodInfo>> {
        let &i = self.index.get(node)?;
        let pod = self.nodes[i].remove_pod(uid)?;
        if pod.has_pod_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        if self.nodes[i].node.is_none() && self.nodes[i].pods.is_empty() {
            self.remove_node(node);
        }
        Some(pod)
    }

    /// Whether the cache holds this pod assumed (chosen but not yet seen bound).
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    /// Whether the cache holds this pod at all.
    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Places a pod on a node before its binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        let uid = pod.uid.clone();
        if let Some(old) = self.pods.remove(&uid) {
            self.remove_from_node(&uid, &old.node);
        }
        self.add_to_node(pod, node);
        self.pods.insert(
            uid,
            PodState {
                node: node.to_string(),
                assumed: true,
                deadline: None,
            },
        );
    }

    /// The binding of an assumed pod succeeded: from now it expires unless seen bound.
    pub fn finish_binding(&mut self, uid: &str, now: Instant) {
        if let Some(s) = self.pods.get_mut(uid)
            && s.assumed
        {
            s.deadline = Some(now + ASSUMED_POD_TTL);
        }
    }

    /// Drops an assumed pod (its binding failed).
    pub fn forget(&mut self, uid: &str) {
        if let Some(s) = self.pods.get(uid)
            && s.assumed
        {
            let node = s.node.clone();
            self.pods.remove(uid);
            self.remove_from_node(uid, &node);
        }
    }

    /// A pod seen with `spec.nodeName`: confirms an assumed pod or adds/updates it.
    pub fn add_or_update_bound(&mut self, pod: Arc<PodInfo>) {
        let uid = pod.uid.clone();
        let node = pod.node_name.clone();
        if let Some(old) = self.pods.remove(&uid) {
            self.remove_from_node(&uid, &old.node);
        }
        self.add_to_node(pod, &node);
        self.pods.insert(
            uid,
            PodState {
                node,
                assumed: false,
                deadline: None,
            },
        );
    }

    /// A pod that is gone (deleted, or finished): frees its place. Returns its node.
    pub fn remove_pod(&mut self, uid: &str) -> Option<String> {
        let s = self.pods.remove(uid)?;
        self.remove_from_node(uid, &s.node);
        Some(s.node)
    }

    /// Expires assumed pods whose bound version never came; returns their uids.
    pub fn cleanup_expired(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, s)| s.assumed && s.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for uid in &expired {
            self.remove_pod(uid);
        }
        expired
    }

    /// All pods on nodes (bound and assumed).
    pub fn pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        self.nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
    }

    /// The uids of every pod in the cache.
    pub fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::pod_info::testing::pod;
    use serde_json::json;

    fn p(name: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(pod(json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}]}})))
    }

    #[test]
    fn assume_confirm_forget_and_expire() {
        let mut c = Cache::new();
        c.set_node(node(json!({"metadata": {"name": "n1"}})).node.unwrap());
        c.assume(p("a", ""), "n1");
        assert!(c.is_assumed("a"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        c.add_or_update_bound(p("a", "n1"));
        assert!(!c.is_assumed("a"));
        assert_eq!(
            c.node("n1").unwrap().requested.milli_cpu,
            1000,
            "not counted twice"
        );

        c.assume(p("b", ""), "n1");
        c.forget("b");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);

        let now = Instant::now();
        c.assume(p("c", ""), "n1");
        c.finish_binding("c", now);
        assert!(c.cleanup_expired(now).is_empty());
        assert_eq!(
            c.cleanup_expired(now + ASSUMED_POD_TTL),
            vec!["c".to_string()]
        );
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node() {
        let mut c = Cache::new();
        c.add_or_update_bound(p("a", "n9"));
        assert!(c.node("n9").is_none());
        assert_eq!(c.node_count(), 0);
        c.set_node(node(json!({"metadata": {"name": "n9"}})).node.unwrap());
        assert_eq!(c.node("n9").unwrap().pods.len(), 1);
        c.remove_node("n9");
        assert!(c.node("n9").is_none());
        c.remove_pod("a");
        assert_eq!(c.pods().count(), 0);
    }
}
