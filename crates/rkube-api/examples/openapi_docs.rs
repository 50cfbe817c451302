//! Writes rkube's OpenAPI documents to a directory and prints their sizes and how
//! long each took to generate: `cargo run --release -p rkube-api --example
//! openapi_docs -- <dir>`. Without a directory it only prints the figures.

use std::time::Instant;

use rkube_api::openapi::{ApiSurface, document_path};
use rkube_api::resource::builtin_resources;
use rkube_api::schema::builtin;

fn main() {
    let dir = std::env::args().nth(1);
    let start = Instant::now();
    let catalog = builtin();
    println!(
        "schema catalog: {} definitions built in {:?}",
        catalog.definitions().count(),
        start.elapsed()
    );
    let resources = builtin_resources();
    let surface = ApiSurface {
        catalog,
        builtins: &resources,
        custom: &[],
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
}
