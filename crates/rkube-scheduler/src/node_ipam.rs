//! Node IPAM: gives every node a pod CIDR (`spec.podCIDR`, `spec.podCIDRs`) out of
//! the cluster CIDR, one subnet per node, as kube-controller-manager's range
//! allocator does. Subnets in use are learned from the nodes themselves, so a
//! restarted allocator never hands out a subnet twice.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use rkube_api::cidr::Ipv4Cidr;
use rkube_api::unmanaged::Unmanaged;
use serde_json::json;

use crate::informers::{Change, follow};

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum NodeIpamError {
    /// The node mask is not longer than the cluster CIDR's.
    #[error(
        "--node-cidr-mask-size {mask} must be longer than the cluster CIDR {cidr} and at most 30"
    )]
    Mask { cidr: Ipv4Cidr, mask: u8 },
}

/// The range to allocate from and the size of each node's share.
#[derive(Debug, Clone, Copy)]
pub struct NodeIpamConfig {
    pub cluster_cidr: Ipv4Cidr,
    pub node_mask: u8,
}

impl NodeIpamConfig {
    pub fn new(cluster_cidr: Ipv4Cidr, node_mask: u8) -> Result<NodeIpamConfig, NodeIpamError> {
        if node_mask <= cluster_cidr.prefix() || node_mask > 30 {
            return Err(NodeIpamError::Mask {
                cidr: cluster_cidr,
                mask: node_mask,
            });
        }
        Ok(NodeIpamConfig {
            cluster_cidr,
            node_mask,
        })
    }

    fn subnets(&self) -> u64 {
        1u64 << (self.node_mask - self.cluster_cidr.prefix())
    }
}

/// Which subnets are taken, and by whom.
#[derive(Debug)]
pub struct RangeAllocator {
    config: NodeIpamConfig,
    used: HashSet<u64>,
    by_node: HashMap<String, u64>,
    next: u64,
}

impl RangeAllocator {
    pub fn new(config: NodeIpamConfig) -> RangeAllocator {
        RangeAllocator {
            config,
            used: HashSet::new(),
            by_node: HashMap::new(),
            next: 0,
        }
    }

    fn index_of(&self, cidr: &str) -> Option<u64> {
        let c: Ipv4Cidr = cidr.parse().ok()?;
        if c.prefix() != self.config.node_mask || !self.config.cluster_cidr.contains(c.network()) {
            return None;
        }
        let offset = u32::from(c.network()) - u32::from(self.config.cluster_cidr.network());
        Some(u64::from(offset >> (32 - self.config.node_mask)))
    }

    /// Records a node's existing pod CIDR (if it is in our range).
    pub fn occupy(&mut self, node: &str, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            if let Some(old) = self.by_node.insert(node.to_string(), i)
                && old != i
            {
                self.used.remove(&old);
            }
            self.used.insert(i);
        }
    }

    /// The subnet for a node: the one it already has here, or the next free one.
    pub fn allocate(&mut self, node: &str) -> Option<Ipv4Cidr> {
        if let Some(i) = self.by_node.get(node) {
            return self.config.cluster_cidr.subnet(self.config.node_mask, *i);
        }
        let n = self.config.subnets();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.used.contains(&i) {
                self.used.insert(i);
                self.by_node.insert(node.to_string(), i);
                self.next = (i + 1) % n;
                return self.config.cluster_cidr.subnet(self.config.node_mask, i);
            }
        }
        None
    }

    pub fn release(&mut self, node: &str) {
        if let Some(i) = self.by_node.remove(node) {
            self.used.remove(&i);
        }
    }
}

fn pod_cidr(n: &Node) -> Option<String> {
    n.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|s| !s.is_empty())
}

/// Allocates pod CIDRs until dropped.
pub async fn run(client: Client, config: NodeIpamConfig) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut alloc = RangeAllocator::new(config);
    // Nodes we patched whose new version we have not seen yet.
    let mut pending: HashSet<String> = HashSet::new();
    follow(Api::<Unmanaged<Node>>::all(client.clone()), watcher::Config::default(), |change| {
        let mut todo: Vec<String> = Vec::new();
        match change {
            Change::Apply(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                match pod_cidr(&n) {
                    Some(c) => {
                        pending.remove(&name);
                        alloc.occupy(&name, &c);
                    }
                    None if !pending.contains(&name) => todo.push(name),
                    None => {}
                }
            }
            Change::Delete(n) => {
                let name = n.metadata.name.unwrap_or_default();
                pending.remove(&name);
                alloc.release(&name);
            }
            Change::Replace(all) => {
                // Occupy every existing CIDR before handing out new ones.
                for n in &all {
                    if let Some(c) = pod_cidr(n) {
                        alloc.occupy(n.metadata.name.as_deref().unwrap_or_default(), &c);
                    }
                }
                pending.clear();
                todo = all
                    .iter()
                    .filter(|n| pod_cidr(n).is_none())
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
            }
        }
        let mut work = Vec::new();
        for name in todo {
            match alloc.allocate(&name) {
                Some(cidr) => {
                    pending.insert(name.clone());
                    work.push((name, cidr));
                }
                None => tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR"),
            }
        }
        let nodes = nodes.clone();
        async move {
            for (name, cidr) in work {
                let patch =
                    json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
                match nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => tracing::debug!(node = %name, %cidr, "pod CIDR allocated"),
                    Err(e) => tracing::warn!(node = %name, error = %e, "setting the pod CIDR"),
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeIpamConfig {
        NodeIpamConfig::new("10.42.0.0/16".parse().unwrap(), 24).unwrap()
    }

    #[test]
    fn hands_out_free_subnets_once() {
        let mut a = RangeAllocator::new(config());
        a.occupy("old", "10.42.0.0/24");
        assert_eq!(a.allocate("n1").unwrap().to_string(), "10.42.1.0/24");
        assert_eq!(
            a.allocate("n1").unwrap().to_string(),
            "10.42.1.0/24",
            "same node, same subnet"
        );
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.42.2.0/24");
        a.release("n1");
        a.occupy("foreign", "192.168.0.0/24");
        let mut seen = HashSet::new();
        for i in 0..254 {
            assert!(seen.insert(a.allocate(&format!("x{i}")).unwrap().to_string()));
        }
        assert!(a.allocate("full").is_none(), "256 subnets in a /16");
    }

    #[test]
    fn rejects_masks_that_do_not_fit() {
        assert!(NodeIpamConfig::new("10.42.0.0/16".parse().unwrap(), 16).is_err());
        assert!(NodeIpamConfig::new("10.42.0.0/16".parse().unwrap(), 31).is_err());
    }
}
