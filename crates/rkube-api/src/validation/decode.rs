//! Decoding a raw JSON body in one pass, guided by the schema.
//!
//! serde_json keeps the last of duplicate keys without a word; decoding through a
//! schema-aware visitor sees every key as it comes, so duplicates, unknown fields
//! and type errors are found in document order, as upstream reports them.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::scalar;
use super::walk::{Ctx, struct_name};
use super::{DecodeError, Decoded, FieldIssue};
use crate::schema::{Catalog, Schema, Type};

static ANY: LazyLock<Schema> = LazyLock::new(|| Schema::new(Type::Any));

/// Decodes a JSON body against a kind's schema: the object with unknown fields
/// removed, and the unknown and duplicate fields found, in document order.
pub fn decode(catalog: &Catalog, root: &Schema, body: &[u8]) -> Result<Decoded, DecodeError> {
    let mut ctx = Ctx::new(catalog);
    let mut de = serde_json::Deserializer::from_slice(body);
    let node = Node {
        ctx: &mut ctx,
        schema: root,
        outer: "",
    };
    let object = node
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| DecodeError::Syntax(e.to_string()))?;
    ctx.finish(object.unwrap_or(Value::Null))
}

/// Duplicate keys anywhere in a JSON document (a patch body, which has no schema
/// of its own), as paths in document order.
///
/// A patch body is read again as a value elsewhere; this pass builds nothing but
/// the path of where it is, and compares keys as borrowed text where it can.
pub fn find_duplicate_fields(body: &[u8]) -> Result<Vec<FieldIssue>, DecodeError> {
    let mut found = Duplicates::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    Dup(&mut found)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| DecodeError::Syntax(e.to_string()))?;
    Ok(found.issues)
}

/// The path walked and the duplicates found by [`find_duplicate_fields`].
#[derive(Default)]
struct Duplicates {
    path: String,
    issues: Vec<FieldIssue>,
}

impl Duplicates {
    /// Appends a path element; returns where the path ended before it.
    fn enter(&mut self, element: fmt::Arguments<'_>) -> usize {
        use std::fmt::Write;
        let mark = self.path.len();
        let _ = self.path.write_fmt(element);
        mark
    }
}

/// One value of a body searched for duplicate keys.
struct Dup<'a>(&'a mut Duplicates);

impl<'de> DeserializeSeed<'de> for Dup<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Dup<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let mark = self.0.enter(format_args!("[{i}]"));
            let more = seq.next_element_seed(Dup(&mut *self.0))?.is_some();
            self.0.path.truncate(mark);
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Small maps are searched in a list, large ones through a set.
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(crate::unmanaged::Key)? {
            let sep = if self.0.path.is_empty() { "" } else { "." };
            let mark = self.0.enter(format_args!("{sep}{key}"));
            let repeated = if many.is_empty() && few.len() < 16 {
                few.contains(&key) || {
                    few.push(key);
                    false
                }
            } else {
                many.extend(few.drain(..));
                !many.insert(key)
            };
            if repeated {
                let path = self.0.path.clone();
                self.0.issues.push(FieldIssue::Duplicate(path));
            }
            map.next_value_seed(Dup(&mut *self.0))?;
            self.0.path.truncate(mark);
        }
        Ok(())
    }
}

/// A value to decode at one place of the schema.
struct Node<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    schema: &'c Schema,
    /// The Go struct holding this value, for type-error messages.
    outer: &'c str,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Node<'_, '_> {
    fn scalar(self, v: Value) -> Option<Value> {
        match scalar::check(self.ctx.catalog, self.schema, &v) {
            Ok(()) => Some(v),
            Err(m) => {
                self.ctx
                    .mismatch(self.schema, self.outer, m, scalar::json_kind(&v));
                None
            }
        }
    }

    /// Checks that a container is wanted here; records the error when it is not.
    fn container_fits(&mut self, empty: Value) -> bool {
        match scalar::check(self.ctx.catalog, self.schema, &empty) {
            Ok(()) => true,
            Err(m) => {
                self.ctx
                    .mismatch(self.schema, self.outer, m, scalar::json_kind(&empty));
                false
            }
        }
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.scalar(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.schema.nullable.then_some(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(self.schema.nullable.then_some(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.container_fits(Value::Array(Vec::new())) {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let catalog = self.ctx.catalog;
        let items = match &catalog.resolve(self.schema).ty {
            Type::Array(a) => &a.items,
            _ => &*ANY,
        };
        let mut out = Vec::new();
        loop {
            let mark = self.ctx.enter_index(out.len());
            let next = seq.next_element_seed(Node {
                ctx: &mut *self.ctx,
                schema: items,
                outer: self.outer,
            })?;
            self.ctx.leave(mark);
            match next {
                Some(v) => out.push(v.unwrap_or(Value::Null)),
                None => break,
            }
        }
        Ok(Some(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        if !self.container_fits(Value::Object(Map::new())) {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let catalog = self.ctx.catalog;
        let resolved = catalog.resolve(self.schema);
        let name = struct_name(catalog, self.schema, self.outer);
        let mut out = Map::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut unknown: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let (child, is_map) = match &resolved.ty {
                Type::Object(o) => match o.field(&key) {
                    Some(f) => (Some(&f.schema), false),
                    None if o.preserve_unknown_fields => (Some(&*ANY), false),
                    None => (None, false),
                },
                Type::Map(m) => (Some(&m.values), true),
                _ => (Some(&*ANY), true),
            };
            let Some(child) = child else {
                // Unknown fields are reported once, even when repeated (as upstream).
                if unknown.insert(key.clone()) {
                    self.ctx.unknown(&key);
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !seen.insert(key.clone()) {
                self.ctx.duplicate(&key);
            }
            let mark = if is_map {
                self.ctx.enter_key(&key)
            } else {
                self.ctx.enter_field(&key)
            };
            let value = map.next_value_seed(Node {
                ctx: &mut *self.ctx,
                schema: child,
                outer: name,
            })?;
            self.ctx.leave(mark);
            match value {
                Some(v) => {
                    out.insert(key, v);
                }
                None => {
                    out.shift_remove(&key);
                }
            }
        }
        Ok(Some(Value::Object(out)))
    }
}
