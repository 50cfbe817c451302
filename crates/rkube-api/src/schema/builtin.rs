//! The catalog of built-in kinds, built once from k8s-openapi's `schemars` schemas.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::Resource;
use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates,
    coordination, core, discovery, events, networking, node, policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value};

use super::semantics::{
    ANY_JSON, ATOMIC_STRUCTS, DEFAULTS, LIST_MAP_KEYS, OPAQUE_OBJECTS, PATCH_STRATEGIES,
};
use super::{
    Array, Catalog, DefId, Field, ListKind, ListType, MapKind, MapOf, Object, PatchStrategy,
    Schema, Type, list_types,
};
use crate::resource::{GroupVersionKind, builtin_resources};

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";

/// The catalog of every built-in kind, built on first use and kept for the process.
pub fn builtin() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build)
}

/// A kind with a typed schema and the group-version-kind it is served as.
struct Kind {
    name: String,
    gvk: GroupVersionKind,
    /// Served as a resource with a `<Kind>List`.
    listed: bool,
}

fn kind<T: JsonSchema + Resource>(generator: &mut SchemaGenerator, listed: bool) -> Kind {
    generator.subschema_for::<T>();
    Kind {
        name: T::schema_name().into_owned(),
        gvk: GroupVersionKind::new(T::GROUP, T::VERSION, T::KIND),
        listed,
    }
}

/// Registers every built-in kind with the generator; `true` marks the kinds that are
/// served as resources (and so have a list kind).
fn kinds(g: &mut SchemaGenerator) -> Vec<Kind> {
    use admissionregistration::v1 as admission;
    vec![
        kind::<core::v1::Binding>(g, false),
        kind::<core::v1::ComponentStatus>(g, true),
        kind::<core::v1::ConfigMap>(g, true),
        kind::<core::v1::Endpoints>(g, true),
        kind::<core::v1::Event>(g, true),
        kind::<core::v1::LimitRange>(g, true),
        kind::<core::v1::Namespace>(g, true),
        kind::<core::v1::Node>(g, true),
        kind::<core::v1::PersistentVolumeClaim>(g, true),
        kind::<core::v1::PersistentVolume>(g, true),
        kind::<core::v1::Pod>(g, true),
        kind::<core::v1::PodTemplate>(g, true),
        kind::<core::v1::ReplicationController>(g, true),
        kind::<core::v1::ResourceQuota>(g, true),
        kind::<core::v1::Secret>(g, true),
        kind::<core::v1::ServiceAccount>(g, true),
        kind::<core::v1::Service>(g, true),
        kind::<admission::MutatingWebhookConfiguration>(g, true),
        kind::<admission::ValidatingAdmissionPolicy>(g, true),
        kind::<admission::ValidatingAdmissionPolicyBinding>(g, true),
        kind::<admission::ValidatingWebhookConfiguration>(g, true),
        kind::<apiextensions::v1::CustomResourceDefinition>(g, true),
        kind::<apps::v1::ControllerRevision>(g, true),
        kind::<apps::v1::DaemonSet>(g, true),
        kind::<apps::v1::Deployment>(g, true),
        kind::<apps::v1::ReplicaSet>(g, true),
        kind::<apps::v1::StatefulSet>(g, true),
        kind::<authentication::v1::SelfSubjectReview>(g, false),
        kind::<authentication::v1::TokenReview>(g, false),
        kind::<authentication::v1::TokenRequest>(g, false),
        kind::<authorization::v1::LocalSubjectAccessReview>(g, false),
        kind::<authorization::v1::SelfSubjectAccessReview>(g, false),
        kind::<authorization::v1::SelfSubjectRulesReview>(g, false),
        kind::<authorization::v1::SubjectAccessReview>(g, false),
        kind::<autoscaling::v2::HorizontalPodAutoscaler>(g, true),
        kind::<autoscaling::v1::HorizontalPodAutoscaler>(g, true),
        kind::<autoscaling::v1::Scale>(g, false),
        kind::<batch::v1::CronJob>(g, true),
        kind::<batch::v1::Job>(g, true),
        kind::<certificates::v1::CertificateSigningRequest>(g, true),
        kind::<coordination::v1::Lease>(g, true),
        kind::<discovery::v1::EndpointSlice>(g, true),
        kind::<events::v1::Event>(g, true),
        kind::<networking::v1::IngressClass>(g, true),
        kind::<networking::v1::Ingress>(g, true),
        kind::<networking::v1::NetworkPolicy>(g, true),
        kind::<node::v1::RuntimeClass>(g, true),
        kind::<policy::v1::PodDisruptionBudget>(g, true),
        kind::<policy::v1::Eviction>(g, false),
        kind::<rbac::v1::ClusterRoleBinding>(g, true),
        kind::<rbac::v1::ClusterRole>(g, true),
        kind::<rbac::v1::RoleBinding>(g, true),
        kind::<rbac::v1::Role>(g, true),
        kind::<scheduling::v1::PriorityClass>(g, true),
        kind::<storage::v1::CSIDriver>(g, true),
        kind::<storage::v1::CSINode>(g, true),
        kind::<storage::v1::CSIStorageCapacity>(g, true),
        kind::<storage::v1::StorageClass>(g, true),
        kind::<storage::v1::VolumeAttachment>(g, true),
        kind::<meta::v1::Status>(g, false),
    ]
}

