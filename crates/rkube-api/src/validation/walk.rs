//! Checking an object already in memory, keys in sorted order.

use serde_json::{Map, Value};

use super::scalar::{self, Mismatch};
use super::{DecodeError, Decoded, FieldIssue, TypeError};
use crate::schema::{Catalog, Schema, Type};

/// Checks and prunes an object already decoded (e.g. the result of a patch) against
/// a kind's schema. Unknown fields are reported in sorted path order and removed.
pub fn decode_value(
    catalog: &Catalog,
    root: &Schema,
    value: Value,
) -> Result<Decoded, DecodeError> {
    let mut ctx = Ctx::new(catalog);
    let object = walk(&mut ctx, root, value, "").unwrap_or(Value::Null);
    ctx.finish(object)
}

/// Where the walk is and what it found; shared with the streaming decoder.
pub(crate) struct Ctx<'c> {
    pub catalog: &'c Catalog,
    pub issues: Vec<FieldIssue>,
    pub type_errors: Vec<TypeError>,
    /// `spec.containers[0].name`
    path: String,
    /// `spec.containers.name`: Go's decoder leaves indices out.
    go_path: String,
}

/// A position to go back to after a field or element.
pub(crate) struct Mark(usize, usize);

impl<'c> Ctx<'c> {
    pub fn new(catalog: &'c Catalog) -> Ctx<'c> {
        Ctx {
            catalog,
            issues: Vec::new(),
            type_errors: Vec::new(),
            path: String::new(),
            go_path: String::new(),
        }
    }

    pub fn enter_field(&mut self, name: &str) -> Mark {
        let mark = Mark(self.path.len(), self.go_path.len());
        for p in [&mut self.path, &mut self.go_path] {
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(name);
        }
        mark
    }

    /// A map key: part of the path, not of Go's field path.
    pub fn enter_key(&mut self, key: &str) -> Mark {
        let mark = Mark(self.path.len(), self.go_path.len());
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        mark
    }

    pub fn enter_index(&mut self, i: usize) -> Mark {
        let mark = Mark(self.path.len(), self.go_path.len());
        self.path.push_str(&format!("[{i}]"));
        mark
    }

    pub fn leave(&mut self, mark: Mark) {
        self.path.truncate(mark.0);
        self.go_path.truncate(mark.1);
    }

    pub fn unknown(&mut self, name: &str) {
        let mark = self.enter_field(name);
        self.issues.push(FieldIssue::Unknown(self.path.clone()));
        self.leave(mark);
    }

    pub fn duplicate(&mut self, name: &str) {
        let mark = self.enter_field(name);
        self.issues.push(FieldIssue::Duplicate(self.path.clone()));
        self.leave(mark);
    }

    /// Records a value of the wrong type at the current path. `struct_name` is the
    /// Go struct holding the field (empty at the top level).
    pub fn mismatch(
        &mut self,
        schema: &Schema,
        struct_name: &str,
        m: Mismatch,
        found: &'static str,
    ) {
        let (go_message, expected) = match m {
            Mismatch::Kind { found, expected } => {
                let ty = scalar::go_type(self.catalog, schema);
                let target = if struct_name.is_empty() || self.go_path.is_empty() {
                    format!("Go value of type {ty}")
                } else {
                    format!(
                        "Go struct field {struct_name}.{} of type {ty}",
                        self.go_path
                    )
                };
                (
                    format!("json: cannot unmarshal {found} into {target}"),
                    expected,
                )
            }
            Mismatch::Custom { message, expected } => (message, expected),
        };
        self.type_errors.push(TypeError {
            path: self.path.clone(),
            found,
            expected,
            go_message,
        });
    }

    pub fn finish(self, object: Value) -> Result<Decoded, DecodeError> {
        if self.type_errors.is_empty() {
            Ok(Decoded {
                object,
                issues: self.issues,
            })
        } else {
            Err(DecodeError::Types(self.type_errors))
        }
    }
}

/// The Go struct name of an object schema reached through `schema`, or the
/// enclosing one when the object is inline.
pub(crate) fn struct_name<'c>(catalog: &'c Catalog, schema: &'c Schema, outer: &'c str) -> &'c str {
    match schema.ty {
        Type::Ref(id) => {
            let name = &catalog.definition(id).name;
            name.rsplit('.').next().unwrap_or(name)
        }
        _ => outer,
    }
}

/// Checks one value; `None` means it is dropped (a null or a value of the wrong type).
fn walk(ctx: &mut Ctx<'_>, schema: &Schema, value: Value, outer: &str) -> Option<Value> {
    let catalog = ctx.catalog;
    if value.is_null() {
        return schema.nullable.then_some(Value::Null);
    }
    if let Err(m) = scalar::check(catalog, schema, &value) {
        ctx.mismatch(schema, outer, m, scalar::json_kind(&value));
        return None;
    }
    let resolved = catalog.resolve(schema);
    match (&resolved.ty, value) {
        (Type::Object(o), Value::Object(map)) => {
            let name = struct_name(catalog, schema, outer);
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                match o.field(&k) {
                    Some(f) => {
                        let mark = ctx.enter_field(&k);
                        if let Some(v) = walk(ctx, &f.schema, v, name) {
                            out.insert(k, v);
                        }
                        ctx.leave(mark);
                    }
                    None if o.preserve_unknown_fields => {
                        out.insert(k, v);
                    }
                    None => ctx.unknown(&k),
                }
            }
            Some(Value::Object(out))
        }
        (Type::Map(m), Value::Object(map)) => {
            let mut out = Map::new();
            for (k, v) in map {
                let mark = ctx.enter_key(&k);
                if let Some(v) = walk(ctx, &m.values, v, outer) {
                    out.insert(k, v);
                }
                ctx.leave(mark);
            }
            Some(Value::Object(out))
        }
        (Type::Array(a), Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.into_iter().enumerate() {
                let mark = ctx.enter_index(i);
                if v.is_null() {
                    out.push(v);
                } else if let Some(v) = walk(ctx, &a.items, v, outer) {
                    out.push(v);
                }
                ctx.leave(mark);
            }
            Some(Value::Array(out))
        }
        (_, v) => Some(v),
    }
}
