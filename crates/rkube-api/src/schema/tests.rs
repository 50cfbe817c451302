use serde_json::json;

use super::semantics::PATCH_STRATEGIES;
use super::*;
use crate::resource::builtin_resources;

fn gvk(g: &str, v: &str, k: &str) -> GroupVersionKind {
    GroupVersionKind::new(g, v, k)
}

#[test]
fn every_stored_builtin_resource_has_a_schema_and_a_list_schema() {
    let c = builtin();
    for r in builtin_resources() {
        assert!(c.kind(&r.gvk()).is_some(), "no schema for {}", r.gvk());
        if r.stored {
            let list = gvk(&r.group, &r.version, &r.list_kind());
            assert!(c.kind(&list).is_some(), "no schema for {list}");
        }
    }
}

#[test]
fn deployment_fields_carry_types_and_descriptions() {
    let c = builtin();
    let deploy = c.kind_schema(&gvk("apps", "v1", "Deployment")).unwrap();
    let replicas = c.schema_at(deploy, "spec.replicas").unwrap();
    assert_eq!(
        replicas.ty,
        Type::Integer {
            format: Some("int32".into())
        }
    );
    assert!(
        replicas
            .description
            .as_deref()
            .unwrap()
            .contains("desired pods")
    );
    let containers = c.field_at(deploy, "spec.template.spec.containers").unwrap();
    assert_eq!(containers.merge_key.as_deref(), Some("name"));
    assert!(containers.patch_strategy.merge);
    let Type::Array(a) = &containers.schema.ty else {
        panic!("containers is a list")
    };
    assert_eq!(a.list_type, ListType::Map(vec!["name".into()]));
    assert_eq!(go_type_name(c, &a.items), "v1.Container");
    // The top-level kind does not require metadata (k8s-openapi does).
    assert!(c.object(deploy).unwrap().required.is_empty());
}

#[test]
fn list_semantics_come_from_the_tables() {
    let c = builtin();
    let pod = c.kind_schema(&gvk("", "v1", "Pod")).unwrap();
    let ports = c.field_at(pod, "spec.containers.ports").unwrap();
    assert_eq!(ports.merge_key.as_deref(), Some("containerPort"));
    let Type::Array(a) = &ports.schema.ty else {
        panic!()
    };
    assert_eq!(
        a.list_type,
        ListType::Map(vec!["containerPort".into(), "protocol".into()])
    );
    let protocol = c.schema_at(pod, "spec.containers.ports.protocol").unwrap();
    assert_eq!(protocol.default.as_deref(), Some(&json!("TCP")));
    let finalizers = c.field_at(pod, "metadata.finalizers").unwrap();
    assert!(finalizers.patch_strategy.merge && finalizers.merge_key.is_none());
    let Type::Array(a) = &finalizers.schema.ty else {
        panic!()
    };
    assert_eq!(a.list_type, ListType::Set);
    let volumes = c.field_at(pod, "spec.volumes").unwrap();
    assert_eq!(
        volumes.patch_strategy.to_extension().as_deref(),
        Some("merge,retainKeys")
    );
    let node_selector = c.field_at(pod, "spec.nodeSelector").unwrap();
    let Type::Map(m) = &node_selector.schema.ty else {
        panic!()
    };
    assert_eq!(m.map_type, MapKind::Atomic);
    let tolerations = c.field_at(pod, "spec.tolerations").unwrap();
    assert!(tolerations.patch_strategy.is_empty());
    let selector = c
        .schema_at(
            c.kind_schema(&gvk("apps", "v1", "Deployment")).unwrap(),
            "spec.selector",
        )
        .unwrap();
    assert_eq!(c.object(selector).unwrap().struct_type, MapKind::Atomic);
    let strategy = c
        .field_at(
            c.kind_schema(&gvk("apps", "v1", "Deployment")).unwrap(),
            "spec.strategy",
        )
        .unwrap();
    assert!(strategy.patch_strategy.retain_keys && !strategy.patch_strategy.merge);
}

#[test]
fn special_types_are_recognised() {
    let c = builtin();
    let pod = c.kind_schema(&gvk("", "v1", "Pod")).unwrap();
    let limits = c
        .schema_at(pod, "spec.containers.resources.limits")
        .unwrap();
    let Type::Map(m) = &c.resolve(limits).ty else {
        panic!("limits is a map")
    };
    assert_eq!(c.resolve(&m.values).ty, Type::Quantity);
    let port = c
        .schema_at(pod, "spec.containers.livenessProbe.httpGet.port")
        .unwrap();
    assert_eq!(c.resolve(port).ty, Type::IntOrString);
    let ts = c.schema_at(pod, "metadata.creationTimestamp").unwrap();
    assert_eq!(
        c.resolve(ts).ty,
        Type::String {
            format: Some("date-time".into())
        }
    );
    let rev = c
        .kind_schema(&gvk("apps", "v1", "ControllerRevision"))
        .unwrap();
    let data = c.object(c.schema_at(rev, "data").unwrap()).unwrap();
    assert!(data.preserve_unknown_fields);
    let crd = c
        .kind_schema(&gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        ))
        .unwrap();
    let default = c
        .schema_at(crd, "spec.versions.schema.openAPIV3Schema.default")
        .unwrap();
    assert_eq!(c.resolve(default).ty, Type::Any);
}