fn build() -> Catalog {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let kinds = kinds(&mut generator);
    generator.subschema_for::<meta::v1::DeleteOptions>();
    generator.subschema_for::<meta::v1::Patch>();
    let defs = generator.take_definitions(false);
    drop(generator);

    // Names first, so references can be resolved while converting.
    let mut names: Vec<String> = defs.keys().cloned().collect();
    for k in kinds.iter().filter(|k| k.listed) {
        names.push(format!("{}List", k.name));
    }
    names.push(WATCH_EVENT.to_string());
    names.sort();
    names.dedup();
    let ids: HashMap<&str, DefId> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), DefId(i as u32)))
        .collect();

    let mut catalog = Catalog::default();
    for name in &names {
        let schema = match defs.get(name) {
            Some(v) => convert_definition(name, v, &ids),
            None if name == WATCH_EVENT => watch_event(&ids),
            None => {
                let item = name.strip_suffix("List").unwrap_or(name);
                list_of(item, &ids)
            }
        };
        catalog.push(name, schema);
    }
    drop(defs);

    for k in &kinds {
        let id = ids[k.name.as_str()];
        catalog.add_gvk(id, k.gvk.clone());
        if k.listed {
            let list = ids[format!("{}List", k.name).as_str()];
            let gvk =
                GroupVersionKind::new(&k.gvk.group, &k.gvk.version, &format!("{}List", k.gvk.kind));
            catalog.add_gvk(list, gvk);
        }
        // Upstream documents `metadata` as optional; k8s-openapi marks it required.
        if let Type::Object(o) = &mut catalog.definition_mut(id).schema.ty {
            o.required.retain(|r| r.as_ref() != "metadata");
        }
    }
    // DeleteOptions and WatchEvent are served in every group-version.
    let mut gvs: Vec<(String, String)> = builtin_resources()
        .into_iter()
        .map(|r| (r.group, r.version))
        .collect();
    gvs.sort();
    gvs.dedup();
    for (group, version) in gvs {
        for (def, kind) in [
            (DELETE_OPTIONS, "DeleteOptions"),
            (WATCH_EVENT, "WatchEvent"),
        ] {
            catalog.add_gvk(ids[def], GroupVersionKind::new(&group, &version, kind));
        }
    }
    apply_semantics(&mut catalog);
    catalog
}

fn convert_definition(name: &str, v: &Value, ids: &HashMap<&str, DefId>) -> Schema {
    let mut schema = convert(v, ids);
    if name == QUANTITY {
        schema.ty = Type::Quantity;
    } else if ANY_JSON.contains(&name) {
        schema.ty = Type::Any;
    } else if OPAQUE_OBJECTS.contains(&name) || name == "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    {
        schema.ty = Type::Object(Box::new(Object {
            preserve_unknown_fields: true,
            ..Object::default()
        }));
    }
    schema
}

/// Converts one schemars schema (JSON Schema with `$ref`s into `$defs`).
fn convert(v: &Value, ids: &HashMap<&str, DefId>) -> Schema {
    let description = v
        .get("description")
        .and_then(Value::as_str)
        .map(Box::<str>::from);
    let format = || {
        v.get("format")
            .and_then(Value::as_str)
            .map(Box::<str>::from)
    };
    let ty = if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r
            .trim_start_matches("#/$defs/")
            .replace("~1", "/")
            .replace("~0", "~");
        match ids.get(name.as_str()) {
            Some(id) => Type::Ref(*id),
            None => Type::Any,
        }
    } else if v.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        Type::IntOrString
    } else {
        match v.get("type").and_then(Value::as_str) {
            Some("object") => {
                if let Some(props) = v.get("properties").and_then(Value::as_object) {
                    Type::Object(Box::new(convert_object(props, v, ids)))
                } else if let Some(values) = v.get("additionalProperties").filter(|a| a.is_object())
                {
                    Type::Map(Box::new(MapOf {
                        values: convert(values, ids),
                        map_type: MapKind::Granular,
                    }))
                } else {
                    Type::Object(Box::new(Object {
                        preserve_unknown_fields: true,
                        ..Object::default()
                    }))
                }
            }
            Some("array") => Type::Array(Box::new(Array {
                items: v
                    .get("items")
                    .map_or_else(|| Schema::new(Type::Any), |i| convert(i, ids)),
                list_type: ListType::Atomic,
            })),
            Some("string") => Type::String { format: format() },
            Some("integer") => Type::Integer { format: format() },
            Some("number") => Type::Number { format: format() },
            Some("boolean") => Type::Boolean,
            _ => Type::Any,
        }
    };
    Schema {
        description,
        ty,
        ..Schema::new(Type::Any)
    }
}

