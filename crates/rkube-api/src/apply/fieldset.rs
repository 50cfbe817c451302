//! Sets of field paths, and their `FieldsV1` encoding in `managedFields`.
//!
//! A set is a tree: each node holds the path elements that are members (owned
//! leaves, or owned items/maps that also have owned children) and the children
//! to descend into. `FieldsV1` writes it as nested JSON objects whose keys are
//! `f:<field>`, `k:<keys as JSON>`, `v:<value as JSON>` or `i:<index>`, with
//! `".": {}` marking a node that is a member as well as a parent.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// A struct field or a map key: `f:name`.
    Field(String),
    /// An item of a list-map by its key fields, sorted by name: `k:{"name":"c"}`.
    Key(Vec<(String, Value)>),
    /// An item of a set-list by its value: `v:"x"`.
    Value(Value),
    /// An item of a list by position: `i:0`.
    Index(usize),
}

/// A path from an object's root.
pub type Path = Vec<PathElement>;

/// Why a `FieldsV1` document could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldsV1Error {
    /// The document (or a node of it) is not a JSON object.
    #[error("expected an object, found {0}")]
    NotAnObject(String),
    /// A key has none of the `f:`, `k:`, `v:`, `i:` prefixes, or a bad payload.
    #[error("unknown path element: {0:?}")]
    BadElement(String),
}

