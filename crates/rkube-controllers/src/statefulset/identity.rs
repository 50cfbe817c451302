//! A StatefulSet pod's identity: its ordinal name `<set>-<n>`, hostname and
//! subdomain (for the headless Service's DNS), the labels upstream puts on it, and
//! its storage (one PVC `<template>-<set>-<n>` per volumeClaimTemplate, owned as
//! the persistentVolumeClaimRetentionPolicy says).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::controller_ref::controller_ref;
use crate::history::CONTROLLER_REVISION_HASH;
use crate::pod_util;

/// The label with a StatefulSet pod's own name (a Service can select one pod).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `(parent, ordinal)` of a name `<parent>-<n>`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, n) = name.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, n.parse().ok()?))
}

fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

/// The ordinal of a pod, if its name has one.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, o)| o)
}

/// Whether a pod's name makes it one of the set's.
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    pod.metadata
        .name
        .as_deref()
        .and_then(parent_and_ordinal)
        .is_some_and(|(p, _)| p == set_name(set))
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// The first ordinal (`spec.ordinals.start`, 0 by default).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (1 when unset).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The claim name for a template and an ordinal: `<template>-<set>-<n>`.
pub fn claim_name(template: &str, set: &StatefulSet, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", set_name(set))
}

/// The revision a pod was made from.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether the pod exists in the API (a planned pod does not).
pub fn is_created(pod: &Pod) -> bool {
    pod.metadata.uid.is_some()
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    pod_util::phase(pod) == "Running" && pod_util::is_ready(pod)
}

pub fn is_running_and_available(pod: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    pod_util::phase(pod) == "Running" && pod_util::is_available(pod, min_ready, now)
}

/// Running, ready and not going away.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// The claims a pod of the set uses, by template name.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let spec = set.spec.clone().unwrap_or_default();
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, set, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (tname, claim)
        })
        .collect()
}

/// Puts the set's claims in the pod's volumes (replacing volumes of the same name).
pub fn update_storage(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let claims = claims(set, ordinal);
    if claims.is_empty() {
        return;
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(tname, c)| Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        current
            .into_iter()
            .filter(|v| !claims.iter().any(|(t, _)| *t == v.name)),
    );
    spec.volumes = Some(volumes);
}

/// The labels that carry a pod's identity.
fn identity_labels(set: &StatefulSet, ordinal: i32) -> [(String, String); 2] {
    [
        (POD_NAME_LABEL.to_string(), pod_name(set, ordinal)),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ]
}

/// The pod of `ordinal` from `set`'s template (the set given may carry an older
/// revision's template), labelled with `revision`.
pub fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    labels.extend(identity_labels(set, ordinal));
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.to_string());
    let name = pod_name(set, ordinal);
    let mut spec = template.spec.unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    update_storage(set, &mut pod, ordinal);
    pod
}

/// Whether the pod's name and identity labels are the ones of its ordinal.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ord) = ordinal(pod) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    is_member_of(set, pod)
        && pod.metadata.namespace == set.metadata.namespace
        && identity_labels(set, ord)
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
}

/// The identity labels a pod lacks (to patch in).
pub fn missing_identity(set: &StatefulSet, pod: &Pod) -> BTreeMap<String, String> {
    let Some(ord) = ordinal(pod) else {
        return BTreeMap::new();
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    identity_labels(set, ord)
        .into_iter()
        .filter(|(k, v)| labels.get(k) != Some(v))
        .collect()
}

/// The retention policy: (`whenDeleted` is Delete, `whenScaled` is Delete).
fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    (
        p.when_deleted.as_deref() == Some("Delete"),
        p.when_scaled.as_deref() == Some("Delete"),
    )
}

/// A plain (non-controller) owner reference.
fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..controller_ref(owner)
    }
}

