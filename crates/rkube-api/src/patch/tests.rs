use serde_json::{Value, json};

use super::*;
use crate::resource::GroupVersionKind;
use crate::schema::{CustomSchema, builtin};

fn smp(kind: (&str, &str, &str), original: Value, patch: Value) -> Result<Value, PatchError> {
    let c = builtin();
    let root = c
        .kind_schema(&GroupVersionKind::new(kind.0, kind.1, kind.2))
        .unwrap();
    apply_strategic_merge_patch(c, root, original, patch)
}

const DEPLOY: (&str, &str, &str) = ("apps", "v1", "Deployment");
const POD: (&str, &str, &str) = ("", "v1", "Pod");

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}, "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "busybox"}
                    ],
                    "tolerations": [{"key": "k1", "operator": "Exists"}]
                }
            }
        }
    })
}

fn containers(v: &Value) -> Vec<&str> {
    v["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// `kubectl set image deploy/web c=nginx:1.26`.
#[test]
fn set_image_merges_containers_by_name_in_the_order_asked() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:1.26", "name": "c"}]}}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    let c0 = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c0["image"], "nginx:1.26");
    assert_eq!(
        c0["ports"][0]["containerPort"], 80,
        "other fields of the item stay"
    );
    assert_eq!(containers(&out), ["c", "sidecar"]);
}

/// `kubectl rollout restart deploy/web`.
#[test]
fn rollout_restart_adds_a_template_annotation() {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    let meta = &out["spec"]["template"]["metadata"];
    assert_eq!(
        meta["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2025-01-01T00:00:00Z"
    );
    assert_eq!(meta["labels"]["app"], "web");
}

/// A three-way patch of client-side apply removing a container, changing another,
/// and dropping a label.
#[test]
fn apply_three_way_patch_deletes_and_reorders() {
    let patch = json!({
        "metadata": {"labels": {"tier": null}},
        "spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "sidecar", "$patch": "delete"}, {"name": "c", "image": "nginx:1.27"}]
        }}}
    });
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(containers(&out), ["c"]);
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn new_items_go_where_set_element_order_puts_them() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "init"}, {"name": "c"}, {"name": "sidecar"}],
        "containers": [{"name": "init", "image": "alpine"}]}}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(containers(&out), ["init", "c", "sidecar"]);
    // Only the order changes: nothing in the patch list.
    let patch = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "c"}]}}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(containers(&out), ["sidecar", "c"]);
}

#[test]
fn server_only_items_keep_their_place() {
    let mut original = deployment();
    original["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "x"}, {"name": "injected", "image": "y"}, {"name": "b", "image": "z"}]);
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "z2"}]}}}});
    let out = smp(DEPLOY, original, patch).unwrap();
    assert_eq!(containers(&out), ["a", "injected", "b"]);
}

#[test]
fn env_merges_by_name_and_atomic_lists_are_replaced() {
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "c", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}],
        "tolerations": [{"key": "k2", "operator": "Exists"}]}}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "k2", "operator": "Exists"}])
    );
}

#[test]
fn patch_replace_and_delete_directives() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "y"}, {"$patch": "replace"}]}}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(containers(&out), ["x"]);
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({}));
}

/// Switching a Deployment to Recreate: `retainKeys` clears rollingUpdate.
#[test]
fn retain_keys_clears_fields_not_named() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = smp(DEPLOY, deployment(), patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 2}}}});
    assert_eq!(
        smp(DEPLOY, deployment(), bad),
        Err(PatchError::BadRetainKeys)
    );
}

#[test]
fn primitive_lists_with_merge_strategy() {
    let out = smp(
        DEPLOY,
        deployment(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp(
        DEPLOY,
        deployment(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    let out = smp(
        DEPLOY,
        deployment(),
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a"]));
}

#[test]
fn ports_merge_by_container_port() {
    let pod = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]}});
    let patch = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 443, "name": "https"}]}]}});
    let out = smp(POD, pod, patch).unwrap();
    assert_eq!(
        out["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn errors_are_typed() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    assert!(matches!(
        smp(DEPLOY, deployment(), patch),
        Err(PatchError::NoMergeKey { .. })
    ));
    let patch = json!({"metadata": {"labels": {"$patch": "explode"}}});
    let err = smp(DEPLOY, deployment(), patch).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown patch type: \"explode\""),
        "{err}"
    );
    assert!(!err.is_bad_request());
    assert!(
        smp(DEPLOY, deployment(), json!([1]))
            .unwrap_err()
            .is_bad_request()
    );
}

#[test]
fn custom_resources_fall_back_to_merge_semantics() {
    let cs = CustomSchema::from_crd_schema(
        GroupVersionKind::new("example.com", "v1", "Widget"),
        &json!({"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}),
    )
    .unwrap();
    let original = json!({"spec": {"items": [{"name": "a"}, {"name": "b"}], "keep": 1, "drop": 2}});
    let patch = json!({"spec": {"items": [{"name": "c"}], "drop": null}});
    let out = apply_strategic_merge_patch(builtin(), &cs.root, original, patch).unwrap();
    assert_eq!(out, json!({"spec": {"items": [{"name": "c"}], "keep": 1}}));
}

#[test]
fn json_patch_and_merge_patch() {
    let out = apply_json_patch(&deployment(), br#"[{"op":"replace","path":"/spec/replicas","value":5},{"op":"test","path":"/metadata/name","value":"web"}]"#).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    assert!(matches!(
        apply_json_patch(&deployment(), br#"[{"op":"remove","path":"/spec/nope"}]"#),
        Err(PatchError::JsonPatchFailed(_))
    ));
    assert!(matches!(
        apply_json_patch(&deployment(), br#"{"op":"add"}"#),
        Err(PatchError::BadPatch(_))
    ));
    let mut doc = deployment();
    apply_merge_patch(
        &mut doc,
        json!({"metadata": {"labels": {"tier": null, "new": "x"}}, "spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}}),
    );
    assert_eq!(doc["metadata"]["labels"], json!({"app": "web", "new": "x"}));
    assert_eq!(containers(&doc), ["only"]);
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
        Some(PatchType::Merge)
    );
}
