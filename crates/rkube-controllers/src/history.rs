//! ControllerRevisions: the template history of StatefulSets and DaemonSets, kept as
//! upstream's controller history keeps it. A revision stores the patch that puts
//! its template back (`{"spec":{"template":{..., "$patch":"replace"}}}`, what
//! `kubectl rollout undo` applies), is named `<owner>-<hash>`, carries a revision
//! number, and a template equal to an older revision's reuses that revision under
//! the next number (a rollback).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde_json::{Value, json};

use crate::deployment::hash::{canonical, compute_hash};

/// The label with a revision's hash (on the revision itself).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// The label with the revision a pod was made from (on pods).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The longest owner-name prefix of a revision name.
const MAX_PREFIX: usize = 223;

/// The data a revision stores for a pod template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision's data puts back.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The hash of revision data with the owner's collision count.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    compute_hash(data, collision_count)
}

/// `<owner>-<hash>`, the owner part cut to fit a name.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of `owner`'s template (not yet created).
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = template_patch(template);
    let h = hash(&data, collision_count);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), h.clone());
    let meta = owner.meta();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(meta.name.as_deref().unwrap_or_default(), &h)),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations.clone(),
            owner_references: Some(vec![crate::controller_ref::controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The hash a revision was named with.
pub fn hash_of(rev: &ControllerRevision) -> String {
    rev.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL).cloned())
        .unwrap_or_else(|| {
            let name = rev.metadata.name.as_deref().unwrap_or_default();
            name.rsplit_once('-')
                .map(|(_, h)| h.to_string())
                .unwrap_or_default()
        })
}

/// Whether two revisions put back the same template.
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let d = |r: &ControllerRevision| r.data.as_ref().and_then(|d| canonical(&d.0));
    d(a) == d(b)
}

/// Oldest first: by number, then creation, then name.
pub fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number the next revision gets.
pub fn next_revision(revs: &[ControllerRevision]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Errors writing revisions.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// What [`find_or_create`] settled on.
pub struct Revisions {
    /// The revision of the owner's template now.
    pub update: ControllerRevision,
    /// The collision count to record in the owner's status.
    pub collision_count: Option<i32>,
    /// Every revision after the change, oldest first.
    pub all: Vec<ControllerRevision>,
}

/// The revision of `owner`'s current template: an equal existing revision (moved
/// to the next number unless it is already the latest), or a new one. A name taken
/// by other data raises the collision count and tries again, as upstream.
pub async fn find_or_create<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    mut revs: Vec<ControllerRevision>,
    mut collision_count: Option<i32>,
) -> Result<Revisions, HistoryError> {
    sort(&mut revs);
    let next = next_revision(&revs);
    let candidate = new_revision(owner, template, next, collision_count);
    let equal_at: Vec<usize> = (0..revs.len())
        .filter(|i| equal(&revs[*i], &candidate))
        .collect();
    if let Some(&i) = equal_at.last() {
        if i + 1 == revs.len() {
            let update = revs[i].clone();
            return Ok(Revisions {
                update,
                collision_count,
                all: revs,
            });
        }
        // An older template came back: it becomes the newest revision.
        let name = revs[i].metadata.name.clone().unwrap_or_default();
        let updated = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"revision": next})),
            )
            .await?;
        revs[i] = updated.clone();
        sort(&mut revs);
        return Ok(Revisions {
            update: updated,
            collision_count,
            all: revs,
        });
    }
    let mut rev = candidate;
    loop {
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => {
                revs.push(created.clone());
                return Ok(Revisions {
                    update: created,
                    collision_count,
                    all: revs,
                });
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let name = rev.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await?;
                if equal(&existing, &rev)
                    && existing.metadata.owner_references == rev.metadata.owner_references
                {
                    if !revs
                        .iter()
                        .any(|r| r.metadata.name == existing.metadata.name)
                    {
                        revs.push(existing.clone());
                    }
                    return Ok(Revisions {
                        update: existing,
                        collision_count,
                        all: revs,
                    });
                }
                let c = collision_count.unwrap_or(0).saturating_add(1);
                collision_count = Some(c);
                rev = new_revision(owner, template, next, collision_count);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes the oldest revisions that no pod, and neither the current nor the update
/// revision, uses, beyond `limit` of them.
pub async fn truncate(
    api: &Api<ControllerRevision>,
    revs: &[ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Result<(), HistoryError> {
    let mut history: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let limit = limit.max(0) as usize;
    if history.len() <= limit {
        return Ok(());
    }
    history.sort_by_key(|r| r.revision);
    let excess = history.len() - limit;
    for r in &history[..excess] {
        match api
            .delete(
                r.metadata.name.as_deref().unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if crate::api_error::is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;

    fn set(image: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1",
                "annotations": {"kubernetes.io/change-cause": "why"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
        .unwrap()
    }

    fn template(s: &StatefulSet) -> PodTemplateSpec {
        s.spec.as_ref().unwrap().template.clone()
    }

    #[test]
    fn a_revision_stores_a_replacing_patch_and_reads_back() {
        let s = set("nginx");
        let r = new_revision(&s, &template(&s), 3, None);
        let data = &r.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
        assert_eq!(template_of(&r).unwrap(), template(&s));
        let name = r.metadata.name.clone().unwrap();
        assert_eq!(name, format!("web-{}", hash_of(&r)));
        assert_eq!(r.revision, 3);
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "web");
        // kubectl rollout history shows the change cause of the owner.
        assert_eq!(
            r.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"],
            "why"
        );
        let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
    }

    #[test]
    fn equal_templates_make_equal_revisions_and_collisions_rename() {
        let a = set("nginx");
        let b = set("nginx:1.27");
        let ra = new_revision(&a, &template(&a), 1, None);
        let ra2 = new_revision(&a, &template(&a), 2, None);
        let rb = new_revision(&b, &template(&b), 2, None);
        assert!(equal(&ra, &ra2));
        assert!(!equal(&ra, &rb));
        assert_eq!(ra.metadata.name, ra2.metadata.name);
        let rc = new_revision(&a, &template(&a), 1, Some(1));
        assert_ne!(ra.metadata.name, rc.metadata.name);
    }

    #[test]
    fn revisions_sort_by_number_and_the_next_follows_the_highest() {
        let s = set("nginx");
        let mut revs = vec![
            new_revision(&s, &template(&s), 4, None),
            new_revision(&set("a"), &template(&set("a")), 1, None),
        ];
        sort(&mut revs);
        assert_eq!(revs[0].revision, 1);
        assert_eq!(next_revision(&revs), 5);
        assert_eq!(next_revision(&[]), 1);
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "abc").len(), MAX_PREFIX + 4);
    }
}
