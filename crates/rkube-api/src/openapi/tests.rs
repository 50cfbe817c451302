use serde_json::{Value, json};

use super::*;
use crate::resource::{Scope, builtin_resources};
use crate::schema::builtin;

fn surface<'a>(builtins: &'a [ResourceInfo], custom: &'a [CustomResource]) -> ApiSurface<'a> {
    ApiSurface {
        catalog: builtin(),
        builtins,
        custom,
    }
}

fn widget() -> CustomResource {
    let gvk = GroupVersionKind::new("example.com", "v1", "Widget");
    let schema = CustomSchema::from_crd_schema(
        gvk,
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "size": {"type": "integer", "description": "How big."},
            "port": {"x-kubernetes-int-or-string": true}
        }}}}),
    )
    .unwrap();
    CustomResource {
        info: ResourceInfo {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            scope: Scope::Namespaced,
            verbs: crate::resource::STANDARD_VERBS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            stored: true,
        },
        schema,
    }
}

/// kubectl decides on server-side field validation by finding a PATCH operation
/// with the kind's x-kubernetes-group-version-kind and a fieldValidation parameter.
#[test]
fn patch_operations_carry_gvk_field_validation_and_patch_types() {
    let b = builtin_resources();
    let doc = surface(&b, &[]).v3_document("apps", "v1").unwrap();
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"fieldValidation") && params.contains(&"force"),
        "{params:?}"
    );
    let content = patch["requestBody"]["content"].as_object().unwrap();
    for t in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(t), "{t}");
    }
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    assert!(
        doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object(),
        "list for all namespaces"
    );
    assert!(
        doc["paths"]["/apis/apps/v1/watch/namespaces/{namespace}/deployments/{name}"]["get"]
            .is_object()
    );
}

#[test]
fn component_schemas_are_complete_with_extensions() {
    let b = builtin_resources();
    let doc = surface(&b, &[]).v3_document("apps", "v1").unwrap();
    let schemas = &doc["components"]["schemas"];
    let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        deploy["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let pod_spec = &schemas["io.k8s.api.core.v1.PodSpec"];
    let containers = &pod_spec["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        containers["items"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["protocol"]["default"],
        "TCP"
    );
    assert_eq!(
        pod_spec["properties"]["nodeSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
    let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["format"], "int-or-string");
    // Every $ref points at a component of the same document.
    let mut refs = Vec::new();
    collect(&doc, &mut refs);
    for r in refs {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(schemas.get(name).is_some(), "dangling {r}");
    }
    assert!(
        schemas.get("io.k8s.api.batch.v1.Job").is_none(),
        "only what apps/v1 reaches"
    );
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

#[test]
fn custom_resources_never_offer_strategic_merge_patch() {
    let b = builtin_resources();
    let custom = [widget()];
    let s = surface(&b, &custom);
    let doc = s.v3_document("example.com", "v1").unwrap();
    let patch =
        &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/merge-patch+json"));
    let schemas = &doc["components"]["schemas"];
    let widget = &schemas["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["port"]["x-kubernetes-int-or-string"],
        true
    );
    assert_eq!(
        widget["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    assert!(schemas["com.example.v1.WidgetList"].is_object());
    let index = s.v3_index();
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("/openapi/v3/apis/example.com/v1?hash="));
    assert!(index["paths"]["api/v1"].is_object());
}

#[test]
fn hashes_are_stable_and_follow_content() {
    let b = builtin_resources();
    let s = surface(&b, &[]);
    let a = serde_json::to_vec(&s.v3_document("", "v1").unwrap()).unwrap();
    let again = serde_json::to_vec(&s.v3_document("", "v1").unwrap()).unwrap();
    assert_eq!(hash(&a), hash(&again));
    let apps = serde_json::to_vec(&s.v3_document("apps", "v1").unwrap()).unwrap();
    assert_ne!(hash(&a), hash(&apps));
    assert!(s.v3_document("nothing.example", "v1").is_none());
}

#[test]
fn swagger_v2_document() {
    let b = builtin_resources();
    let custom = [widget()];
    let doc = surface(&b, &custom).v2_document();
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    assert_eq!(
        defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(
        patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&json!("application/strategic-merge-patch+json"))
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["in"] == "body")
    );
    assert!(defs["com.example.v1.Widget"].is_object());
}
