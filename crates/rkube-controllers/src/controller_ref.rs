//! Owner references of controllers: building them, finding an object's controller,
//! and upstream's claim rules (adopt orphans that match the selector, release owned
//! objects that no longer match, ignore what another controller owns).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The owner reference with `controller: true` of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The cached object of type `K` that `meta`'s controller reference points at
/// (same kind, group, name and uid).
pub fn resolve<K: crate::informer::Object>(
    informer: &crate::informer::Informer<K>,
    meta: &ObjectMeta,
) -> Option<std::sync::Arc<K>> {
    let r = controller_of(meta)?;
    let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    if r.kind != K::kind(&()) || group != K::group(&()) {
        return None;
    }
    let obj = informer.get(meta.namespace.as_deref(), &r.name)?;
    (obj.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(obj)
}

/// The cached controllers in `namespace` whose (non-empty) selector matches `labels`.
pub fn selecting<K, F>(
    informer: &crate::informer::Informer<K>,
    namespace: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    selector_of: F,
) -> Vec<std::sync::Arc<K>>
where
    K: crate::informer::Object,
    F: Fn(&K) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
{
    informer
        .list_namespace(namespace)
        .into_iter()
        .filter(|o| {
            crate::pod_util::selector(selector_of(o))
                .is_ok_and(|s| !s.is_empty() && crate::pod_util::matches(&s, labels))
        })
        .collect()
}

/// The controllers a change of a dependent concerns (upstream's pod event
/// handlers): the one it left, the one it has, or for an orphan the ones whose
/// selector matches it.
pub struct Affected<K> {
    /// The controller before the change, when the change moved it elsewhere.
    pub previous: Option<std::sync::Arc<K>>,
    /// The controller now.
    pub current: Option<std::sync::Arc<K>>,
    /// For an orphan: the controllers that may adopt it.
    pub candidates: Vec<std::sync::Arc<K>>,
}

/// Which of `owners` an added or updated dependent concerns; `None` when the
/// update changed nothing (a resync).
pub fn affected<K, D, F>(
    owners: &crate::informer::Informer<K>,
    old: Option<&D>,
    new: &D,
    selector_of: F,
) -> Option<Affected<K>>
where
    K: crate::informer::Object,
    D: Resource,
    F: Fn(&K) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
{
    let (old_meta, new_meta) = (old.map(|o| o.meta()), new.meta());
    if old_meta.is_some_and(|o| o.resource_version == new_meta.resource_version) {
        return None;
    }
    let moved = old_meta.is_some_and(|o| {
        controller_of(o).map(|r| &r.uid) != controller_of(new_meta).map(|r| &r.uid)
    });
    let previous = old_meta.filter(|_| moved).and_then(|o| resolve(owners, o));
    let current = resolve(owners, new_meta);
    let candidates = if current.is_none() && controller_of(new_meta).is_none() {
        selecting(
            owners,
            new_meta.namespace.as_deref().unwrap_or_default(),
            new_meta.labels.as_ref(),
            selector_of,
        )
    } else {
        Vec::new()
    };
    Some(Affected {
        previous,
        current,
        candidates,
    })
}

/// What a controller should do with an object it looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching: counts as ours.
    Owned,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let it go.
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// Upstream's `ClaimObject` decision for one object.
pub fn classify(owner_uid: &str, owner_deleting: bool, matches: bool, obj: &ObjectMeta) -> Claim {
    match controller_of(obj) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // An owner being deleted releases nothing (the GC handles its dependents).
        Some(_) if owner_deleting => Claim::Owned,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || obj.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Adds `owner` as controller of `obj` (fails with a conflict if `obj` changed).
pub async fn adopt<K>(api: &Api<K>, obj: &K, owner: OwnerReference) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    set_owner_references(api, obj, refs).await
}

/// Removes the owner reference with `owner_uid` from `obj`.
pub async fn release<K>(api: &Api<K>, obj: &K, owner_uid: &str) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    set_owner_references(api, obj, refs).await
}

/// Replaces the owner references of `obj`, provided it is still the version we saw.
async fn set_owner_references<K>(
    api: &Api<K>,
    obj: &K,
    refs: Vec<OwnerReference>,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    patch_metadata_field(api, obj.meta(), "ownerReferences", json!(refs)).await
}

