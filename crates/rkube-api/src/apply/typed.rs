//! Objects seen through the schema the way server-side apply sees them: which
//! nodes are owned whole (scalars, atomic lists, maps and structs), which merge
//! field by field, and which lists merge item by item (by key or by value).
//!
//! Schemaless parts (`x-kubernetes-preserve-unknown-fields`, arbitrary JSON) are
//! "deduced" as upstream does: objects are granular maps, lists are atomic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
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

/// What happened to a node between two objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Added,
    Modified,
    Removed,
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

    /// Path elements of a list's items. Items that have none (bad or
    /// duplicated) get their index, so live objects always walk; `errors`
    /// collects why, for applied configurations. `path` names the list there.
    fn elements(
        &self,
        items: Ty<'a>,
        keys: Option<&[Box<str>]>,
        list: &[Value],
        path: &str,
        errors: Option<&mut Vec<String>>,
    ) -> Vec<PathElement> {
        let mut errs = Vec::new();
        let mut out: Vec<PathElement> = list
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.item_element(items, keys, item).unwrap_or_else(|e| {
                    errs.push(format!("{path}: element {i}: {e}"));
                    PathElement::Index(i)
                })
            })
            .collect();
        // Later duplicates of a key lose it.
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by(|&a, &b| out[a].cmp(&out[b]).then(a.cmp(&b)));
        let dups: Vec<usize> = order
            .windows(2)
            .filter(|w| out[w[0]] == out[w[1]])
            .map(|w| w[1])
            .collect();
        for i in dups {
            errs.push(format!("{path}: duplicate entries for key {}", out[i]));
            out[i] = PathElement::Index(i);
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
        self.set_below(ty, v, &mut String::new(), &mut errors)
    }

    /// The field set of what is below a node (the node itself is its parent's
    /// business). `path` names the node in error messages.
    fn set_below(
        &self,
        ty: Ty<'a>,
        v: &Value,
        path: &mut String,
        errors: &mut Option<&mut Vec<String>>,
    ) -> FieldSet {
        let mut out = FieldSet::new();
        match (self.shape(ty, v), v) {
            (Kind::Map { object, values }, Value::Object(m)) => {
                for (k, cv) in m {
                    let (cty, declared) = self.field(object, values, k);
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    let below = self.set_below(cty, cv, path, errors);
                    path.truncate(len);
                    let leaf = matches!(self.shape(cty, cv), Kind::Leaf);
                    let empty_map = cv.as_object().is_some_and(Map::is_empty);
                    let member = leaf || cv.is_null() || empty_map || !declared;
                    out.insert_node(PathElement::Field(k.clone()), member, below);
                }
            }
            (Kind::List { items, keys }, Value::Array(list)) => {
                let pes = self.elements(items, keys, list, path, errors.as_deref_mut());
                for (pe, item) in pes.into_iter().zip(list) {
                    let len = path.len();
                    if errors.is_some() {
                        path.push_str(&pe.to_string());
                    }
                    let below = self.set_below(items, item, path, errors);
                    path.truncate(len);
                    out.insert_node(pe, true, below);
                }
            }
            _ => {}
        }
        out
    }

    /// Merges `rhs` (an applied configuration) into `lhs` (upstream's `Merge`).
    pub fn merge(&self, ty: Ty<'a>, lhs: &Value, rhs: &Value) -> Value {
        let mut out = lhs.clone();
        self.merge_into(ty, &mut out, rhs);
        out
    }

    fn merge_into(&self, ty: Ty<'a>, lhs: &mut Value, rhs: &Value) {
        match (self.shape(ty, rhs), &mut *lhs, rhs) {
            (Kind::Map { object, values }, Value::Object(l), Value::Object(r)) => {
                for (k, rv) in r {
                    if rv.is_null() {
                        // An explicit null owns the field and leaves it unset.
                        l.shift_remove(k);
                        continue;
                    }
                    match l.get_mut(k) {
                        Some(lv) => self.merge_into(self.field(object, values, k).0, lv, rv),
                        None => {
                            l.insert(k.clone(), rv.clone());
                        }
                    }
                }
            }
            (Kind::List { items, keys }, Value::Array(l), Value::Array(r)) => {
                let old = std::mem::take(l);
                *l = self.merge_list(items, keys, old, r);
            }
            _ => *lhs = rhs.clone(),
        }
    }

    /// Merges list items by key. Items only in `lhs` keep their place; items of
    /// `rhs` come in `rhs`'s order, and shared items follow `rhs`'s order too.
    fn merge_list(
        &self,
        items: Ty<'a>,
        keys: Option<&[Box<str>]>,
        lhs: Vec<Value>,
        rhs: &[Value],
    ) -> Vec<Value> {
        let lpes = self.elements(items, keys, &lhs, "", None);
        let rpes = self.elements(items, keys, rhs, "", None);
        let (in_l, in_r) = (first_index(&lpes), first_index(&rpes));
        // Each live item is used once: kept, or merged with its applied item.
        let mut lhs: Vec<Option<Value>> = lhs.into_iter().map(Some).collect();
        let mut take = |i: usize| lhs[i].take().unwrap_or(Value::Null);
        let mut shared = rpes.iter().filter(|pe| in_l.contains_key(pe));
        let mut next_shared = shared.next();
        let mut done_r: BTreeSet<&PathElement> = BTreeSet::new();
        let (ll, rl) = (lpes.len(), rhs.len());
        let mut out = Vec::with_capacity(ll.max(rl));
        let merged = |mut l: Value, r: &Value| {
            self.merge_into(items, &mut l, r);
            l
        };
        let (mut li, mut ri) = (0, 0);
        while li < ll || ri < rl {
            if li < ll && ri < rl {
                let pe = &lpes[li];
                if *pe == rpes[ri] {
                    out.push(merged(take(li), &rhs[ri]));
                    done_r.insert(pe);
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
            if li < ll {
                let pe = &lpes[li];
                if !in_r.contains_key(pe) {
                    out.push(take(li));
                    li += 1;
                    continue;
                }
                if done_r.contains(pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rl {
                let pe = &rpes[ri];
                done_r.insert(pe);
                out.push(match in_l.get(pe) {
                    Some(&l) => merged(take(l), &rhs[ri]),
                    None => rhs[ri].clone(),
                });
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
        self.compare_below(ty, lhs, rhs, &mut c);
        c
    }

    /// Compares two values of one node: the changes below it go into `c`; what
    /// happened to the node itself is returned (its parent records it).
    fn compare_node(
        &self,
        ty: Ty<'a>,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        c: &mut Comparison,
    ) -> Option<Change> {
        let (l, r) = match (lhs, rhs) {
            (None, None) => return None,
            (Some(l), None) => {
                c.removed = self.all_below(ty, l);
                return Some(Change::Removed);
            }
            (None, Some(r)) => {
                c.added = self.all_below(ty, r);
                return Some(Change::Added);
            }
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
        let same_kind = matches!(
            (self.shape(ty, l), self.shape(ty, r)),
            (Kind::Map { .. }, Kind::Map { .. }) | (Kind::List { .. }, Kind::List { .. })
        );
        if same_kind {
            self.compare_below(ty, l, r, c);
            None
        } else {
            (l != r).then_some(Change::Modified)
        }
    }

    /// Compares the children of two maps or two lists of the same node.
    fn compare_below(&self, ty: Ty<'a>, l: &Value, r: &Value, c: &mut Comparison) {
        let mut record = |pe: &PathElement, cty: Ty<'a>, lv: Option<&Value>, rv: Option<&Value>| {
            let mut below = Comparison::default();
            let change = self.compare_node(cty, lv, rv, &mut below);
            let sets = [
                (&mut c.added, below.added, Change::Added),
                (&mut c.modified, below.modified, Change::Modified),
                (&mut c.removed, below.removed, Change::Removed),
            ];
            for (set, sub, which) in sets {
                let member = change == Some(which);
                if member || !sub.is_empty() {
                    set.insert_node(pe.clone(), member, sub);
                }
            }
        };
        match (self.shape(ty, l), l, r) {
            (Kind::Map { object, values }, Value::Object(lm), Value::Object(rm)) => {
                let keys = lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k)));
                for k in keys {
                    let (cty, _) = self.field(object, values, k);
                    record(&PathElement::Field(k.clone()), cty, lm.get(k), rm.get(k));
                }
            }
            (Kind::List { items, keys }, Value::Array(ll), Value::Array(rl)) => {
                let lpes = self.elements(items, keys, ll, "", None);
                let rpes = self.elements(items, keys, rl, "", None);
                let lmap: BTreeMap<&PathElement, &Value> = lpes.iter().zip(ll).collect();
                let rmap: BTreeMap<&PathElement, &Value> = rpes.iter().zip(rl).collect();
                for pe in lpes
                    .iter()
                    .chain(rpes.iter().filter(|pe| !lmap.contains_key(pe)))
                {
                    record(pe, items, lmap.get(pe).copied(), rmap.get(pe).copied());
                }
            }
            _ => {}
        }
    }

    /// Everything below a node, each a member.
    fn all_below(&self, ty: Ty<'a>, v: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        match (self.shape(ty, v), v) {
            (Kind::Map { object, values }, Value::Object(m)) => {
                for (k, cv) in m {
                    let (cty, _) = self.field(object, values, k);
                    out.insert_node(PathElement::Field(k.clone()), true, self.all_below(cty, cv));
                }
            }
            (Kind::List { items, keys }, Value::Array(list)) => {
                let pes = self.elements(items, keys, list, "", None);
                for (pe, item) in pes.into_iter().zip(list) {
                    let below = self.all_below(items, item);
                    out.insert_node(pe, true, below);
                }
            }
            _ => {}
        }
        out
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
                let pes = self.elements(items, keys, list, "", None);
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
        for (pe, member, below) in set.nodes() {
            let declared = match (pe, object) {
                (PathElement::Field(name), Some(o)) => o.field(name).is_some(),
                _ => false,
            };
            let below = self.ensure_named_fields_are_members(self.child(ty, pe), below);
            let has_children = !below.is_empty();
            out.insert_node(pe.clone(), member || (declared && has_children), below);
        }
        out
    }
}

/// Where each path element first occurs in a list.
fn first_index(pes: &[PathElement]) -> BTreeMap<&PathElement, usize> {
    let mut m = BTreeMap::new();
    for (i, pe) in pes.iter().enumerate() {
        m.entry(pe).or_insert(i);
    }
    m
}
