//! Strategic merge patch: JSON merge patch, except that lists declared with
//! `patchStrategy: merge` merge item by item (objects by their merge key, scalars
//! by value), and the patch may carry directives:
//!
//! * `$patch: replace | delete` on an object, `$patch: replace | delete` items in
//!   a merged list;
//! * `$retainKeys: [...]`: fields of the object not named are cleared;
//! * `$setElementOrder/<list>: [...]`: the order the merged list must have;
//! * `$deleteFromPrimitiveList/<list>: [...]`: scalars to remove from a list.
//!
//! Where the schema knows nothing (custom resources, arbitrary JSON) no field has
//! a strategy, so the patch behaves as a JSON merge patch.

use serde_json::{Map, Value};

use super::PatchError;
use crate::schema::{Catalog, PatchStrategy, Schema, Type};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to an object whose schema is `root`.
pub fn apply_strategic_merge_patch(
    catalog: &Catalog,
    root: &Schema,
    original: Value,
    patch: Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadPatch(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match original {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let smp = Smp { catalog };
    smp.merge_map(original, patch, Some(root))
        .map(Value::Object)
}

struct Smp<'c> {
    catalog: &'c Catalog,
}

/// What the schema says about one field.
#[derive(Clone, Copy, Default)]
struct FieldMeta<'c> {
    schema: Option<&'c Schema>,
    strategy: PatchStrategy,
    merge_key: Option<&'c str>,
}

fn show(m: &Map<String, Value>) -> String {
    Value::Object(m.clone()).to_string()
}

impl<'c> Smp<'c> {
    fn field(&self, parent: Option<&'c Schema>, key: &str) -> FieldMeta<'c> {
        let Some(parent) = parent else {
            return FieldMeta::default();
        };
        match &self.catalog.resolve(parent).ty {
            Type::Object(o) => match o.field(key) {
                Some(f) => FieldMeta {
                    schema: Some(&f.schema),
                    strategy: f.patch_strategy,
                    merge_key: f.merge_key.as_deref(),
                },
                None => FieldMeta::default(),
            },
            Type::Map(m) => FieldMeta {
                schema: Some(&m.values),
                ..FieldMeta::default()
            },
            _ => FieldMeta::default(),
        }
    }

    fn items(&self, list: Option<&'c Schema>) -> Option<&'c Schema> {
        match &self.catalog.resolve(list?).ty {
            Type::Array(a) => Some(&a.items),
            _ => None,
        }
    }

    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        schema: Option<&'c Schema>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            match directive.as_str() {
                Some("replace") => {
                    patch.shift_remove(DIRECTIVE);
                    return Ok(patch);
                }
                Some("delete") => return Ok(Map::new()),
                _ => {
                    return Err(PatchError::UnknownDirective {
                        directive: directive.to_string(),
                        map: show(&patch),
                    });
                }
            }
        }
        retain_keys(&mut original, &mut patch)?;
        self.set_element_orders(&mut original, &mut patch, schema)?;