/// A claim's owner references as the retention policy wants them: the set owns
/// the claims of a set whose claims go when it goes; the pod owns the claim of a
/// condemned ordinal (outside the replicas) when claims go on scale-down. Other
/// owners are kept. `None` when nothing changes.
pub fn claim_owner_refs(
    set: &StatefulSet,
    claim: &PersistentVolumeClaim,
    pod: &Pod,
    condemned: bool,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = retention(set);
    let (want_set, want_pod) = match (when_deleted, when_scaled) {
        (false, false) => (false, false),
        (false, true) => (false, condemned),
        (true, false) => (true, false),
        (true, true) => (!condemned, condemned),
    };
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    let mut refs: Vec<OwnerReference> = current
        .iter()
        .filter(|r| {
            let is_set = r.uid == set_uid || (r.kind == "StatefulSet" && r.name == set_name(set));
            let is_pod = r.kind == "Pod" && r.name == pod.metadata.name.clone().unwrap_or_default();
            (!is_set || want_set) && (!is_pod || want_pod)
        })
        .cloned()
        .collect();
    if want_set && !refs.iter().any(|r| r.uid == set_uid) {
        refs.push(owner_ref(set));
    }
    if want_pod && !pod_uid.is_empty() && !refs.iter().any(|r| r.uid == pod_uid) {
        refs.push(owner_ref(pod));
    }
    (refs != current).then_some(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(policy: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "replicas": 3, "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "persistentVolumeClaimRetentionPolicy": policy,
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}],
                        "volumes": [{"name": "www", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"kind": "data"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ordinals_are_read_from_names() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
    }

    #[test]
    fn a_new_pod_has_its_identity_and_storage() {
        let s = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        let p = new_pod(&s, 2, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l[CONTROLLER_REVISION_HASH], "web-abc");
        assert_eq!(l["app"], "nginx");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.as_ref().unwrap();
        // The template's `www` volume gives way to the claim; `cfg` stays.
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0].name, "www");
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-2"
        );
        assert_eq!(vols[1].name, "cfg");
        assert!(identity_matches(&s, &p));
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((r.kind.as_str(), r.controller), ("StatefulSet", Some(true)));
        let (_, claim) = &claims(&s, 2)[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("www-web-2"));
        let cl = claim.metadata.labels.as_ref().unwrap();
        assert_eq!((cl["kind"].as_str(), cl["app"].as_str()), ("data", "nginx"));
    }

    #[test]
    fn identity_is_checked_by_labels() {
        let s = set(json!({}));
        let mut p = new_pod(&s, 1, "r");
        p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
        assert!(!identity_matches(&s, &p));
        assert_eq!(
            missing_identity(&s, &p).into_iter().collect::<Vec<_>>(),
            vec![(POD_NAME_LABEL.to_string(), "web-1".to_string())]
        );
    }

    fn claim_refs(s: &StatefulSet, condemned: bool, existing: Vec<OwnerReference>) -> Vec<String> {
        let mut pod = new_pod(s, 0, "r");
        pod.metadata.uid = Some("pod-uid".into());
        let mut claim = claims(s, 0).remove(0).1;
        claim.metadata.owner_references = Some(existing.clone());
        claim_owner_refs(s, &claim, &pod, condemned)
            .unwrap_or(existing)
            .iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect()
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let retain = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert!(claim_refs(&retain, true, vec![]).is_empty());
        let del = set(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}));
        assert_eq!(claim_refs(&del, false, vec![]), ["StatefulSet/web"]);
        assert_eq!(claim_refs(&del, true, vec![]), ["StatefulSet/web"]);
        let scaled = set(json!({"whenDeleted": "Retain", "whenScaled": "Delete"}));
        assert!(claim_refs(&scaled, false, vec![]).is_empty());
        assert_eq!(claim_refs(&scaled, true, vec![]), ["Pod/web-0"]);
        let both = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}));
        assert_eq!(claim_refs(&both, false, vec![]), ["StatefulSet/web"]);
        let set_ref = owner_ref(&both);
        assert_eq!(
            claim_refs(&both, true, vec![set_ref.clone()]),
            ["Pod/web-0"]
        );
        // Back to Retain: the set lets go of its claims.
        assert!(claim_refs(&retain, false, vec![set_ref]).is_empty());
    }
}
