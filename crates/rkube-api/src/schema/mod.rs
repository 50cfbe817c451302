//! The structure of every kind the API server serves: fields, types, list and map semantics.
//!
//! One compact model feeds strict decoding, the OpenAPI documents and the patch
//! engines. Built-in kinds come from k8s-openapi's `schemars` output, built once on
//! first use ([`builtin`]); the Kubernetes extensions that output lacks (patch
//! strategies, list and map types, atomic structs, a few defaults) are supplied as
//! data tables. Custom resources bring their own `openAPIV3Schema`
//! ([`CustomSchema::from_crd_schema`]), converted into the same model.

mod builtin;
mod crd;
#[rustfmt::skip]
mod list_types;
mod semantics;

use std::collections::HashMap;

use serde_json::Value;

use crate::resource::GroupVersionKind;

pub use builtin::builtin;
pub use crd::{CrdSchemaError, CustomSchema};

/// Index of a named definition in a [`Catalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DefId(pub(crate) u32);

/// A set of named definitions (`io.k8s.api.apps.v1.Deployment`, ...) that refer to
/// each other, plus which definition serves which group-version-kind.
#[derive(Debug, Default)]
pub struct Catalog {
    defs: Vec<Definition>,
    by_name: HashMap<Box<str>, DefId>,
    by_gvk: HashMap<GroupVersionKind, DefId>,
}

/// One named definition.
#[derive(Debug)]
pub struct Definition {
    /// Upstream's definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub name: Box<str>,
    /// The kinds this definition is served as (`x-kubernetes-group-version-kind`).
    pub gvks: Vec<GroupVersionKind>,
    pub schema: Schema,
}

/// One node of a schema: a type plus what documents it.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub description: Option<Box<str>>,
    pub ty: Type,
    /// The default upstream's OpenAPI documents for this field, when there is one.
    pub default: Option<Box<Value>>,
    /// `nullable: true` (CRDs): an explicit null is kept instead of dropped.
    pub nullable: bool,
    /// Value constraints of a CRD schema kept as written (`enum`, `pattern`,
    /// `minimum`, `maxItems`, `x-kubernetes-validations`, ...).
    pub constraints: Option<Box<serde_json::Map<String, Value>>>,
}

/// What values a schema node accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    /// A named definition of the catalog.
    Ref(DefId),
    Object(Box<Object>),
    Array(Box<Array>),
    /// An object whose keys are free (`additionalProperties`).
    Map(Box<MapOf>),
    String {
        format: Option<Box<str>>,
    },
    Integer {
        format: Option<Box<str>>,
    },
    Number {
        format: Option<Box<str>>,
    },
    Boolean,
    /// `x-kubernetes-int-or-string`: an integer or a string.
    IntOrString,
    /// `resource.Quantity`: a string (or number) such as `500m` or `1Gi`.
    Quantity,
    /// Any JSON value (arbitrary JSON, or no type with preserved unknown fields).
    Any,
}

/// A struct: known fields.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Object {
    /// Sorted by name.
    pub fields: Vec<Field>,
    pub required: Vec<Box<str>>,
    /// `x-kubernetes-preserve-unknown-fields`: fields not listed are kept, not errors.
    pub preserve_unknown_fields: bool,
    /// `x-kubernetes-embedded-resource`: holds a whole object (apiVersion, kind, metadata).
    pub embedded_resource: bool,
    /// `x-kubernetes-map-type` of a struct: atomic structs are replaced whole by apply.
    pub struct_type: MapKind,
}

/// A field of an [`Object`], with its strategic-merge-patch metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: Box<str>,
    pub schema: Schema,
    /// `x-kubernetes-patch-strategy`.
    pub patch_strategy: PatchStrategy,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<Box<str>>,
}

/// An array and how apply merges it.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub items: Schema,
    /// `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
    pub list_type: ListType,
}

/// A map with free keys.
#[derive(Clone, Debug, PartialEq)]
pub struct MapOf {
    pub values: Schema,
    /// `x-kubernetes-map-type`.
    pub map_type: MapKind,
}

/// `x-kubernetes-list-type`, as the generated table spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    Map,
}