/// The hand-written patch table names real fields, and every merge key agrees with
/// the generated list table's first map key.
#[test]
fn patch_strategy_table_agrees_with_generated_list_types() {
    let c = builtin();
    for (def, field, strategy, key) in PATCH_STRATEGIES {
        let id = c
            .lookup(def)
            .unwrap_or_else(|| panic!("{def} is not a definition"));
        let object = c.object(&c.definition(id).schema).unwrap();
        let f = object
            .field(field)
            .unwrap_or_else(|| panic!("{def} has no field {field}"));
        if strategy.contains("merge") {
            let Type::Array(a) = &f.schema.ty else {
                panic!("{def}.{field} is not a list")
            };
            match (&a.list_type, key.is_empty()) {
                (ListType::Map(keys), false) => assert_eq!(keys[0].as_ref(), *key, "{def}.{field}"),
                (ListType::Set, true) => {}
                other => {
                    panic!("{def}.{field}: list type {other:?} disagrees with merge key {key:?}")
                }
            }
        }
    }
}

#[test]
fn generated_tables_name_real_fields() {
    let c = builtin();
    let mut checked = 0;
    // The table covers every group k8s-openapi knows; rkube serves fewer.
    for (def, field, _, _) in list_types::LIST_TYPES {
        if let Some(id) = c.lookup(def) {
            let o = c.object(&c.definition(id).schema).unwrap();
            assert!(o.field(field).is_some(), "{def}.{field}");
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} entries apply");
}

#[test]
fn crd_schema_converts_extensions() {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                        "items": {"type": "object", "properties": {"containerPort": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}
                    },
                    "port": {"x-kubernetes-int-or-string": true},
                    "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-map-type": "atomic"},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
                }
            }
        }
    });
    let cs = CustomSchema::from_crd_schema(gvk("example.com", "v1", "Widget"), &schema).unwrap();
    let c = builtin();
    let ports = c.field_at(&cs.root, "spec.ports").unwrap();
    let Type::Array(a) = &ports.schema.ty else {
        panic!()
    };
    assert_eq!(
        a.list_type,
        ListType::Map(vec!["containerPort".into(), "protocol".into()])
    );
    assert_eq!(
        c.schema_at(&cs.root, "spec.port").unwrap().ty,
        Type::IntOrString
    );
    assert!(
        c.object(c.schema_at(&cs.root, "spec.config").unwrap())
            .unwrap()
            .preserve_unknown_fields
    );
    let Type::Map(m) = &c.schema_at(&cs.root, "spec.labels").unwrap().ty else {
        panic!()
    };
    assert_eq!(m.map_type, MapKind::Atomic);
    let template = c
        .object(c.schema_at(&cs.root, "spec.template").unwrap())
        .unwrap();
    assert!(template.embedded_resource && template.field("metadata").is_some());
    assert!(
        c.schema_at(&cs.root, "metadata.labels").is_some(),
        "metadata is ObjectMeta"
    );
    let replicas = c.schema_at(&cs.root, "spec.replicas").unwrap();
    assert_eq!(replicas.constraints.as_ref().unwrap()["minimum"], json!(0));
}

#[test]
fn crd_schema_errors_name_the_path() {
    let bad = json!({"type": "object", "properties": {"spec": {"type": "array"}}});
    let err = CustomSchema::from_crd_schema(gvk("example.com", "v1", "W"), &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "openAPIV3Schema.properties[spec].items: Required value: must be specified for arrays"
    );
    let bad = json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "map"}}});
    assert!(matches!(
        CustomSchema::from_crd_schema(gvk("example.com", "v1", "W"), &bad),
        Err(CrdSchemaError::ListMapKeys { .. })
    ));
}

#[test]
fn kind_schemas_serve_builtins_and_custom_resources() {
    let mut kinds = KindSchemas::default();
    let widget = gvk("example.com", "v1", "Widget");
    assert!(kinds.get(&widget).is_none());
    assert!(kinds.get(&gvk("apps", "v1", "Deployment")).is_some());
    kinds.insert(CustomSchema::schemaless(widget.clone()));
    assert!(kinds.get(&widget).is_some() && kinds.is_custom(&widget));
    kinds.remove(&widget);
    assert!(kinds.get(&widget).is_none());
}
