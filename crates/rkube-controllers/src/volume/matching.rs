//! Which volume a claim gets, as upstream's binder chooses it: the smallest
//! Available, unclaimed volume of the claim's class, volume mode and access modes
//! (a superset), at least as large as the request, whose labels match the claim's
//! selector and whose node affinity admits the node chosen for the claim; a volume
//! pre-bound to the claim (by `claimRef`) wins outright.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};

use super::{capacity, claim_class, requested, volume_class, volume_phase};
use crate::node_util;
use crate::pod_util;

fn volume_mode_of(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

pub fn volume_mode_mismatch(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    volume_mode_of(v.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
        != volume_mode_of(c.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
}

/// The volume offers every access mode the claim asks for.
pub fn access_modes_fit(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let have = v
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| have.contains(m))
}

/// The volume's `claimRef` names this claim (and its uid, when it has one).
pub fn bound_to_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == c.metadata.name
        && r.namespace == c.metadata.namespace
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref())
}

/// Whether the volume's node affinity admits the node.
pub fn node_affinity_admits(v: &PersistentVolume, node: &Node) -> bool {
    match v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        Some(sel) => node_util::selector_matches(sel, node),
        None => true,
    }
}

/// Why a volume the user named cannot serve a claim (upstream's words).
pub fn check_satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Result<(), String> {
    if capacity(v) < requested(c) {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(v, c) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_fit(v, c) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The best volume for a claim. With `delay_binding` (a WaitForFirstConsumer
/// class) only a volume admitting `node` may be chosen, and none without a node.
pub fn find_best(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay_binding: bool,
    node: Option<&Node>,
) -> Option<Arc<PersistentVolume>> {
    let want = requested(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let selector = match selector {
        Some(s) => match pod_util::selector(Some(s)) {
            Ok(s) => Some(s),
            Err(_) => return None,
        },
        None => None,
    };
    let mut best: Option<(i128, &Arc<PersistentVolume>)> = None;
    for v in volumes {
        if volume_mode_mismatch(v, claim) || v.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = node.is_none_or(|n| node_affinity_admits(v, n));
        if bound_to_claim(v, claim) {
            return affinity_ok.then(|| v.clone());
        }
        if node.is_none() && delay_binding {
            continue;
        }
        if volume_phase(v) != "Available"
            || v.spec.as_ref().is_some_and(|s| s.claim_ref.is_some())
            || selector
                .as_ref()
                .is_some_and(|s| !pod_util::matches(s, v.metadata.labels.as_ref()))
            || volume_class(v) != class
            || !affinity_ok
            || !access_modes_fit(v, claim)
        {
            continue;
        }
        let size = capacity(v);
        if size >= want && best.is_none_or(|(b, _)| size < b) {
            best = Some((size, v));
        }
    }
    best.map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> Arc<PersistentVolume> {
        let mut spec = json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "storageClassName": "local"});
        if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra) {
            s.extend(e);
        }
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": name}},
                "spec": spec, "status": {"phase": "Available"}}))
            .unwrap(),
        )
    }

    fn pvc(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
            "resources": {"requests": {"storage": "1Gi"}}});
        if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra) {
            s.extend(e);
        }
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
            "spec": spec}),
        )
        .unwrap()
    }

    fn name(v: Option<Arc<PersistentVolume>>) -> Option<String> {
        v.and_then(|v| v.metadata.name.clone())
    }

    #[test]
    fn the_smallest_fitting_volume_of_the_class_wins() {
        let vols = vec![
            pv("big", "10Gi", json!({})),
            pv("small", "2Gi", json!({})),
            pv("tiny", "500Mi", json!({})),
            pv("other", "1Gi", json!({"storageClassName": "fast"})),
            pv("rwx", "1Gi", json!({"accessModes": ["ReadWriteMany"]})),
        ];
        assert_eq!(
            name(find_best(&pvc(json!({})), &vols, false, None)).as_deref(),
            Some("small")
        );
        let fast = pvc(json!({"storageClassName": "fast"}));
        assert_eq!(
            name(find_best(&fast, &vols, false, None)).as_deref(),
            Some("other")
        );
        let picky = pvc(json!({"selector": {"matchLabels": {"tier": "big"}}}));
        assert_eq!(
            name(find_best(&picky, &vols, false, None)).as_deref(),
            Some("big")
        );
        let huge = pvc(json!({"resources": {"requests": {"storage": "1Ti"}}}));
        assert!(find_best(&huge, &vols, false, None).is_none());
        let block = pvc(json!({"volumeMode": "Block"}));
        assert!(find_best(&block, &vols, false, None).is_none());
    }

    #[test]
    fn pre_bound_volumes_and_delayed_binding() {
        let claimed = pv(
            "mine",
            "5Gi",
            json!({"claimRef": {"name": "data", "namespace": "ns"}}),
        );
        let vols = vec![pv("small", "2Gi", json!({})), claimed];
        assert_eq!(
            name(find_best(&pvc(json!({})), &vols, false, None)).as_deref(),
            Some("mine")
        );
        // Waiting for a consumer: nothing without a node; with one, affinity counts.
        let local = pv(
            "on-n1",
            "2Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions":
                [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}),
        );
        let vols = vec![local];
        assert!(find_best(&pvc(json!({})), &vols, true, None).is_none());
        let node = |n: &str| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}),
            )
            .unwrap()
        };
        assert_eq!(
            name(find_best(&pvc(json!({})), &vols, true, Some(&node("n1")))).as_deref(),
            Some("on-n1")
        );
        assert!(find_best(&pvc(json!({})), &vols, true, Some(&node("n2"))).is_none());
    }

    #[test]
    fn a_named_volume_is_checked_with_upstreams_words() {
        let c = pvc(json!({}));
        assert_eq!(
            check_satisfies(&pv("x", "500Mi", json!({})), &c),
            Err("requested PV is too small".into())
        );
        assert_eq!(
            check_satisfies(&pv("x", "1Gi", json!({"storageClassName": ""})), &c),
            Err("storageClassName does not match".into())
        );
        assert_eq!(
            check_satisfies(
                &pv("x", "1Gi", json!({"accessModes": ["ReadOnlyMany"]})),
                &c
            ),
            Err("incompatible accessMode".into())
        );
        assert!(check_satisfies(&pv("x", "1Gi", json!({})), &c).is_ok());
    }
}