/// How server-side apply treats a list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ListType {
    /// Replaced as a whole (upstream's default).
    #[default]
    Atomic,
    /// Scalars, each owned separately.
    Set,
    /// Objects identified by these keys (`x-kubernetes-list-map-keys`).
    Map(Vec<Box<str>>),
}

impl ListType {
    pub fn name(&self) -> &'static str {
        match self {
            ListType::Atomic => "atomic",
            ListType::Set => "set",
            ListType::Map(_) => "map",
        }
    }
}

/// `x-kubernetes-map-type`: whether a map or struct merges key by key or whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MapKind {
    #[default]
    Granular,
    Atomic,
}

/// `x-kubernetes-patch-strategy`: how a strategic merge patch treats a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PatchStrategy {
    /// `merge`: lists merge by merge key (objects) or by value (scalars).
    pub merge: bool,
    /// `retainKeys`: fields of the object absent from the patch are cleared.
    pub retain_keys: bool,
    /// `replace`: the patch value replaces the field whole.
    pub replace: bool,
}

impl PatchStrategy {
    pub fn is_empty(&self) -> bool {
        !self.merge && !self.retain_keys && !self.replace
    }

    /// Upstream's spelling, e.g. `merge,retainKeys`.
    pub fn to_extension(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.merge {
            parts.push("merge");
        }
        if self.retain_keys {
            parts.push("retainKeys");
        }
        if self.replace {
            parts.push("replace");
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }

    /// Parses `merge`, `retainKeys`, `merge,retainKeys`, `replace`.
    pub fn parse(s: &str) -> PatchStrategy {
        let mut p = PatchStrategy::default();
        for part in s.split(',').map(str::trim) {
            match part {
                "merge" => p.merge = true,
                "retainKeys" => p.retain_keys = true,
                "replace" => p.replace = true,
                _ => {}
            }
        }
        p
    }
}

impl Schema {
    pub fn new(ty: Type) -> Schema {
        Schema {
            description: None,
            ty,
            default: None,
            nullable: false,
            constraints: None,
        }
    }

    pub fn with_description(mut self, description: impl Into<Box<str>>) -> Schema {
        self.description = Some(description.into());
        self
    }

    pub fn string() -> Schema {
        Schema::new(Type::String { format: None })
    }
}

impl Object {
    /// The field called `name`, if the struct has one.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .binary_search_by(|f| f.name.as_ref().cmp(name))
            .ok()
            .map(|i| &self.fields[i])
    }

