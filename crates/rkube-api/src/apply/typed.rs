//! Objects seen through the schema the way server-side apply sees them: which
//! nodes are owned whole (scalars, atomic lists, maps and structs), which merge
//! field by field, and which lists merge item by item (by key or by value).
//!
//! Schemaless parts (`x-kubernetes-preserve-unknown-fields`, arbitrary JSON) are
//! "deduced" as upstream does: objects are granular maps, lists are atomic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, Path, PathElement, path_string};
use crate::schema::{Catalog, ListType, MapKind, Object, Schema, Type};

/// A node's type: a schema node, or deduced from the value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty<'a> {
    Schema(&'a Schema),
    /// Untyped: maps granular, lists atomic.
    Deduced,
}

/// What a type makes of a node ([`Types::shape`] also looks at the value).
#[derive(Clone, Copy, Debug)]
enum Kind<'a> {
    /// Scalars, and lists, maps and structs that are atomic.
    Leaf,
    /// Structs and granular maps; keys not declared take `values`.
    Map {
        object: Option<&'a Object>,
        values: Ty<'a>,
    },
    /// Set lists (no keys) and list-maps (keys).
    List {
        items: Ty<'a>,
        keys: Option<&'a [Box<str>]>,
    },
}

/// The changes between two objects (upstream's `typed.Comparison`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

/// Walks objects against one catalog.
#[derive(Clone, Copy)]
pub(crate) struct Types<'a> {
    pub catalog: &'a Catalog,
}