impl PathElement {
    pub fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `FieldsV1` key of this element.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            // The most common element, on every managedFields write: no formatting.
            PathElement::Field(f) => {
                let mut k = String::with_capacity(f.len() + 2);
                k.push_str("f:");
                k.push_str(f);
                k
            }
            PathElement::Key(keys) => {
                let m: Map<String, Value> = keys.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Reads a `FieldsV1` key.
    pub fn from_fields_v1_key(key: &str) -> Result<PathElement, FieldsV1Error> {
        let bad = || FieldsV1Error::BadElement(key.to_string());
        let (prefix, rest) = key.split_once(':').ok_or_else(bad)?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(m)) if !m.is_empty() => {
                    let mut keys: Vec<(String, Value)> = m.into_iter().collect();
                    keys.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(PathElement::Key(keys))
                }
                _ => Err(bad()),
            },
            "v" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|_| bad()),
            "i" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PathElement {
    /// Upstream's path notation: `.spec`, `[name="c"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(keys) => {
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a path as upstream prints it in conflicts: `.spec.replicas`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => compare_fields(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

fn compare_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// A total order over JSON values: numbers, strings, booleans, lists, maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((kx, vx), (ky, vy)) in xs.iter().zip(&ys) {
                let c = kx.cmp(ky).then_with(|| compare_values(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A set of paths (upstream's `fieldpath.Set`): a tree of nodes, each a member
/// of the set, a parent of members, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Never holds a node that is neither a member nor has children.
    nodes: BTreeMap<PathElement, Node>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: FieldSet,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a path (an empty path adds nothing).
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut set = self;
        for pe in parents {
            set = &mut set.nodes.entry(pe.clone()).or_default().children;
        }
        set.nodes.entry(last.clone()).or_default().member = true;
    }

    /// Whether a path is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut set = self;
        for pe in parents {
            match set.nodes.get(pe) {
                Some(n) => set = &n.children,
                None => return false,
            }
        }
        set.has_member(last)
    }

    /// Whether `pe` is a member at this level.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.nodes.get(pe).is_some_and(|n| n.member)
    }

    /// Whether `pe` is at this level, as a member or a parent of members.
    pub fn has_node(&self, pe: &PathElement) -> bool {
        self.nodes.contains_key(pe)
    }

    /// The paths below `pe` (upstream's `WithPrefix`), if any.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.nodes
            .get(pe)
            .map(|n| &n.children)
            .filter(|c| !c.is_empty())
    }

    /// Adds `pe` at this level, a member or not, with what is below it.
    pub(crate) fn insert_node(&mut self, pe: PathElement, member: bool, children: FieldSet) {
        if member || !children.is_empty() {
            self.nodes.insert(pe, Node { member, children });
        }
    }

    /// The elements at this level: whether each is a member, and its children.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (&PathElement, bool, &FieldSet)> {
        self.nodes.iter().map(|(pe, n)| (pe, n.member, &n.children))
    }

    /// Removes `pe` and everything below it.
    pub fn remove_subtree(&mut self, pe: &PathElement) {
        self.nodes.remove(pe);
    }

    /// Keeps only `pe` and what is below it.
    pub fn retain_subtree(&mut self, pe: &PathElement) {
        self.nodes.retain(|k, _| k == pe);
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds the paths of `other`.
    pub fn union_with(&mut self, other: &FieldSet) {
        for (pe, o) in &other.nodes {
            match self.nodes.get_mut(pe) {
                Some(n) => {
                    n.member |= o.member;
                    n.children.union_with(&o.children);
                }
                None => {
                    self.nodes.insert(pe.clone(), o.clone());
                }
            }
        }
    }

    /// The paths of `self` that are not paths of `other` (members compared at
    /// each level; a member of `other` does not remove children of `self`).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, n) in &self.nodes {
            match other.nodes.get(pe) {
                Some(o) => out.insert_node(
                    pe.clone(),
                    n.member && !o.member,
                    n.children.difference(&o.children),
                ),
                None => {
                    out.nodes.insert(pe.clone(), n.clone());
                }
            }
        }
        out
    }

    /// Removes the paths of `other` (as [`FieldSet::difference`], in place).
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.is_empty() {
            return;
        }
        self.nodes.retain(|pe, n| {
            if let Some(o) = other.nodes.get(pe) {
                n.member &= !o.member;
                n.children.subtract(&o.children);
            }
            n.member || !n.children.is_empty()
        });
    }

    /// Whether every path of `self` is a path of `other`.
    pub fn is_subset_of(&self, other: &FieldSet) -> bool {
        self.nodes.iter().all(|(pe, n)| match other.nodes.get(pe) {
            Some(o) => (!n.member || o.member) && n.children.is_subset_of(&o.children),
            None => false,
        })
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, n) in &self.nodes {
            if let Some(o) = other.nodes.get(pe) {
                out.insert_node(
                    pe.clone(),
                    n.member && o.member,
                    n.children.intersection(&o.children),
                );
            }
        }
        out
    }

    /// Every member path: a level's members first, then its children, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (pe, _) in self.nodes.iter().filter(|(_, n)| n.member) {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(p);
        }
        for (pe, n) in &self.nodes {
            prefix.push(pe.clone());
            n.children.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Reads a `FieldsV1` document.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(m) = v else {
            return Err(FieldsV1Error::NotAnObject(v.to_string()));
        };
        let mut set = FieldSet::new();
        for (key, child) in m {
            if key == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1_key(key)?;
            let Value::Object(cm) = child else {
                return Err(FieldsV1Error::NotAnObject(child.to_string()));
            };
            let member = cm.is_empty() || cm.contains_key(".");
            set.insert_node(pe, member, FieldSet::from_fields_v1(child)?);
        }
        Ok(set)
    }

    /// Writes the set as a `FieldsV1` document (keys in upstream's order).
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_node(false))
    }

    fn fields_v1_node(&self, dot: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if dot {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, n) in &self.nodes {
            let node = if n.children.is_empty() {
                Map::new()
            } else {
                n.children.fields_v1_node(n.member)
            };
            out.insert(pe.to_fields_v1_key(), Value::Object(node));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn fields_v1_round_trip() {
        let doc = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}
            },
            "f:finalizers": {"v:\"a\"": {}, "i:3": {}}
        });
        let set = FieldSet::from_fields_v1(&doc).unwrap();
        assert!(set.has(&[f("spec"), f("replicas")]));
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("metadata")]));
        let key = PathElement::Key(vec![("name".into(), json!("c"))]);
        let item = [f("spec"), f("template"), f("spec"), f("containers"), key];
        assert!(set.has(&item));
        assert_eq!(set.to_fields_v1(), doc);
        let text = set.to_fields_v1().to_string();
        // "." first, fields before keys before values before indices.
        assert!(text.starts_with("{\"f:finalizers\":{\"v:\\\"a\\\"\":{},\"i:3\":{}}"));
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:y": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn set_operations() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata"), f("labels"), f("x")]);
        let i = a.intersection(&b);
        assert_eq!(i.paths().len(), 1);
        assert!(i.has(&[f("spec"), f("replicas")]));
        let d = a.difference(&b);
        assert_eq!(d.paths(), vec![vec![f("spec"), f("paused")]]);
        assert!(b.difference(&b).is_empty());
        let u = a.union(&b);
        assert_eq!(u.paths().len(), 3);
        assert!(a.is_subset_of(&u) && b.is_subset_of(&u) && !u.is_subset_of(&a));
        let mut s = u.clone();
        s.subtract(&b);
        assert_eq!(s, a.difference(&b));
        s.subtract(&a);
        assert!(s.is_empty());
    }

    #[test]
    fn paths_print_like_upstream() {
        let p = vec![
            f("spec"),
            f("containers"),
            PathElement::Key(vec![("name".into(), json!("c"))]),
            f("ports"),
            PathElement::Key(vec![
                ("containerPort".into(), json!(80)),
                ("protocol".into(), json!("TCP")),
            ]),
        ];
        assert_eq!(
            path_string(&p),
            ".spec.containers[name=\"c\"].ports[containerPort=80,protocol=\"TCP\"]"
        );
        assert_eq!(
            path_string(&[f("finalizers"), PathElement::Value(json!("x"))]),
            ".finalizers[=\"x\"]"
        );
    }
}