fn convert_object(props: &Map<String, Value>, v: &Value, ids: &HashMap<&str, DefId>) -> Object {
    let mut object = Object {
        fields: props
            .iter()
            .map(|(k, p)| Field::new(k, convert(p, ids)))
            .collect(),
        required: v
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).map(Box::from).collect())
            .unwrap_or_default(),
        ..Object::default()
    };
    object.sort_fields();
    object
}

fn type_meta_fields() -> [Field; 2] {
    [
        Field::new(
            "apiVersion",
            Schema::string().with_description(
                "APIVersion defines the versioned schema of this representation of an object.",
            ),
        ),
        Field::new(
            "kind",
            Schema::string().with_description(
                "Kind is a string value representing the REST resource this object represents.",
            ),
        ),
    ]
}

/// `<Kind>List`: what a list request returns.
fn list_of(item: &str, ids: &HashMap<&str, DefId>) -> Schema {
    let kind = item.rsplit('.').next().unwrap_or(item);
    let [api_version, kind_field] = type_meta_fields();
    let mut object = Object {
        fields: vec![
            api_version,
            Field::new(
                "items",
                Schema::new(Type::Array(Box::new(Array {
                    items: Schema::new(Type::Ref(ids[item])),
                    list_type: ListType::Atomic,
                })))
                .with_description(format!("The {kind} objects of this list.")),
            ),
            kind_field,
            Field::new(
                "metadata",
                Schema::new(Type::Ref(ids[LIST_META])).with_description(
                    "Standard list metadata: the resourceVersion to watch from and the continue token.",
                ),
            ),
        ],
        required: vec!["items".into()],
        ..Object::default()
    };
    object.sort_fields();
    Schema::new(Type::Object(Box::new(object)))
        .with_description(format!("{kind}List is a list of {kind} objects."))
}

/// `WatchEvent`: one event of a watch stream.
fn watch_event(ids: &HashMap<&str, DefId>) -> Schema {
    let object = Object {
        fields: vec![
            Field::new(
                "object",
                Schema::new(Type::Ref(ids[RAW_EXTENSION])).with_description(
                    "The object of the event: for ADDED and MODIFIED its new state, for DELETED its last state, for BOOKMARK only its resourceVersion, for ERROR a Status.",
                ),
            ),
            Field::new(
                "type",
                Schema::string().with_description("ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."),
            ),
        ],
        required: vec!["type".into(), "object".into()],
        ..Object::default()
    };
    Schema::new(Type::Object(Box::new(object)))
        .with_description("Event represents a single event to a watched resource.")
}

/// Puts the data tables onto the converted definitions.
fn apply_semantics(catalog: &mut Catalog) {
    let mut field_mut = |def: &str, field: &str, apply: &mut dyn FnMut(&mut Field)| {
        let Some(id) = catalog.lookup(def) else {
            return;
        };
        if let Type::Object(o) = &mut catalog.definition_mut(id).schema.ty
            && let Ok(i) = o.fields.binary_search_by(|f| f.name.as_ref().cmp(field))
        {
            apply(&mut o.fields[i]);
        }
    };
    for (def, field, kind, keys) in list_types::LIST_TYPES {
        field_mut(def, field, &mut |f| {
            if let Type::Array(a) = &mut f.schema.ty {
                a.list_type = match kind {
                    ListKind::Atomic => ListType::Atomic,
                    ListKind::Set => ListType::Set,
                    ListKind::Map => ListType::Map(keys.iter().map(|k| Box::from(*k)).collect()),
                };
            }
        });
    }
    for (def, field, keys) in LIST_MAP_KEYS {
        field_mut(def, field, &mut |f| {
            if let Type::Array(a) = &mut f.schema.ty {
                a.list_type = ListType::Map(keys.iter().map(|k| Box::from(*k)).collect());
            }
        });
    }
    for (def, field, kind) in list_types::MAP_TYPES {
        field_mut(def, field, &mut |f| {
            if let Type::Map(m) = &mut f.schema.ty {
                m.map_type = *kind;
            }
        });
    }
    for (def, field, strategy, key) in PATCH_STRATEGIES {
        field_mut(def, field, &mut |f| {
            f.patch_strategy = PatchStrategy::parse(strategy);
            f.merge_key = (!key.is_empty()).then(|| Box::from(*key));
        });
    }
    for (def, field, default) in DEFAULTS {
        field_mut(def, field, &mut |f| {
            f.schema.default = serde_json::from_str(default).ok().map(Box::new);
        });
    }
    for def in ATOMIC_STRUCTS {
        if let Some(id) = catalog.lookup(def)
            && let Type::Object(o) = &mut catalog.definition_mut(id).schema.ty
        {
            o.struct_type = MapKind::Atomic;
        }
    }
}
