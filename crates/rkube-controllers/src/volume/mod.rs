//! Persistent volumes: the binder that pairs claims with volumes and reclaims
//! released ones, and the protection controllers that keep a claim in use (and a
//! bound volume) from disappearing. What both read of the objects lives here.

pub mod binder;
pub mod matching;
pub mod protection;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// On a claim: the binder finished binding it.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or a volume: the binder (not the user) set the binding.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a claim: the node the scheduler chose for its first consumer.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a claim: the provisioner expected to make its volume.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a volume: the provisioner that made it (and deletes it).
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The legacy class annotation, still read when the field is unset.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// On a StorageClass: the class of claims that name none.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The provisioner of classes for volumes made by hand (local volumes).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    annotation(meta, key).is_some()
}

/// The class a claim asks for (`""` for none).
pub fn claim_class(c: &PersistentVolumeClaim) -> String {
    annotation(&c.metadata, BETA_STORAGE_CLASS)
        .map(str::to_string)
        .or_else(|| c.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

/// Whether a claim names a class at all (`""` is a choice; unset is not).
pub fn claim_class_set(c: &PersistentVolumeClaim) -> bool {
    has_annotation(&c.metadata, BETA_STORAGE_CLASS)
        || c.spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// The class of a volume (`""` for none).
pub fn volume_class(v: &PersistentVolume) -> String {
    annotation(&v.metadata, BETA_STORAGE_CLASS)
        .map(str::to_string)
        .or_else(|| v.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

pub fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Bytes in a storage quantity (`10Gi`, `500M`, `1.5e9`), rounded up; `None` if it
/// is not one.
pub fn storage_bytes(q: &str) -> Option<i128> {
    rkube_api::quantity::value(q).ok().map(i128::from)
}

/// The storage a claim requests.
pub fn requested(c: &PersistentVolumeClaim) -> i128 {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| storage_bytes(&q.0))
        .unwrap_or(0)
}

/// The storage a volume offers.
pub fn capacity(v: &PersistentVolume) -> i128 {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| storage_bytes(&q.0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_quantities_in_bytes() {
        assert_eq!(storage_bytes("1Gi"), Some(1 << 30));
        assert_eq!(storage_bytes("500M"), Some(500_000_000));
        assert_eq!(storage_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(storage_bytes("2e3"), Some(2000));
        assert_eq!(storage_bytes("100"), Some(100));
        assert_eq!(storage_bytes("1500m"), Some(2));
        assert_eq!(storage_bytes("1Zi"), None);
        assert_eq!(storage_bytes("abc"), None);
    }
}
