//! Writes rkube's OpenAPI documents to a directory and prints their sizes, how
//! long each took to generate and the process's resident memory:
//! `cargo run --release -p rkube-api --example openapi_docs -- [<dir>]`.
//! The documents include a sample custom resource, `widgets.example.com`.

use std::time::Instant;

use rkube_api::openapi::{ApiSurface, CustomResource, document_path};
use rkube_api::resource::{
    GroupVersionKind, ResourceInfo, STANDARD_VERBS, Scope, builtin_resources,
};
use rkube_api::schema::{CustomSchema, builtin};

/// Resident memory of this process in KiB (Linux).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn sample_crd() -> CustomResource {
    let gvk = GroupVersionKind::new("example.com", "v1", "Widget");
    let schema = serde_json::json!({"type": "object", "properties": {"spec": {"type": "object",
    "description": "What the widget should be.",
    "properties": {
        "size": {"type": "integer", "description": "How big the widget is."},
        "colors": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "port": {"x-kubernetes-int-or-string": true}
    }}}});
    CustomResource {
        info: ResourceInfo {
            group: gvk.group.clone(),
            version: gvk.version.clone(),
            kind: gvk.kind.clone(),
            plural: "widgets".into(),
            singular: "widget".into(),
            scope: Scope::Namespaced,
            verbs: STANDARD_VERBS.iter().map(|v| v.to_string()).collect(),
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            stored: true,
        },
        schema: CustomSchema::from_crd_schema(gvk, &schema).expect("valid sample schema"),
    }
}

fn main() {
    let dir = std::env::args().nth(1);
    let rss_start = rss_kib();
    let start = Instant::now();
    let catalog = builtin();
    println!(
        "schema catalog: {} definitions built in {:?}, resident memory +{} KiB",
        catalog.definitions().count(),
        start.elapsed(),
        rss_kib().saturating_sub(rss_start)
    );
    let resources = builtin_resources();
    let custom = [sample_crd()];
    let surface = ApiSurface {
        catalog,
        builtins: &resources,
        custom: &custom,
    };
    let write = |name: &str, bytes: &[u8]| {
        if let Some(dir) = &dir {
            let path = std::path::Path::new(dir).join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    };
    for (group, version) in surface.group_versions() {
        let t = Instant::now();
        let doc = surface.v3_document(&group, &version).unwrap();
        let bytes = serde_json::to_vec(&doc).unwrap();
        let path = document_path(&group, &version);
        println!("v3 {path}: {} KiB in {:?}", bytes.len() / 1024, t.elapsed());
        write(&format!("v3/{path}.json"), &bytes);
    }
    let t = Instant::now();
    let index = serde_json::to_vec(&surface.v3_index()).unwrap();
    println!("v3 index (renders every document): {:?}", t.elapsed());
    write("v3/index.json", &index);
    let t = Instant::now();
    let v2 = serde_json::to_vec(&surface.v2_document()).unwrap();
    println!("v2: {} KiB in {:?}", v2.len() / 1024, t.elapsed());
    write("v2.json", &v2);
    drop((v2, index));
    println!(
        "resident memory after generating everything: {} KiB",
        rss_kib()
    );
}
