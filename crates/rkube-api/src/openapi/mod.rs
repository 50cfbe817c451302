//! OpenAPI documents as kube-apiserver serves them: the `/openapi/v3` index, one
//! v3 document per group-version, and the `/openapi/v2` Swagger document.
//!
//! Documents are generated on demand from the schema model (nothing large is kept);
//! the server caches the serialised bytes with their [`hash`] and regenerates when
//! the set of resources (CRDs) changes.

mod paths;
mod render;
pub mod v2_proto;

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::resource::{GroupVersionKind, ResourceInfo};
use crate::schema::{Catalog, CustomSchema, DefId, Schema, Type};
use paths::{DELETE_OPTIONS, PATCH, ResourceOps, SCALE, STATUS, WATCH_EVENT};
pub use render::Dialect;

/// The Kubernetes version the documents describe.
const INFO_VERSION: &str = "v1.33.0";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// One version of a custom resource: how it is served and its schema.
#[derive(Clone, Debug)]
pub struct CustomResource {
    pub info: ResourceInfo,
    pub schema: CustomSchema,
}

/// Everything the API server serves, as the documents need it.
#[derive(Clone, Copy)]
pub struct ApiSurface<'a> {
    pub catalog: &'a Catalog,
    pub builtins: &'a [ResourceInfo],
    pub custom: &'a [CustomResource],
}

/// `api/v1` or `apis/<group>/<version>`: a document's key in the v3 index.
pub fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable hash of a serialised document (upper-case hex SHA-512, as upstream).
pub fn hash(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The component name of a custom kind: the group reversed, then version and kind
/// (`com.example.v1.Widget`), as upstream names CRD definitions.
pub fn custom_definition_name(gvk: &GroupVersionKind) -> String {
    let group: Vec<&str> = gvk.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), gvk.version, gvk.kind)
}

fn gvk_extension(gvks: &[GroupVersionKind]) -> Value {
    Value::Array(
        gvks.iter()
            .map(|g| json!({"group": g.group, "kind": g.kind, "version": g.version}))
            .collect(),
    )
}

