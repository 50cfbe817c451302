//! VolumeBinding: the pod's PersistentVolumeClaims must exist; claims bound to a
//! volume with node affinity (local volumes) tie the pod to the nodes the volume is
//! reachable from; unbound claims of an `Immediate` class must be bound first; unbound
//! claims of a `WaitForFirstConsumer` class are decided on the chosen node (static
//! volumes must be available there; the node is then recorded on the claim for
//! provisioners as `volume.kubernetes.io/selected-node`).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, PluginId, Status};
use crate::labels::NodeSelectorTerms;
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const REASON_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_NO_PV: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_PV_MISSING: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// The annotation telling a provisioner where the pod went.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// An unbound claim waiting for its first consumer.
#[derive(Debug, Clone)]
pub struct DelayedClaim {
    pub name: String,
    /// For classes without a provisioner: the static volumes that could bind it,
    /// with their node affinity.
    pub static_candidates: Option<Vec<Option<NodeSelectorTerms>>>,
}

#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    /// The node affinity of each bound volume (`None`: no restriction).
    bound: Vec<Option<NodeSelectorTerms>>,
    /// A bound claim names a volume that does not exist.
    missing_volume: bool,
    pub delayed: Vec<DelayedClaim>,
}

pub struct VolumeBinding;

fn node_affinity(pv: &PersistentVolume) -> Option<NodeSelectorTerms> {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(NodeSelectorTerms::compile)
}