impl<'a> Types<'a> {
    fn kind(&self, ty: Ty<'a>) -> Kind<'a> {
        let s = match ty {
            Ty::Deduced => {
                return Kind::Map {
                    object: None,
                    values: Ty::Deduced,
                };
            }
            Ty::Schema(s) => self.catalog.resolve(s),
        };
        match &s.ty {
            Type::Object(o) if o.struct_type == MapKind::Atomic => Kind::Leaf,
            // Fields a struct does not declare are kept by validation only when
            // the schema preserves them; either way they are treated as untyped.
            Type::Object(o) => Kind::Map {
                object: Some(o),
                values: Ty::Deduced,
            },
            Type::Map(m) if m.map_type == MapKind::Atomic => Kind::Leaf,
            Type::Map(m) => Kind::Map {
                object: None,
                values: Ty::Schema(&m.values),
            },
            Type::Array(a) => match &a.list_type {
                ListType::Atomic => Kind::Leaf,
                ListType::Set => Kind::List {
                    items: Ty::Schema(&a.items),
                    keys: None,
                },
                ListType::Map(keys) => Kind::List {
                    items: Ty::Schema(&a.items),
                    keys: Some(keys),
                },
            },
            Type::Any => Kind::Map {
                object: None,
                values: Ty::Deduced,
            },
            _ => Kind::Leaf,
        }
    }

    fn shape(&self, ty: Ty<'a>, v: &Value) -> Kind<'a> {
        match (self.kind(ty), v) {
            (k @ Kind::Map { .. }, Value::Object(_)) | (k @ Kind::List { .. }, Value::Array(_)) => {
                k
            }
            _ => Kind::Leaf,
        }
    }

    /// The type of a map key, and whether the struct declares it.
    fn field(&self, object: Option<&'a Object>, values: Ty<'a>, key: &str) -> (Ty<'a>, bool) {
        match object.and_then(|o| o.field(key)) {
            Some(f) => (Ty::Schema(&f.schema), true),
            None => (values, false),
        }
    }

    /// The type of a child of a node, by path element.
    fn child(&self, ty: Ty<'a>, pe: &PathElement) -> Ty<'a> {
        match (self.kind(ty), pe) {
            (Kind::Map { object, values }, PathElement::Field(k)) => {
                self.field(object, values, k).0
            }
            (Kind::List { items, .. }, _) => items,
            _ => Ty::Deduced,
        }
    }

    /// The path element of a list item: its keys, or its value for sets.
    pub fn item_element(
        &self,
        items: Ty<'a>,
        keys: Option<&[Box<str>]>,
        item: &Value,
    ) -> Result<PathElement, String> {
        let Some(keys) = keys else {
            return match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".into())
                }
                Value::Array(_) => {
                    Err("not supported: associative list with lists as elements".into())
                }
                Value::Null => Err(
                    "associative list without keys has an element that's an explicit null".into(),
                ),
                v => Ok(PathElement::Value(v.clone())),
            };
        };
        let m = match item {
            Value::Object(m) => m,
            Value::Null => {
                return Err("associative list with keys may not have a null element".into());
            }
            _ => return Err("associative list with keys may not have non-map elements".into()),
        };
        let item_object = match items {
            Ty::Schema(s) => self.catalog.object(s),
            Ty::Deduced => None,
        };
        let mut fields = Vec::with_capacity(keys.len());
        for k in keys {
            let value = match m.get(k.as_ref()) {
                Some(v) => v.clone(),
                None => match item_object
                    .and_then(|o| o.field(k))
                    .and_then(|f| f.schema.default.as_deref())
                {
                    Some(d) => d.clone(),
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                        ));
                    }
                },
            };
            fields.push((k.to_string(), value));
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PathElement::Key(fields))
    }

    /// Path elements of a list's items. Items that have none (bad or, when
    /// `strict` is off, duplicated) get their index, so live objects always walk.
    fn elements(
        &self,
        items: Ty<'a>,
        keys: Option<&[Box<str>]>,
        list: &[Value],
        path: &Path,
        errors: Option<&mut Vec<String>>,
    ) -> Vec<PathElement> {
        let mut seen = BTreeSet::new();
        let mut errs = Vec::new();
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            match self.item_element(items, keys, item) {
                Ok(pe) if seen.insert(pe.clone()) => out.push(pe),
                Ok(pe) => {
                    errs.push(format!(
                        "{}: duplicate entries for key {pe}",
                        path_string(path)
                    ));
                    out.push(PathElement::Index(i));
                }
                Err(e) => {
                    errs.push(format!("{}: element {i}: {e}", path_string(path)));
                    out.push(PathElement::Index(i));
                }
            }
        }
        if let Some(errors) = errors {
            errors.extend(errs);
        }
        out
    }

    /// The fields an object sets (upstream's `ToFieldSet`): leaves, list items,
    /// undeclared map keys, and empty or null maps. With `errors`, bad list items
    /// (missing keys, duplicates) are reported there.
    pub fn field_set(
        &self,
        ty: Ty<'a>,
        v: &Value,
        mut errors: Option<&mut Vec<String>>,
    ) -> FieldSet {
        let mut set = FieldSet::new();
        self.walk_set(ty, v, &mut Vec::new(), &mut set, &mut errors);
        set
    }

    fn walk_set(
        &self,
        ty: Ty<'a>,
        v: &Value,
        path: &mut Path,
        set: &mut FieldSet,
        errors: &mut Option<&mut Vec<String>>,
    ) {
        match (self.shape(ty, v), v) {
            (Kind::Map { object, values }, Value::Object(m)) => {
                for (k, cv) in m {
                    let (cty, declared) = self.field(object, values, k);
                    path.push(PathElement::Field(k.clone()));
                    self.walk_set(cty, cv, path, set, errors);
                    let empty_map = cv.as_object().is_some_and(Map::is_empty);
                    if cv.is_null() || empty_map || !declared {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
            (Kind::List { items, keys }, Value::Array(list)) => {
                let pes = self.elements(items, keys, list, path, errors.as_deref_mut());
                for (pe, item) in pes.into_iter().zip(list) {
                    path.push(pe);
                    self.walk_set(items, item, path, set, errors);
                    set.insert(path);
                    path.pop();
                }
            }
            _ => set.insert(path),
        }
    }

    /// Merges `rhs` (an applied configuration) into `lhs` (upstream's `Merge`).
    pub fn merge(&self, ty: Ty<'a>, lhs: &Value, rhs: &Value) -> Value {
        match (self.shape(ty, rhs), lhs, rhs) {
            (Kind::Map { object, values }, Value::Object(l), Value::Object(r)) => {
                let mut out = l.clone();
                for (k, rv) in r {
                    let (cty, _) = self.field(object, values, k);
                    if rv.is_null() {
                        // An explicit null owns the field and leaves it unset.
                        out.shift_remove(k);
                        continue;
                    }
                    let merged = match l.get(k) {
                        Some(lv) => self.merge(cty, lv, rv),
                        None => rv.clone(),
                    };
                    out.insert(k.clone(), merged);
                }
                Value::Object(out)
            }
            (Kind::List { items, keys }, Value::Array(l), Value::Array(r)) => {
                Value::Array(self.merge_list(items, keys, l, r))
            }
            _ => rhs.clone(),
        }
    }

    /// Merges list items by key. Items only in `lhs` keep their place; items of
    /// `rhs` come in `rhs`'s order, and shared items follow `rhs`'s order too.
    fn merge_list(
        &self,
        items: Ty<'a>,
        keys: Option<&[Box<str>]>,
        lhs: &[Value],
        rhs: &[Value],
    ) -> Vec<Value> {
        let lpes = self.elements(items, keys, lhs, &Vec::new(), None);
        let rpes = self.elements(items, keys, rhs, &Vec::new(), None);
        let index = |pes: &[PathElement]| -> BTreeMap<PathElement, usize> {
            let mut m = BTreeMap::new();
            for (i, pe) in pes.iter().enumerate() {
                m.entry(pe.clone()).or_insert(i);
            }
            m
        };
        let (in_l, in_r) = (index(&lpes), index(&rpes));
        let mut shared = rpes.iter().filter(|pe| in_l.contains_key(pe));
        let mut next_shared = shared.next();
        let mut done_r = BTreeSet::new();
        let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
        let (mut li, mut ri) = (0, 0);
        while li < lhs.len() || ri < rhs.len() {
            if li < lhs.len() && ri < rhs.len() {
                let pe = &lpes[li];
                if *pe == rpes[ri] {
                    out.push(self.merge(items, &lhs[li], &rhs[ri]));
                    done_r.insert(pe.clone());
                    li += 1;
                    ri += 1;
                    next_shared = shared.next();
                    continue;
                }
                if in_r.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                    // A shared item, not the one whose turn it is.
                    li += 1;
                    continue;
                }
            }
            if li < lhs.len() {
                let pe = &lpes[li];
                if !in_r.contains_key(pe) {
                    out.push(lhs[li].clone());
                    li += 1;
                    continue;
                }
                if done_r.contains(pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rhs.len() {
                let pe = &rpes[ri];
                done_r.insert(pe.clone());
                let merged = match in_l.get(pe) {
                    Some(&l) => self.merge(items, &lhs[l], &rhs[ri]),
                    None => rhs[ri].clone(),
                };
                out.push(merged);
                ri += 1;
                if next_shared == Some(pe) {
                    next_shared = shared.next();
                }
            }
        }
        out
    }

    /// What changed from `lhs` to `rhs` (upstream's `Compare`): a node that
    /// appears or disappears is recorded with everything below it.
    pub fn compare(&self, ty: Ty<'a>, lhs: &Value, rhs: &Value) -> Comparison {
        let mut c = Comparison::default();
        self.walk_compare(ty, Some(lhs), Some(rhs), &mut Vec::new(), &mut c);
        c
    }

    fn walk_compare(
        &self,
        ty: Ty<'a>,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Path,
        c: &mut Comparison,
    ) {
        let (l, r) = match (lhs, rhs) {
            (None, None) => return,
            (Some(l), None) => return self.mark_all(ty, l, path, &mut c.removed),
            (None, Some(r)) => return self.mark_all(ty, r, path, &mut c.added),
            (Some(l), Some(r)) => (l, r),
        };
        // A null map or list is an empty one: its entries are added or removed.
        let (empty_map, empty_list) = (Value::Object(Map::new()), Value::Array(Vec::new()));
        let empty_like = |v: &Value| match self.shape(ty, v) {
            Kind::Map { .. } => Some(&empty_map),
            Kind::List { .. } => Some(&empty_list),
            Kind::Leaf => None,
        };
        let (l, r) = match (l.is_null(), r.is_null()) {
            (true, false) => (empty_like(r).unwrap_or(l), r),
            (false, true) => (l, empty_like(l).unwrap_or(r)),
            _ => (l, r),
        };
        match (self.shape(ty, l), self.shape(ty, r), l, r) {
            (
                Kind::Map { object, values },
                Kind::Map { .. },
                Value::Object(lm),
                Value::Object(rm),
            ) => {
                let keys = lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k)));
                for k in keys {
                    let (cty, _) = self.field(object, values, k);
                    path.push(PathElement::Field(k.clone()));
                    self.walk_compare(cty, lm.get(k), rm.get(k), path, c);
                    path.pop();
                }
            }
            (Kind::List { items, keys }, Kind::List { .. }, Value::Array(ll), Value::Array(rl)) => {
                let lpes = self.elements(items, keys, ll, path, None);
                let rpes = self.elements(items, keys, rl, path, None);
                let lmap: BTreeMap<&PathElement, &Value> = lpes.iter().zip(ll).rev().collect();
                let rmap: BTreeMap<&PathElement, &Value> = rpes.iter().zip(rl).rev().collect();
                let mut all: Vec<&PathElement> = Vec::new();
                let mut seen = BTreeSet::new();
                for pe in lpes.iter().chain(&rpes) {
                    if seen.insert(pe) {
                        all.push(pe);
                    }
                }
                for pe in all {
                    path.push(pe.clone());
                    self.walk_compare(items, lmap.get(pe).copied(), rmap.get(pe).copied(), path, c);
                    path.pop();
                }
            }
            _ => {
                if l != r {
                    c.modified.insert(path);
                }
            }
        }
    }

    /// Records a node and everything below it.
    fn mark_all(&self, ty: Ty<'a>, v: &Value, path: &mut Path, set: &mut FieldSet) {
        set.insert(path);
        match (self.shape(ty, v), v) {
            (Kind::Map { object, values }, Value::Object(m)) => {
                for (k, cv) in m {
                    let (cty, _) = self.field(object, values, k);
                    path.push(PathElement::Field(k.clone()));
                    self.mark_all(cty, cv, path, set);
                    path.pop();
                }
            }
            (Kind::List { items, keys }, Value::Array(list)) => {
                let pes = self.elements(items, keys, list, path, None);
                for (pe, item) in pes.into_iter().zip(list) {
                    path.push(pe);
                    self.mark_all(items, item, path, set);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Removes the paths of `set` from a value (upstream's `RemoveItems`): a
    /// member goes with everything below it. A map or list that loses all its
    /// entries this way goes too (None).
    pub fn remove_items(&self, ty: Ty<'a>, v: &Value, set: &FieldSet) -> Option<Value> {
        match (self.shape(ty, v), v) {
            (Kind::Map { object, values }, Value::Object(m)) => {
                let mut out = Map::new();
                for (k, cv) in m {
                    let pe = PathElement::Field(k.clone());
                    if set.has_member(&pe) {
                        continue;
                    }
                    let kept = match set.child(&pe) {
                        Some(sub) => self.remove_items(self.field(object, values, k).0, cv, sub),
                        None => Some(cv.clone()),
                    };
                    if let Some(kept) = kept {
                        out.insert(k.clone(), kept);
                    }
                }
                (m.is_empty() || !out.is_empty()).then_some(Value::Object(out))
            }
            (Kind::List { items, keys }, Value::Array(list)) => {
                let pes = self.elements(items, keys, list, &Vec::new(), None);
                let mut out = Vec::new();
                for (pe, item) in pes.iter().zip(list) {
                    if set.has_member(pe) {
                        continue;
                    }
                    let kept = match set.child(pe) {
                        Some(sub) => self.remove_items(items, item, sub),
                        None => Some(item.clone()),
                    };
                    out.extend(kept);
                }
                (list.is_empty() || !out.is_empty()).then_some(Value::Array(out))
            }
            _ => Some(v.clone()),
        }
    }

    /// Makes every declared struct field that has children in `set` a member too
    /// (upstream's `EnsureNamedFieldsAreMembers`), so pruning can remove structs.
    pub fn ensure_named_fields_are_members(&self, ty: Ty<'a>, set: &FieldSet) -> FieldSet {
        let object = match self.kind(ty) {
            Kind::Map { object, .. } => object,
            _ => None,
        };
        let mut out = FieldSet::new();
        for m in set.members() {
            out.insert_member(m.clone());
        }
        for (pe, child) in set.children() {
            if let (PathElement::Field(name), Some(o)) = (pe, object)
                && o.field(name).is_some()
            {
                out.insert_member(pe.clone());
            }
            let sub = self.ensure_named_fields_are_members(self.child(ty, pe), child);
            out.set_child(pe.clone(), sub);
        }
        out
    }
}
