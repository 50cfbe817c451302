//! Custom resources: turning CRDs into served resources, and cleaning up a CRD's
//! objects when it is deleted.

use std::sync::Arc;

use rkube_api::resource::{STANDARD_VERBS, Scope, Subresource};
use rkube_api::{ResourceInfo, meta};
use serde_json::{Value, json};

use crate::registry::Served;
use crate::server::ApiServer;
use crate::storage::{Part, WriteOptions};
use crate::strategy::Strategy;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// The finalizer that holds a CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Rules for custom resources: generation tracking; schema validation comes from the
/// CRD's OpenAPI schema.
pub struct CustomResourceStrategy {
    pub has_status: bool,
}

impl Strategy for CustomResourceStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        let mut errs = meta::validate_path_segment_name(name);
        if name.is_empty() {
            errs.push("name or generateName is required".into());
        }
        errs
    }
}

/// Kubernetes' version priority: GA before beta before alpha, higher first.
pub fn version_priority(v: &str) -> (u8, i64, i64) {
    let rest = match v.strip_prefix('v') {
        Some(r) => r,
        None => return (0, 0, 0),
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<i64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2u8), ("alpha", 1u8)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<i64>()
        {
            return (rank, major, minor);
        }
    }
    (0, 0, 0)
}

fn names(crd: &Value, field: &str) -> Vec<String> {
    crd.pointer(&format!("/spec/names/{field}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The served resources of one CRD, one per served version, preferred first.
pub fn served_from_crd(crd: &Value) -> Vec<Arc<Served>> {
    if meta::deletion_timestamp(crd).is_some() {
        return Vec::new();
    }
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = s("/spec/group");
    let plural = s("/spec/names/plural");
    let kind = s("/spec/names/kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let mut singular = s("/spec/names/singular");
    if singular.is_empty() {
        singular = kind.to_lowercase();
    }
    let scope = if s("/spec/scope") == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    let mut versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| {
        let va = a.get("name").and_then(Value::as_str).unwrap_or("");
        let vb = b.get("name").and_then(Value::as_str).unwrap_or("");
        version_priority(vb)
            .cmp(&version_priority(va))
            .then(va.cmp(vb))
    });
    versions
        .into_iter()
        .map(|v| {
            let version = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut subresources = Vec::new();
            let has_status = v.pointer("/subresources/status").is_some();
            if v.pointer("/subresources/scale").is_some() {
                subresources.push(Subresource {
                    name: "scale".into(),
                    group: "autoscaling".into(),
                    version: "v1".into(),
                    kind: "Scale".into(),
                    verbs: vec!["get".into(), "patch".into(), "update".into()],
                });
            }
            if has_status {
                subresources.push(Subresource {
                    name: "status".into(),
                    group: group.clone(),
                    version: version.clone(),
                    kind: kind.clone(),
                    verbs: vec!["get".into(), "patch".into(), "update".into()],
                });
            }
            let gvk = rkube_api::GroupVersionKind::new(&group, &version, &kind);
            let custom_schema = match v.pointer("/schema/openAPIV3Schema") {
                Some(schema) => rkube_api::schema::CustomSchema::from_crd_schema(gvk.clone(), schema)
                    .unwrap_or_else(|e| {
                        tracing::warn!("CRD {group}/{version} {kind}: unusable schema ({e}); objects are not checked");
                        rkube_api::schema::CustomSchema::schemaless(gvk)
                    }),
                None => rkube_api::schema::CustomSchema::schemaless(gvk),
            };
            Arc::new(Served {
                info: ResourceInfo {
                    group: group.clone(),
                    version,
                    kind: kind.clone(),
                    plural: plural.clone(),
                    singular: singular.clone(),
                    scope,
                    verbs: STANDARD_VERBS.iter().map(|v| v.to_string()).collect(),
                    short_names: names(crd, "shortNames"),
                    categories: names(crd, "categories"),
                    subresources,
                    stored: true,
                },
                strategy: Arc::new(CustomResourceStrategy { has_status }),
                crd_version: Some(v.clone()),
                custom_schema: Some(custom_schema),
            })
        })
        .collect()
}

/// Rebuilds the registry's custom resources from the CRDs in the cache.
pub fn sync_registry(server: &ApiServer) {
    let (crds, _) = server.cache.list(CRD_PREFIX);
    let custom = crds
        .iter()
        .flat_map(|o| served_from_crd(&o.value()))
        .collect();
    server.registry.set_custom(custom);
}

/// Follows CRD changes: keeps the registry current and removes a deleted CRD's
/// objects before letting the CRD go.
pub fn spawn_watcher(server: &Arc<ApiServer>) {
    let weak = Arc::downgrade(server);
    let Ok(mut sub) = server.cache.subscribe(CRD_PREFIX, None) else {
        return;
    };
    tokio::spawn(async move {
        // CRDs already being deleted when the server starts.
        if let Some(s) = weak.upgrade() {
            let (crds, _) = s.cache.list(CRD_PREFIX);
            for o in crds {
                cleanup_if_deleting(&s, &o.value()).await;
            }
        }
        loop {
            let ev = match sub.live.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(s) = weak.upgrade() {
                        sync_registry(&s);
                    }
                    continue;
                }
                Err(_) => {
                    // The cache was reloaded: resubscribe.
                    let Some(s) = weak.upgrade() else { return };
                    sync_registry(&s);
                    match s.cache.subscribe(CRD_PREFIX, None) {
                        Ok(n) => sub = n,
                        Err(_) => return,
                    }
                    continue;
                }
            };
            if !ev.obj.key.starts_with(CRD_PREFIX) {
                continue;
            }
            let Some(s) = weak.upgrade() else { return };
            sync_registry(&s);
            if ev.kind != crate::cache::EventType::Deleted {
                cleanup_if_deleting(&s, &ev.obj.value()).await;
            }
        }
    });
}

async fn cleanup_if_deleting(server: &Arc<ApiServer>, crd: &Value) {
    if meta::deletion_timestamp(crd).is_none()
        || !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER)
    {
        return;
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group.is_empty() || plural.is_empty() {
        return;
    }
    let prefix = format!("/registry/{group}/{plural}/");
    if let Ok(list) = server.store.list(&prefix, Default::default()).await {
        for kv in list.kvs {
            let _ = server.store.delete(&kv.key, None).await;
        }
    }
    let Some(crds) = server
        .registry
        .by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
    else {
        return;
    };
    let name = meta::name(crd).unwrap_or_default().to_string();
    let opts = WriteOptions::default();
    let result = server
        .update_object(&crds, None, &name, Part::All, &opts, |cur| {
            let mut cur = cur.cloned().unwrap_or(Value::Null);
            let left: Vec<String> = meta::finalizers(&cur)
                .into_iter()
                .filter(|f| f != CLEANUP_FINALIZER)
                .collect();
            meta::metadata_mut(&mut cur).insert("finalizers".into(), json!(left));
            if let Some(m) = cur.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(cur)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("removing the cleanup finalizer of CRD {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_upstream() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        v.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn crd_becomes_served_resources() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "scope": "Namespaced",
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        });
        let served = served_from_crd(&crd);
        assert_eq!(served.len(), 2);
        assert_eq!(served[0].info.version, "v1");
        assert!(served[0].info.subresource("status").is_some());
        assert_eq!(served[0].info.singular, "widget");
        assert_eq!(served[0].info.short_names, vec!["wd"]);
        assert_eq!(
            served[0].info.key(Some("ns"), "a"),
            "/registry/example.com/widgets/ns/a"
        );
    }
}
