//! Schemas of custom resources, from a CRD version's `openAPIV3Schema`.

use serde_json::{Map, Value};

use super::{Array, Field, ListType, MapKind, MapOf, Object, Schema, Type, builtin};
use crate::resource::GroupVersionKind;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Keywords kept verbatim as [`Schema::constraints`].
const CONSTRAINTS: &[&str] = &[
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "example",
    "externalDocs",
    "title",
    "x-kubernetes-validations",
];

/// Why a CRD schema could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CrdSchemaError {
    /// A node of the schema is not a JSON object.
    #[error("{path}: a schema must be an object")]
    NotAnObject { path: String },
    /// `type` names no JSON Schema type.
    #[error("{path}.type: Unsupported value: {ty:?}")]
    UnknownType { path: String, ty: String },
    /// An array without `items`.
    #[error("{path}.items: Required value: must be specified for arrays")]
    MissingItems { path: String },
    /// `x-kubernetes-list-type: map` without keys, or keys with another list type.
    #[error("{path}.x-kubernetes-list-map-keys: {message}")]
    ListMapKeys { path: String, message: String },
}

/// The schema of one version of a custom resource.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomSchema {
    pub gvk: GroupVersionKind,
    /// An object schema; `metadata` refers to the built-in ObjectMeta.
    pub root: Schema,
}

impl CustomSchema {
    /// Converts `spec.versions[].schema.openAPIV3Schema` of a CRD.
    pub fn from_crd_schema(
        gvk: GroupVersionKind,
        open_api_v3_schema: &Value,
    ) -> Result<CustomSchema, CrdSchemaError> {
        let mut root = convert(open_api_v3_schema, "openAPIV3Schema")?;
        add_object_fields(&mut root);
        Ok(CustomSchema { gvk, root })
    }

    /// A version without a schema: every field is kept as sent (upstream's
    /// `x-kubernetes-preserve-unknown-fields: true` at the root).
    pub fn schemaless(gvk: GroupVersionKind) -> CustomSchema {
        let mut root = Schema::new(Type::Object(Box::new(Object {
            preserve_unknown_fields: true,
            ..Object::default()
        })));
        add_object_fields(&mut root);
        CustomSchema { gvk, root }
    }
}

/// Makes `apiVersion`, `kind` and `metadata` known fields of an object that is a
/// whole resource, with `metadata` as the built-in ObjectMeta.
fn add_object_fields(schema: &mut Schema) {
    let Type::Object(o) = &mut schema.ty else {
        return;
    };
    let meta = builtin()
        .lookup(OBJECT_META)
        .expect("ObjectMeta is built in");
    for name in ["apiVersion", "kind"] {
        if o.field(name).is_none() {
            o.fields.push(Field::new(name, Schema::string()));
        }
    }
    match o.fields.iter_mut().find(|f| f.name.as_ref() == "metadata") {
        Some(f) => f.schema.ty = Type::Ref(meta),
        None => o
            .fields
            .push(Field::new("metadata", Schema::new(Type::Ref(meta)))),
    }
    o.sort_fields();
}

fn convert(v: &Value, path: &str) -> Result<Schema, CrdSchemaError> {
    let Some(m) = v.as_object() else {
        return Err(CrdSchemaError::NotAnObject {
            path: path.to_string(),
        });
    };
    let flag = |k: &str| m.get(k).and_then(Value::as_bool) == Some(true);
    let format = m
        .get("format")
        .and_then(Value::as_str)
        .map(Box::<str>::from);
    let map_type = match m.get("x-kubernetes-map-type").and_then(Value::as_str) {
        Some("atomic") => MapKind::Atomic,
        _ => MapKind::Granular,
    };
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    let ty_name = m.get("type").and_then(Value::as_str).unwrap_or("");
    let ty = if flag("x-kubernetes-int-or-string") {
        Type::IntOrString
    } else {
        match ty_name {
            "object" | ""
                if m.contains_key("properties")
                    || ty_name == "object"
                    || flag("x-kubernetes-embedded-resource") =>
            {
                object_type(m, path, preserve, map_type)?
            }
            "" => Type::Any,
            "array" => {
                let items = m.get("items").ok_or_else(|| CrdSchemaError::MissingItems {
                    path: path.to_string(),
                })?;
                Type::Array(Box::new(Array {
                    items: convert(items, &format!("{path}.items"))?,
                    list_type: list_type(m, path)?,
                }))
            }
            "string" => Type::String { format },
            "integer" => Type::Integer { format },
            "number" => Type::Number { format },
            "boolean" => Type::Boolean,
            other => {
                return Err(CrdSchemaError::UnknownType {
                    path: path.to_string(),
                    ty: other.to_string(),
                });
            }
        }
    };
    let constraints: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| CONSTRAINTS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Schema {
        description: m.get("description").and_then(Value::as_str).map(Box::from),
        ty,
        default: m.get("default").cloned().map(Box::new),
        nullable: flag("nullable"),
        constraints: (!constraints.is_empty()).then(|| Box::new(constraints)),
    })
}

fn object_type(
    m: &Map<String, Value>,
    path: &str,
    preserve: bool,
    map_type: MapKind,
) -> Result<Type, CrdSchemaError> {
    let embedded = m
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let mut fields = Vec::with_capacity(props.len());
        for (name, p) in props {
            fields.push(Field::new(
                name,
                convert(p, &format!("{path}.properties[{name}]"))?,
            ));
        }
        let mut object = Object {
            fields,
            required: m
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).map(Box::from).collect())
                .unwrap_or_default(),
            preserve_unknown_fields: preserve,
            embedded_resource: embedded,
            struct_type: map_type,
        };
        object.sort_fields();
        let mut schema = Schema::new(Type::Object(Box::new(object)));
        if embedded {
            add_object_fields(&mut schema);
        }
        return Ok(schema.ty);
    }
    match m.get("additionalProperties") {
        Some(Value::Object(values)) if !embedded => {
            let values = Value::Object(values.clone());
            Ok(Type::Map(Box::new(MapOf {
                values: convert(&values, &format!("{path}.additionalProperties"))?,
                map_type,
            })))
        }
        Some(Value::Bool(true)) if !embedded => Ok(Type::Map(Box::new(MapOf {
            values: Schema::new(Type::Any),
            map_type,
        }))),
        _ => {
            let mut schema = Schema::new(Type::Object(Box::new(Object {
                preserve_unknown_fields: preserve,
                embedded_resource: embedded,
                struct_type: map_type,
                ..Object::default()
            })));
            if embedded {
                add_object_fields(&mut schema);
            }
            Ok(schema.ty)
        }
    }
}

fn list_type(m: &Map<String, Value>, path: &str) -> Result<ListType, CrdSchemaError> {
    let keys: Vec<Box<str>> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).map(Box::from).collect())
        .unwrap_or_default();
    let err = |message: &str| CrdSchemaError::ListMapKeys {
        path: path.to_string(),
        message: message.to_string(),
    };
    match m.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") if keys.is_empty() => Err(err(
            "Required value: must not be empty if x-kubernetes-list-type is map",
        )),
        Some("map") => Ok(ListType::Map(keys)),
        _ if !keys.is_empty() => Err(err(
            "Forbidden: may only be used with x-kubernetes-list-type map",
        )),
        Some("set") => Ok(ListType::Set),
        _ => Ok(ListType::Atomic),
    }
}