        for (k, v) in patch {
            if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let Value::Array(remove) = v else {
                    return Err(PatchError::BadDirectiveList(
                        DELETE_FROM_PRIMITIVE_LIST.into(),
                    ));
                };
                if let Some(Value::Array(list)) = original.get_mut(field) {
                    list.retain(|item| !remove.contains(item));
                }
                continue;
            }
            if v.is_null() {
                original.shift_remove(&k);
                continue;
            }
            let meta = self.field(schema, &k);
            let merged = self.merge_value(original.shift_remove_entry(&k).map(|e| e.1), v, meta)?;
            original.insert(k, merged);
        }
        Ok(original)
    }

    /// Merges one patch value into the original value of a field (absent: `None`).
    fn merge_value(
        &self,
        original: Option<Value>,
        patch: Value,
        meta: FieldMeta<'c>,
    ) -> Result<Value, PatchError> {
        match (original, patch) {
            (Some(Value::Object(o)), Value::Object(p)) if !meta.strategy.replace => {
                self.merge_map(o, p, meta.schema).map(Value::Object)
            }
            (Some(Value::Array(o)), Value::Array(p)) if meta.strategy.merge => self
                .merge_list(o, p, self.items(meta.schema), meta.merge_key)
                .map(Value::Array),
            // New values and replacements still lose their directives and nulls.
            (_, Value::Object(p)) => self
                .merge_map(Map::new(), p, meta.schema)
                .map(Value::Object),
            (_, Value::Array(p)) if meta.strategy.merge => self
                .merge_list(Vec::new(), p, self.items(meta.schema), meta.merge_key)
                .map(Value::Array),
            (_, Value::Array(p)) => {
                let items = self.items(meta.schema);
                p.into_iter()
                    .map(|v| match v {
                        Value::Object(m) => self.merge_map(Map::new(), m, items).map(Value::Object),
                        other => Ok(other),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
            (_, p) => Ok(p),
        }
    }

    /// Handles every `$setElementOrder/<field>` of a patch: merges that field's
    /// list (removing it from the patch) and puts it in the order asked for.
    fn set_element_orders(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        schema: Option<&'c Schema>,
    ) -> Result<(), PatchError> {
        let directives: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive in directives {
            let Some(Value::Array(order)) = patch.shift_remove(&directive) else {
                return Err(PatchError::BadDirectiveList(SET_ELEMENT_ORDER.into()));
            };
            let field = &directive[SET_ELEMENT_ORDER.len()..];
            let meta = self.field(schema, field);
            let server = match original.get(field) {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            let merged = match (original.shift_remove(field), patch.shift_remove(field)) {
                (None, None) => continue,
                (Some(Value::Array(o)), None) => o,
                (o, Some(p)) => match self.merge_value(o, p, meta)? {
                    Value::Array(a) => a,
                    other => {
                        original.insert(field.to_string(), other);
                        continue;
                    }
                },
                (Some(other), None) => {
                    original.insert(field.to_string(), other);
                    continue;
                }
            };
            let key = meta.merge_key;
            let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
                .into_iter()
                .partition(|item| index_of(&order, item, key).is_some());
            let list = normalize_order(in_order, server_only, &order, &server, key);
            original.insert(field.to_string(), Value::Array(list));
        }
        Ok(())
    }

    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        items: Option<&'c Schema>,
        merge_key: Option<&str>,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let has_objects = element_kind(&original, &patch)?;
        if !has_objects {
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for v in original.iter().chain(patch.iter()) {
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            let (in_patch, server_only) = merged.into_iter().partition(|v| patch.contains(v));
            return Ok(normalize_order(
                in_patch,
                server_only,
                &patch,
                &original,
                None,
            ));
        }
        let Some(key) = merge_key else {
            // An object list without a merge key cannot merge: the patch replaces it.
            return self
                .merge_value(None, Value::Array(patch), FieldMeta::default())
                .map(|v| match v {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                });
        };
        let (original, patch) = special_elements(original, patch, key)?;
        let mut merged = original.clone();
        for item in &patch {
            let Value::Object(p) = item else { continue };
            let Some(wanted) = p.get(key) else {
                return Err(PatchError::NoMergeKey {
                    map: show(p),
                    key: key.to_string(),
                });
            };
            match merged.iter().position(|o| o.get(key) == Some(wanted)) {
                Some(i) => {
                    let Value::Object(o) = std::mem::take(&mut merged[i]) else {
                        unreachable!("lists of objects")
                    };
                    merged[i] = Value::Object(self.merge_map(o, p.clone(), items)?);
                }
                None => merged.push(Value::Object(self.merge_map(
                    Map::new(),
                    p.clone(),
                    items,
                )?)),
            }
        }
        let (in_patch, server_only) = merged
            .into_iter()
            .partition(|v| index_of(&patch, v, Some(key)).is_some());
        Ok(normalize_order(
            in_patch,
            server_only,
            &patch,
            &original,
            Some(key),
        ))
    }
}

/// Applies `$retainKeys`: every field of the original not named is removed.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(keys) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(keys) = keys else {
        return Err(PatchError::BadRetainKeys);
    };
    let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        let directive =
            k.starts_with(SET_ELEMENT_ORDER) || k.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !v.is_null() && !directive && !keys.contains(&k.as_str()) {
            return Err(PatchError::BadRetainKeys);
        }
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// Whether a list holds objects (true) or scalars (false); errors on lists of
/// lists and on mixed lists.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut objects = None;
    for v in original.iter().chain(patch) {
        let is_object = match v {
            Value::Array(_) => return Err(PatchError::ListOfLists),
            Value::Object(_) => true,
            Value::Null => continue,
            _ => false,
        };
        match objects {
            None => objects = Some(is_object),
            Some(o) if o != is_object => return Err(PatchError::MixedList),
            Some(_) => {}
        }
    }
    Ok(objects.unwrap_or(false))
}

/// Takes the `$patch` items out of a merged list's patch: `delete` removes the
/// original item with the same key, `replace` makes the patch the whole list.
fn special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let directive = item.get(DIRECTIVE).cloned();
        match directive {
            None => plain.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(wanted) = item.get(key) else {
                        let map = item.as_object().map(show).unwrap_or_default();
                        return Err(PatchError::NoMergeKey {
                            map,
                            key: key.to_string(),
                        });
                    };
                    original.retain(|o| o.get(key) != Some(wanted));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(PatchError::MergeDirectiveInList),
                _ => {
                    return Err(PatchError::UnknownDirective {
                        directive: d.to_string(),
                        map: item.as_object().map(show).unwrap_or_default(),
                    });
                }
            },
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// Position of an item in a list: by merge key for objects, by value for scalars.
fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(k) => {
            let wanted = item.get(k)?;
            list.iter().position(|v| v.get(k) == Some(wanted))
        }
        None => list.iter().position(|v| v == item),
    }
}

/// Upstream's ordering of a merged list: patch items in patch order, server-only
/// items in server order, interleaved so that items both lists know keep the
/// server's relative order, and new items come before server-only ones that the
/// server order cannot place.
fn normalize_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    patch_items.sort_by_key(|v| index_of(patch_order, v, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| index_of(server_order, v, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (
                index_of(server_order, l, key),
                index_of(server_order, r, key),
            ) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}