impl ApiSurface<'_> {
    /// Every served group-version, built-ins first, in discovery order.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let all = self
            .builtins
            .iter()
            .chain(self.custom.iter().map(|c| &c.info));
        for r in all {
            let gv = (r.group.clone(), r.version.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }

    /// The `/openapi/v3` index: every group-version document with its hash.
    /// Generating it renders every document; cache it.
    pub fn v3_index(&self) -> Value {
        let mut paths = Map::new();
        for (group, version) in self.group_versions() {
            let doc = self.v3_document(&group, &version).unwrap_or(Value::Null);
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let path = document_path(&group, &version);
            let url = format!("/openapi/v3/{path}?hash={}", hash(&bytes));
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
        json!({"paths": paths})
    }

    /// The v3 document of one group-version, or `None` when nothing is served there.
    pub fn v3_document(&self, group: &str, version: &str) -> Option<Value> {
        let builtins: Vec<&ResourceInfo> = self
            .builtins
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .collect();
        let custom: Vec<&CustomResource> = self
            .custom
            .iter()
            .filter(|c| c.info.group == group && c.info.version == version)
            .collect();
        if builtins.is_empty() && custom.is_empty() {
            return None;
        }
        let (paths, schemas) = self.render(&builtins, &custom, Dialect::V3);
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": INFO_VERSION},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"BearerToken": {
                    "type": "apiKey", "name": "authorization", "in": "header",
                    "description": "Bearer Token authentication",
                }},
            },
        }))
    }

    /// The `/openapi/v2` Swagger 2.0 document of everything served.
    pub fn v2_document(&self) -> Value {
        let builtins: Vec<&ResourceInfo> = self.builtins.iter().collect();
        let custom: Vec<&CustomResource> = self.custom.iter().collect();
        let (paths, definitions) = self.render(&builtins, &custom, Dialect::V2);
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": INFO_VERSION},
            "paths": paths,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": {
                "type": "apiKey", "name": "authorization", "in": "header",
                "description": "Bearer Token authentication",
            }},
            "security": [{"BearerToken": []}],
        })
    }

    fn render(
        &self,
        builtins: &[&ResourceInfo],
        custom: &[&CustomResource],
        dialect: Dialect,
    ) -> (Value, Value) {
        let catalog = self.catalog;
        let mut paths = Map::new();
        let mut roots: BTreeSet<u32> = BTreeSet::new();
        for name in [DELETE_OPTIONS, STATUS, PATCH, WATCH_EVENT, LIST_META] {
            add_root_id(catalog, name, &mut roots);
        }
        for r in builtins {
            let Some(id) = catalog.kind(&r.gvk()) else {
                continue;
            };
            let kind_def = catalog.definition(id).name.to_string();
            let list_def = format!("{kind_def}List");
            add_root_id(catalog, &kind_def, &mut roots);
            add_root_id(catalog, &list_def, &mut roots);
            if r.subresource("scale").is_some() {
                add_root_id(catalog, SCALE, &mut roots);
            }
            let ops = ResourceOps {
                info: r,
                kind_def,
                list_def,
                builtin: true,
                dialect,
            };
            ops.add_to(&mut paths);
        }
        let mut schemas = Map::new();
        for c in custom {
            collect_refs(&c.schema.root, &mut roots);
            if c.info.subresource("scale").is_some() {
                add_root_id(catalog, SCALE, &mut roots);
            }
            let kind_def = custom_definition_name(&c.info.gvk());
            let list_gvk =
                GroupVersionKind::new(&c.info.group, &c.info.version, &c.info.list_kind());
            let list_def = custom_definition_name(&list_gvk);
            let mut kind_schema = render::render_custom(catalog, &c.schema.root, dialect);
            kind_schema["x-kubernetes-group-version-kind"] = gvk_extension(&[c.info.gvk()]);
            let mut list_schema = custom_list(&kind_def, dialect);
            list_schema["x-kubernetes-group-version-kind"] = gvk_extension(&[list_gvk]);
            schemas.insert(kind_def.clone(), kind_schema);
            schemas.insert(list_def.clone(), list_schema);
            let ops = ResourceOps {
                info: &c.info,
                kind_def,
                list_def,
                builtin: false,
                dialect,
            };
            ops.add_to(&mut paths);
        }
        // Every definition reachable from the roots, in name order.
        let mut done: BTreeSet<u32> = BTreeSet::new();
        let mut todo: Vec<u32> = roots.into_iter().collect();
        while let Some(id) = todo.pop() {
            if !done.insert(id) {
                continue;
            }
            let mut refs = BTreeSet::new();
            collect_refs(&catalog.definition(DefId(id)).schema, &mut refs);
            todo.extend(refs.into_iter().filter(|r| !done.contains(r)));
        }
        for id in done {
            let def = catalog.definition(DefId(id));
            let mut schema = render::render(catalog, &def.schema, dialect, false);
            if !def.gvks.is_empty() {
                schema["x-kubernetes-group-version-kind"] = gvk_extension(&def.gvks);
            }
            schemas.insert(def.name.to_string(), schema);
        }
        schemas.sort_keys();
        (Value::Object(paths), Value::Object(schemas))
    }
}

fn add_root_id(catalog: &Catalog, name: &str, roots: &mut BTreeSet<u32>) {
    if let Some(id) = catalog.lookup(name) {
        roots.insert(id.0);
    }
}

/// The definitions a schema refers to directly (not through other definitions).
fn collect_refs(s: &Schema, out: &mut BTreeSet<u32>) {
    match &s.ty {
        Type::Ref(id) => {
            out.insert(id.0);
        }
        Type::Object(o) => o.fields.iter().for_each(|f| collect_refs(&f.schema, out)),
        Type::Array(a) => collect_refs(&a.items, out),
        Type::Map(m) => collect_refs(&m.values, out),
        _ => {}
    }
}

fn custom_list(kind_def: &str, dialect: Dialect) -> Value {
    let item = dialect.ref_object(kind_def);
    let meta = dialect.ref_object(LIST_META);
    let (items, metadata) = match dialect {
        Dialect::V3 => (
            json!({"type": "array", "items": item}),
            json!({"allOf": [meta], "description": "Standard list metadata."}),
        ),
        Dialect::V2 => (
            json!({"type": "array", "items": item}),
            json!({"$ref": meta["$ref"], "description": "Standard list metadata."}),
        ),
    };
    json!({
        "type": "object",
        "description": format!("A list of {}.", kind_def.rsplit('.').next().unwrap_or(kind_def)),
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": items,
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": metadata,
        },
        "required": ["items"],
    })
}

#[cfg(test)]
mod tests;