fn storage(
    list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> i64 {
    list.and_then(|l| l.get("storage"))
        .and_then(|q| rkube_api::quantity::Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .unwrap_or(0)
}

/// Whether an available volume can satisfy a claim (class, size, access modes).
fn volume_fits(pv: &PersistentVolume, claim: &PersistentVolumeClaim, class: &str) -> bool {
    let Some(spec) = pv.spec.as_ref() else {
        return false;
    };
    let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available")
        && spec.claim_ref.is_none();
    let want = claim.spec.as_ref();
    let modes_ok = want
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| spec.access_modes.iter().flatten().any(|have| have == m));
    let need = storage(
        want.and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    );
    available
        && spec.storage_class_name.as_deref().unwrap_or("") == class
        && modes_ok
        && storage(spec.capacity.as_ref()) >= need
}

impl FilterPlugin for VolumeBinding {
    fn id(&self) -> PluginId {
        PluginId::VolumeBinding
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        if pod.claims.is_empty() {
            return Ok(());
        }
        let mut st = PreFilterState::default();
        for name in &pod.claims {
            let key = format!("{}/{name}", pod.namespace);
            let Some(claim) = cache.claims.get(&key) else {
                return Err(Status::unresolvable(
                    self.id(),
                    format!("persistentvolumeclaim \"{name}\" not found"),
                ));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(
                    self.id(),
                    format!("persistentvolumeclaim \"{name}\" is being deleted"),
                ));
            }
            let spec = claim.spec.clone().unwrap_or_default();
            if let Some(volume) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
                match cache.volumes.get(volume) {
                    Some(pv) => st.bound.push(node_affinity(pv)),
                    None => st.missing_volume = true,
                }
                continue;
            }
            let class_name = spec.storage_class_name.clone().unwrap_or_default();
            let class = cache.storage_classes.get(&class_name);
            let wait = class.and_then(|c| c.volume_binding_mode.as_deref())
                == Some("WaitForFirstConsumer");
            if !wait {
                return Err(Status::unresolvable(
                    PluginId::VolumeBinding,
                    REASON_UNBOUND_IMMEDIATE,
                ));
            }
            let provisioner = class
                .map(|c| c.provisioner.as_str())
                .unwrap_or(NO_PROVISIONER);
            let static_candidates = (provisioner == NO_PROVISIONER).then(|| {
                cache
                    .volumes
                    .values()
                    .filter(|pv| volume_fits(pv, claim, &class_name))
                    .map(|pv| node_affinity(pv))
                    .collect()
            });
            st.delayed.push(DelayedClaim {
                name: name.clone(),
                static_candidates,
            });
        }
        state.volume_binding = Some(st);
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let Some(st) = &state.volume_binding else {
            return Ok(());
        };
        if st.missing_volume {
            return Err(Status::unresolvable(
                PluginId::VolumeBinding,
                REASON_PV_MISSING,
            ));
        }
        let reachable = |a: &Option<NodeSelectorTerms>| {
            a.as_ref()
                .is_none_or(|t| t.matches(&node.name, &node.labels))
        };
        if !st.bound.iter().all(reachable) {
            return Err(Status::unresolvable(
                PluginId::VolumeBinding,
                REASON_CONFLICT,
            ));
        }
        for d in &st.delayed {
            if let Some(candidates) = &d.static_candidates
                && !candidates.iter().any(reachable)
            {
                return Err(Status::unresolvable(PluginId::VolumeBinding, REASON_NO_PV));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all};
    use crate::pod_info::testing::pod;
    use serde_json::json;
    use std::sync::Arc;

    fn with_claim(claim: &str) -> PodInfo {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}))
    }

    fn setup() -> Cache {
        let mut c = cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {"kubernetes.io/hostname": "a"}}})),
                node(json!({"metadata": {"name": "b", "labels": {"kubernetes.io/hostname": "b"}}})),
            ],
            vec![],
        );
        let pvc = |v: serde_json::Value| {
            Arc::new(serde_json::from_value::<PersistentVolumeClaim>(v).unwrap())
        };
        c.claims.insert(
            "default/bound".into(),
            pvc(
                json!({"metadata": {"name": "bound", "namespace": "default"},
            "spec": {"volumeName": "local-a", "accessModes": ["ReadWriteOnce"]}}),
            ),
        );
        c.claims.insert(
            "default/pending".into(),
            pvc(
                json!({"metadata": {"name": "pending", "namespace": "default"},
            "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"]}}),
            ),
        );
        c.claims.insert("default/late".into(), pvc(json!({"metadata": {"name": "late", "namespace": "default"},
            "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})));
        c.volumes.insert("local-a".into(), Arc::new(serde_json::from_value(json!({"metadata": {"name": "local-a"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/x"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}})).unwrap()));
        c.volumes.insert("local-b".into(), Arc::new(serde_json::from_value(json!({"metadata": {"name": "local-b"},
            "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local", "local": {"path": "/x"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}},
            "status": {"phase": "Available"}})).unwrap()));
        c.storage_classes.insert(
            "local".into(),
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "local"},
            "provisioner": NO_PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"}))
                .unwrap(),
            ),
        );
        c
    }

    #[test]
    fn bound_local_volumes_pin_the_pod() {
        let r = filter_all(&VolumeBinding, &with_claim("bound"), &setup());
        assert_eq!(
            r,
            vec![
                Ok(()),
                Err(Status::unresolvable(
                    PluginId::VolumeBinding,
                    REASON_CONFLICT
                ))
            ]
        );
    }

    #[test]
    fn missing_and_unbound_immediate_claims() {
        let c = setup();
        let missing = filter_all(&VolumeBinding, &with_claim("nope"), &c);
        assert_eq!(
            missing[0].as_ref().unwrap_err().reasons,
            vec!["persistentvolumeclaim \"nope\" not found"]
        );
        let pending = filter_all(&VolumeBinding, &with_claim("pending"), &c);
        assert_eq!(
            pending[0].as_ref().unwrap_err().reasons,
            vec![REASON_UNBOUND_IMMEDIATE]
        );
    }

    #[test]
    fn wait_for_first_consumer_finds_static_volumes() {
        let r = filter_all(&VolumeBinding, &with_claim("late"), &setup());
        assert_eq!(
            r,
            vec![
                Err(Status::unresolvable(PluginId::VolumeBinding, REASON_NO_PV)),
                Ok(())
            ]
        );
    }
}
