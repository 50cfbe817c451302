//! A pod as the scheduler reads it: requests, ports, affinity terms and tolerations
//! computed once when the pod is seen, not per node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration, TopologySpreadConstraint};

use crate::labels::{Labels, NodeSelectorTerms, NodeTerm, Selector};
use crate::resources::{self, Resource};

/// The scheduler this crate is (`spec.schedulerName`).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// A host port a pod asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `0.0.0.0` when no hostIP is given (which conflicts with every IP).
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot be bound on one node together.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod (anti-)affinity term, compiled.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces the term looks at; empty with no namespace selector means the pod's.
    pub namespaces: Vec<String>,
    /// Namespace selector; `None` when absent (then only `namespaces` count).
    pub namespace_selector: Option<Selector>,
    pub selector: Selector,
    pub topology_key: String,
    /// For preferred terms.
    pub weight: i64,
}

impl AffinityTerm {
    fn compile(pod_ns: &str, labels: &Labels, t: &PodAffinityTerm, weight: i64) -> AffinityTerm {
        let selector = Selector::from_label_selector(t.label_selector.as_ref())
            .with_label_keys(t.match_label_keys.as_ref(), labels)
            .with_mismatch_label_keys(t.mismatch_label_keys.as_ref(), labels);
        let namespace_selector = t
            .namespace_selector
            .as_ref()
            .map(|s| Selector::from_label_selector(Some(s)));
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(pod_ns.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is a pod this term is about. `ns_labels` are the labels of the
    /// pod's namespace (needed only with a namespace selector).
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| ns_labels.is_some_and(|l| s.matches(l)));
        ns_ok && self.selector.matches(&pod.labels)
    }
}

/// A compiled topology spread constraint.
#[derive(Debug, Clone)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    /// `DoNotSchedule` (a filter) or `ScheduleAnyway` (a score).
    pub hard: bool,
    pub selector: Selector,
    pub min_domains: i64,
    /// Count only nodes matching the pod's node affinity/selector (`Honor`, default).
    pub honor_node_affinity: bool,
    /// Count only nodes whose taints the pod tolerates (`Honor`; default `Ignore`).
    pub honor_node_taints: bool,
}