/// Sets one `metadata` field of the object `meta` describes, provided the object
/// is still that version (same uid and resourceVersion): a JSON patch with tests.
pub async fn patch_metadata_field<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    field: &str,
    value: serde_json::Value,
) -> Result<K, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!([
        {"op": "test", "path": "/metadata/uid", "value": meta.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        {"op": "add", "path": format!("/metadata/{field}"), "value": value},
    ]);
    let name = meta.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(patch).expect("a JSON patch")),
    )
    .await
}

/// Claims `candidates` for `owner` (upstream's `ClaimObjects`): keeps those it
/// controls that still match (`matches`), adopts matching orphans once the API (not
/// a cache) confirms the owner is alive and unchanged, releases those that stopped
/// matching. Returns the objects the owner controls afterwards.
pub async fn claim<O, K, F>(
    client: &kube::Client,
    owner: &O,
    candidates: Vec<std::sync::Arc<K>>,
    matches: F,
) -> Result<Vec<std::sync::Arc<K>>, kube::Error>
where
    O: crate::informer::Object + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K: crate::informer::Object + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    F: Fn(&K) -> bool,
{
    let meta = owner.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let deleting = meta.deletion_timestamp.is_some();
    let ns = meta.namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let mut owned = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for obj in candidates {
        match classify(&uid, deleting, matches(&obj), obj.meta()) {
            Claim::Owned => owned.push(obj),
            Claim::Ignore => {}
            Claim::Adopt => {
                if can_adopt.is_none() {
                    let owners: Api<O> = Api::namespaced(client.clone(), &ns);
                    let fresh = owners
                        .get_opt(meta.name.as_deref().unwrap_or_default())
                        .await?;
                    can_adopt = Some(fresh.is_some_and(|f| {
                        f.meta().uid == meta.uid && f.meta().deletion_timestamp.is_none()
                    }));
                }
                if can_adopt != Some(true) {
                    continue;
                }
                match adopt(&api, obj.as_ref(), controller_ref(owner)).await {
                    Ok(o) => owned.push(std::sync::Arc::new(o)),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
                    Err(e) => return Err(e),
                }
            }
            Claim::Release => match release(&api, obj.as_ref(), &uid).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(owned)
}

/// Writes an object's status through the `status` subresource (`set` fills it in),
/// reading the object again after a conflict (a few times: the status is the
/// controller's alone, only other parts of the object change under it). `Ok(None)`
/// when it is gone.
pub async fn write_status<K>(
    api: &Api<K>,
    obj: &K,
    set: impl Fn(&mut K),
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + serde::Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut cur = obj.clone();
    const ATTEMPTS: usize = 5;
    for attempt in 0..ATTEMPTS {
        set(&mut cur);
        match api
            .replace_status(&name, &kube::api::PostParams::default(), &cur)
            .await
        {
            Ok(o) => return Ok(Some(o)),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt + 1 < ATTEMPTS => {
                match api.get_opt(&name).await? {
                    Some(fresh) if fresh.meta().uid == obj.meta().uid => cur = fresh,
                    _ => return Ok(None),
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: Option<(&str, bool)>) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claims_follow_upstream() {
        assert_eq!(
            classify("a", false, true, &meta(Some(("a", true)))),
            Claim::Owned
        );
        assert_eq!(
            classify("a", false, false, &meta(Some(("a", true)))),
            Claim::Release
        );
        assert_eq!(
            classify("a", true, false, &meta(Some(("a", true)))),
            Claim::Owned
        );
        assert_eq!(
            classify("a", false, true, &meta(Some(("b", true)))),
            Claim::Ignore
        );
        assert_eq!(classify("a", false, true, &meta(None)), Claim::Adopt);
        // A non-controller reference does not make an object owned.
        assert_eq!(
            classify("a", false, true, &meta(Some(("b", false)))),
            Claim::Adopt
        );
        assert_eq!(classify("a", true, true, &meta(None)), Claim::Ignore);
        assert_eq!(classify("a", false, false, &meta(None)), Claim::Ignore);
    }
}
