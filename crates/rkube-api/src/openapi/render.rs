//! Schema model to OpenAPI schema objects, in v3 (`components/schemas`) or v2
//! (`definitions`) dialect, with upstream's `x-kubernetes-*` extensions.

use serde_json::{Map, Value, json};

use crate::schema::{Catalog, ListType, MapKind, Schema, Type};

/// Which OpenAPI dialect to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    V2,
    V3,
}

impl Dialect {
    pub(crate) fn reference(self, name: &str) -> String {
        match self {
            Dialect::V2 => format!("#/definitions/{name}"),
            Dialect::V3 => format!("#/components/schemas/{name}"),
        }
    }

    pub(crate) fn ref_object(self, name: &str) -> Value {
        json!({ "$ref": self.reference(name) })
    }
}

/// Renders one schema node. `property` marks a struct field or list item, where v3
/// wraps references in `allOf` (as upstream does) so siblings may sit beside them.
pub(crate) fn render(catalog: &Catalog, s: &Schema, dialect: Dialect, property: bool) -> Value {
    let mut out = Map::new();
    match &s.ty {
        Type::Ref(id) => {
            let name = &catalog.definition(*id).name;
            let has_siblings = s.description.is_some() || s.default.is_some();
            if dialect == Dialect::V3 && (property || has_siblings) {
                out.insert("allOf".into(), json!([dialect.ref_object(name)]));
            } else {
                out.insert("$ref".into(), Value::String(dialect.reference(name)));
            }
        }
        Type::Object(o) => {
            out.insert("type".into(), "object".into());
            if !o.fields.is_empty() {
                let props: Map<String, Value> = o
                    .fields
                    .iter()
                    .map(|f| {
                        let mut p = render(catalog, &f.schema, dialect, true);
                        if let Some(m) = p.as_object_mut() {
                            if let Some(strategy) = f.patch_strategy.to_extension() {
                                m.insert("x-kubernetes-patch-strategy".into(), strategy.into());
                            }
                            if let Some(key) = &f.merge_key {
                                m.insert(
                                    "x-kubernetes-patch-merge-key".into(),
                                    key.as_ref().into(),
                                );
                            }
                        }
                        (f.name.to_string(), p)
                    })
                    .collect();
                out.insert("properties".into(), Value::Object(props));
            }
            if !o.required.is_empty() {
                out.insert("required".into(), json!(o.required));
            }
            if o.preserve_unknown_fields && dialect == Dialect::V3 && o.fields.is_empty() {
                // Opaque objects (RawExtension, FieldsV1) are plain `type: object` upstream.
            } else if o.preserve_unknown_fields {
                out.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
            }
            if o.embedded_resource {
                out.insert("x-kubernetes-embedded-resource".into(), true.into());
            }
            if o.struct_type == MapKind::Atomic {
                out.insert("x-kubernetes-map-type".into(), "atomic".into());
            }
        }
        Type::Map(m) => {
            out.insert("type".into(), "object".into());
            out.insert(
                "additionalProperties".into(),
                render(catalog, &m.values, dialect, true),
            );
            if m.map_type == MapKind::Atomic {
                out.insert("x-kubernetes-map-type".into(), "atomic".into());
            }
        }
        Type::Array(a) => {
            out.insert("type".into(), "array".into());
            out.insert("items".into(), render(catalog, &a.items, dialect, true));
            match &a.list_type {
                ListType::Atomic => {
                    out.insert("x-kubernetes-list-type".into(), "atomic".into());
                }
                ListType::Set => {
                    out.insert("x-kubernetes-list-type".into(), "set".into());
                }
                ListType::Map(keys) => {
                    out.insert("x-kubernetes-list-map-keys".into(), json!(keys));
                    out.insert("x-kubernetes-list-type".into(), "map".into());
                }
            }
        }
        Type::String { format } | Type::Integer { format } | Type::Number { format } => {
            let ty = match &s.ty {
                Type::String { .. } => "string",
                Type::Integer { .. } => "integer",
                _ => "number",
            };
            out.insert("type".into(), ty.into());
            if let Some(f) = format {
                out.insert("format".into(), f.as_ref().into());
            }
        }
        Type::Boolean => {
            out.insert("type".into(), "boolean".into());
        }
        Type::IntOrString => match dialect {
            Dialect::V2 => {
                out.insert("type".into(), "string".into());
                out.insert("format".into(), "int-or-string".into());
            }
            Dialect::V3 => {
                out.insert("format".into(), "int-or-string".into());
                out.insert(
                    "oneOf".into(),
                    json!([{"type": "integer"}, {"type": "string"}]),
                );
            }
        },
        Type::Quantity => match dialect {
            Dialect::V2 => {
                out.insert("type".into(), "string".into());
            }
            Dialect::V3 => {
                out.insert(
                    "oneOf".into(),
                    json!([{"type": "string"}, {"type": "number"}]),
                );
            }
        },
        Type::Any => {}
    }
    if let Some(d) = &s.description {
        out.insert("description".into(), d.as_ref().into());
    }
    if let Some(d) = &s.default {
        out.insert("default".into(), (**d).clone());
    }
    if s.nullable {
        out.insert("nullable".into(), true.into());
    }
    if let Some(c) = &s.constraints {
        for (k, v) in c.iter() {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Renders a CRD's inline schema; unlike built-ins its int-or-string and
/// preserve-unknown nodes keep the CRD's own extensions.
pub(crate) fn render_custom(catalog: &Catalog, s: &Schema, dialect: Dialect) -> Value {
    let mut v = render(catalog, s, dialect, false);
    mark_custom(s, &mut v);
    v
}

fn mark_custom(s: &Schema, v: &mut Value) {
    let Some(out) = v.as_object_mut() else { return };
    match &s.ty {
        Type::IntOrString => {
            // CRDs publish int-or-string as upstream's apiextensions server does.
            out.shift_remove("format");
            out.shift_remove("oneOf");
            out.shift_remove("type");
            out.insert(
                "anyOf".into(),
                json!([{"type": "integer"}, {"type": "string"}]),
            );
            out.insert("x-kubernetes-int-or-string".into(), true.into());
        }
        Type::Any => {
            out.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
        }
        Type::Object(o) => {
            if o.preserve_unknown_fields {
                out.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
            }
            if let Some(props) = out.get_mut("properties").and_then(Value::as_object_mut) {
                for f in &o.fields {
                    if let Some(p) = props.get_mut(f.name.as_ref()) {
                        mark_custom(&f.schema, p);
                    }
                }
            }
        }
        Type::Array(a) => {
            if let Some(items) = out.get_mut("items") {
                mark_custom(&a.items, items);
            }
        }
        Type::Map(m) => {
            if let Some(values) = out.get_mut("additionalProperties") {
                mark_custom(&m.values, values);
            }
        }
        _ => {}
    }
}