impl SpreadConstraint {
    fn compile(labels: &Labels, c: &TopologySpreadConstraint) -> SpreadConstraint {
        SpreadConstraint {
            max_skew: i64::from(c.max_skew.max(1)),
            topology_key: c.topology_key.clone(),
            hard: c.when_unsatisfiable == "DoNotSchedule",
            selector: Selector::from_label_selector(c.label_selector.as_ref())
                .with_label_keys(c.match_label_keys.as_ref(), labels),
            min_domains: i64::from(c.min_domains.unwrap_or(1).max(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }
}

/// Everything the plugins need from a pod, computed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub node_name: String,
    pub requests: Resource,
    /// CPU and memory with defaults for containers without requests (for scoring).
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub priority: i32,
    pub preempt_never: bool,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Option<Labels>,
    pub required_node_affinity: Option<NodeSelectorTerms>,
    pub preferred_node_affinity: Vec<(i64, NodeTerm)>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    pub spread_constraints: Vec<SpreadConstraint>,
    /// The uid of the controller owning the pod (for spreading its pods).
    pub controller_uid: Option<String>,
    /// `controller_uid` as a number, for cheap per-node counting.
    pub controller_key: Option<u64>,
    /// Names of the PersistentVolumeClaims the pod mounts.
    pub claims: Vec<String>,
    pub terminating: bool,
    pub nominated_node: Option<String>,
}

/// A controller uid as a number: the same uid gives the same key within a process
/// (a collision between two uids would only blur the spreading score).
pub fn controller_key(uid: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    uid.hash(&mut h);
    h.finish()
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let meta = &pod.metadata;
        let no_spec = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let labels = meta.labels.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let requests = resources::pod_requests(spec);
        let (non_zero_cpu, non_zero_memory) = resources::pod_non_zero_requests(spec);
        let mut host_ports = Vec::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        let affinity = spec.affinity.as_ref();
        let node_aff = affinity.and_then(|a| a.node_affinity.as_ref());
        let pod_aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti_aff = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let compile_required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::compile(&namespace, &labels, t, 0))
                .collect()
        };
        let compile_preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        AffinityTerm::compile(
                            &namespace,
                            &labels,
                            &t.pod_affinity_term,
                            i64::from(t.weight),
                        )
                    })
                    .collect::<Vec<_>>()
            };
        let claims = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                if let Some(pvc) = &v.persistent_volume_claim {
                    Some(pvc.claim_name.clone())
                } else {
                    // A generic ephemeral volume's claim is named `<pod>-<volume>`.
                    v.ephemeral
                        .as_ref()
                        .map(|_| format!("{}-{}", meta.name.as_deref().unwrap_or_default(), v.name))
                }
            })
            .collect();
        let controller_uid = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let controller_key = controller_uid.as_deref().map(controller_key);
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            requests,
            non_zero_cpu,
            non_zero_memory,
            priority: spec.priority.unwrap_or(0),
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().filter(|m| !m.is_empty()),
            required_node_affinity: node_aff
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(NodeSelectorTerms::compile),
            preferred_node_affinity: node_aff
                .and_then(|n| {
                    n.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (i64::from(p.weight), NodeTerm::compile(&p.preference)))
                .collect(),
            required_affinity: compile_required(pod_aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: compile_required(anti_aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: compile_preferred(pod_aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: compile_preferred(anti_aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            spread_constraints: spec
                .topology_spread_constraints
                .iter()
                .flatten()
                .map(|c| SpreadConstraint::compile(&labels, c))
                .collect(),
            controller_uid,
            controller_key,
            claims,
            terminating: meta.deletion_timestamp.is_some(),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|s| !s.is_empty()),
            labels,
            namespace,
            pod,
        }
    }

    /// The form kept of a pod placed on a node: everything the plugins read, with
    /// only the identity, priority and phase of the pod object. The whole object
    /// (its containers, volumes, status...) is what most of a pod's memory is,
    /// and nothing reads it once the pod has a node.
    pub fn assigned(mut self) -> PodInfo {
        use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let (meta, spec) = (&self.pod.metadata, self.pod.spec.as_ref());
        let pod = Pod {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(self.node_name.clone()),
                priority: spec.and_then(|s| s.priority),
                scheduler_name: spec.and_then(|s| s.scheduler_name.clone()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: self.pod.status.as_ref().and_then(|s| s.phase.clone()),
                ..Default::default()
            }),
        };
        self.pod = Arc::new(pod);
        self
    }

    /// `namespace/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn has_pod_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// Whether the pod passes the node selector and required node affinity of this pod
    /// (the NodeAffinity filter, also used by topology spreading).
    pub fn matches_node_selector(&self, node_name: &str, labels: &Labels) -> bool {
        if let Some(sel) = &self.node_selector
            && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            return false;
        }
        self.required_node_affinity
            .as_ref()
            .is_none_or(|t| t.matches(node_name, labels))
    }

    /// The scheduler responsible for the pod.
    pub fn scheduler_name(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(DEFAULT_SCHEDULER_NAME)
    }

    /// Whether the pod has finished (its resources are free again).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    }

    /// The pod's scheduling gates, which keep it out of scheduling while present.
    pub fn is_gated(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin tests.
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    /// A pod from JSON (`metadata` defaults: namespace `default`, uid = name).
    pub fn pod(v: serde_json::Value) -> PodInfo {
        let mut p: Pod = serde_json::from_value(v).expect("a pod");
        p.metadata.namespace.get_or_insert_with(|| "default".into());
        if p.metadata.uid.is_none() {
            p.metadata.uid = p.metadata.name.clone();
        }
        p.spec.get_or_insert_with(PodSpec::default);
        PodInfo::new(Arc::new(p))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_ports_affinity_and_claims() {
        let p = pod(json!({
            "metadata": {"name": "p", "labels": {"app": "a"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {
                "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}},
                            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}]}}
            }
        }));
        assert_eq!(
            p.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        assert_eq!(
            p.claims,
            vec!["data-claim".to_string(), "p-scratch".to_string()]
        );
        assert_eq!(p.controller_uid.as_deref(), Some("rs-1"));
        assert_eq!(p.required_anti_affinity.len(), 1);
        assert_eq!(
            p.required_anti_affinity[0].namespaces,
            vec!["default".to_string()]
        );
        assert!(p.required_anti_affinity[0].matches(&p, None));
    }

    #[test]
    fn a_placed_pod_keeps_what_plugins_read_but_not_its_object() {
        let p = pod(json!({
            "metadata": {"name": "p", "uid": "u-1", "resourceVersion": "7", "labels": {"app": "a"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {
                "nodeName": "n1", "priority": 100, "schedulerName": "custom",
                "containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}]}}
            },
            "status": {"phase": "Running", "podIP": "10.0.0.9"}
        }));
        let kept = p.clone().assigned();
        assert_eq!(kept.requests.milli_cpu, 250);
        assert_eq!(kept.requests.memory, 64 << 20);
        assert_eq!(kept.host_ports, p.host_ports);
        assert_eq!(kept.claims, vec!["data-claim".to_string()]);
        assert_eq!(kept.labels, p.labels);
        assert_eq!(kept.controller_uid.as_deref(), Some("rs-1"));
        assert_eq!(kept.required_anti_affinity.len(), 1);
        assert_eq!((kept.priority, kept.node_name.as_str()), (100, "n1"));
        assert_eq!(kept.scheduler_name(), "custom");
        assert!(!kept.is_terminal());
        // What identifies it for events and preemption stays; the rest is gone.
        let m = &kept.pod.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("p"), Some("default"), Some("u-1"))
        );
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        let spec = kept.pod.spec.as_ref().unwrap();
        assert!(spec.containers.is_empty() && spec.volumes.is_none());
        assert!(kept.pod.status.as_ref().unwrap().pod_ip.is_none());
    }

    #[test]
    fn host_port_conflicts() {
        let any = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let one = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let other = HostPort {
            ip: "10.0.0.2".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let udp = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "UDP".into(),
            port: 80,
        };
        assert!(any.conflicts(&one));
        assert!(!one.conflicts(&other));
        assert!(!any.conflicts(&udp));
    }
}