    pub(crate) fn sort_fields(&mut self) {
        self.fields.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

impl Field {
    pub fn new(name: &str, schema: Schema) -> Field {
        Field {
            name: name.into(),
            schema,
            patch_strategy: PatchStrategy::default(),
            merge_key: None,
        }
    }
}

impl Catalog {
    /// The definition a reference points at.
    pub fn definition(&self, id: DefId) -> &Definition {
        &self.defs[id.0 as usize]
    }

    /// Every definition, in catalog order (sorted by name).
    pub fn definitions(&self) -> impl Iterator<Item = (DefId, &Definition)> {
        self.defs
            .iter()
            .enumerate()
            .map(|(i, d)| (DefId(i as u32), d))
    }

    pub fn lookup(&self, name: &str) -> Option<DefId> {
        self.by_name.get(name).copied()
    }

    /// The definition serving a kind.
    pub fn kind(&self, gvk: &GroupVersionKind) -> Option<DefId> {
        self.by_gvk.get(gvk).copied()
    }

    /// The schema of a kind (an object schema).
    pub fn kind_schema(&self, gvk: &GroupVersionKind) -> Option<&Schema> {
        self.kind(gvk).map(|id| &self.definition(id).schema)
    }

    /// Follows references until a schema that is not one.
    pub fn resolve<'a>(&'a self, mut schema: &'a Schema) -> &'a Schema {
        while let Type::Ref(id) = schema.ty {
            schema = &self.definition(id).schema;
        }
        schema
    }

    /// The object type behind a schema, after references.
    pub fn object<'a>(&'a self, schema: &'a Schema) -> Option<&'a Object> {
        match &self.resolve(schema).ty {
            Type::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The schema at a dotted path of field names below `root` (arrays and maps are
    /// stepped through transparently), e.g. `spec.template.spec.containers`.
    pub fn schema_at<'a>(&'a self, root: &'a Schema, path: &str) -> Option<&'a Schema> {
        let mut cur = root;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            cur = self.elements(cur);
            cur = &self.object(cur)?.field(part)?.schema;
        }
        Some(cur)
    }

    /// The field named by a dotted path (see [`Catalog::schema_at`]).
    pub fn field_at<'a>(&'a self, root: &'a Schema, path: &str) -> Option<&'a Field> {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (self.schema_at(root, p)?, l),
            None => (root, path),
        };
        self.object(self.elements(parent))?.field(last)
    }

    /// Steps through arrays and maps to the schema of their elements.
    pub fn elements<'a>(&'a self, schema: &'a Schema) -> &'a Schema {
        let mut cur = self.resolve(schema);
        loop {
            match &cur.ty {
                Type::Array(a) => cur = self.resolve(&a.items),
                Type::Map(m) => cur = self.resolve(&m.values),
                _ => return cur,
            }
        }
    }

    pub(crate) fn push(&mut self, name: &str, schema: Schema) -> DefId {
        let id = DefId(self.defs.len() as u32);
        self.defs.push(Definition {
            name: name.into(),
            gvks: Vec::new(),
            schema,
        });
        self.by_name.insert(name.into(), id);
        id
    }

    pub(crate) fn add_gvk(&mut self, id: DefId, gvk: GroupVersionKind) {
        self.by_gvk.entry(gvk.clone()).or_insert(id);
        let def = &mut self.defs[id.0 as usize];
        if !def.gvks.contains(&gvk) {
            def.gvks.push(gvk);
        }
    }

    pub(crate) fn definition_mut(&mut self, id: DefId) -> &mut Definition {
        &mut self.defs[id.0 as usize]
    }
}

/// The schemas of every served kind: the built-in catalog plus one schema per
/// custom resource version, looked up by group-version-kind.
#[derive(Debug, Default)]
pub struct KindSchemas {
    custom: HashMap<GroupVersionKind, CustomSchema>,
}

impl KindSchemas {
    /// Adds or replaces a custom resource version's schema (a CRD was created or changed).
    pub fn insert(&mut self, schema: CustomSchema) {
        self.custom.insert(schema.gvk.clone(), schema);
    }

    /// Forgets a custom resource version (its CRD or version was removed).
    pub fn remove(&mut self, gvk: &GroupVersionKind) -> Option<CustomSchema> {
        self.custom.remove(gvk)
    }

    /// The schema of a kind, built-in or custom; references resolve in [`builtin`].
    pub fn get(&self, gvk: &GroupVersionKind) -> Option<&Schema> {
        match self.custom.get(gvk) {
            Some(c) => Some(&c.root),
            None => builtin().kind_schema(gvk),
        }
    }

    /// Whether the kind is a custom resource (no strategic merge patch, CRD-style errors).
    pub fn is_custom(&self, gvk: &GroupVersionKind) -> bool {
        self.custom.contains_key(gvk)
    }
}

/// The kind of a Go value as upstream's decoder names it in type errors
/// (`v1.ServiceBackendPort`, `int32`, `[]v1.Container`, `map[string]string`).
pub fn go_type_name(catalog: &Catalog, schema: &Schema) -> String {
    match &schema.ty {
        Type::Ref(id) => {
            let name = &catalog.definition(*id).name;
            match name.rsplit_once('.') {
                Some((pkg, ty)) => {
                    let pkg = pkg.rsplit('.').next().unwrap_or(pkg);
                    format!("{pkg}.{ty}")
                }
                None => name.to_string(),
            }
        }
        Type::Object(_) => "map[string]interface {}".into(),
        Type::Array(a) => format!("[]{}", go_type_name(catalog, &a.items)),
        Type::Map(m) => format!("map[string]{}", go_type_name(catalog, &m.values)),
        Type::String { format } if format.as_deref() == Some("byte") => "[]uint8".into(),
        Type::String { .. } => "string".into(),
        Type::Integer { format } => match format.as_deref() {
            Some("int32") => "int32".into(),
            _ => "int64".into(),
        },
        Type::Number { .. } => "float64".into(),
        Type::Boolean => "bool".into(),
        Type::IntOrString => "intstr.IntOrString".into(),
        Type::Quantity => "resource.Quantity".into(),
        Type::Any => "interface {}".into(),
    }
}

#[cfg(test)]
mod tests;
