//! `/openapi/v2` and `/openapi/v3`: the API's schemas, for `kubectl explain`,
//! client-side apply and server-side field validation.
//!
//! Documents are rendered on first request and kept (as bytes) until the set of
//! custom resources changes. The v3 index names each document with a hash of what
//! it is made from, so clients cache them safely without rendering all of them.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use rkube_api::ResourceInfo;
use rkube_api::openapi::{self, ApiSurface, CustomResource};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use crate::error::{ApiError, ApiResult};
use crate::output;
use crate::request::Query;
use crate::server::ApiServer;

/// Rendered documents, valid for one registry generation.
#[derive(Default)]
pub struct DocCache {
    inner: Mutex<(u64, HashMap<String, Bytes>)>,
}

impl DocCache {
    fn get_or_render(
        &self,
        generation: u64,
        key: &str,
        render: impl FnOnce() -> Option<Value>,
    ) -> Option<Bytes> {
        self.get_or_encode(generation, key, || {
            serde_json::to_vec(&render()?).ok().map(Bytes::from)
        })
    }

    fn get_or_encode(
        &self,
        generation: u64,
        key: &str,
        render: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        {
            let g = self.inner.lock().expect("openapi cache lock");
            if g.0 == generation
                && let Some(b) = g.1.get(key)
            {
                return Some(b.clone());
            }
        }
        let bytes = render()?;
        let mut g = self.inner.lock().expect("openapi cache lock");
        if g.0 != generation {
            *g = (generation, HashMap::new());
        }
        g.1.insert(key.to_string(), bytes.clone());
        Some(bytes)
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// What the documents describe: built-in and custom resources.
fn surface_parts(server: &ApiServer) -> (Vec<ResourceInfo>, Vec<CustomResource>) {
    let builtins: Vec<ResourceInfo> = server
        .registry
        .builtins()
        .iter()
        .filter(|s| s.info.stored)
        .map(|s| s.info.clone())
        .collect();
    let custom: Vec<CustomResource> = server
        .registry
        .custom()
        .iter()
        .filter_map(|s| {
            Some(CustomResource {
                info: s.info.clone(),
                schema: s.custom_schema.clone()?,
            })
        })
        .collect();
    (builtins, custom)
}

/// A hash of what a group-version document is made from.
fn document_hash(server: &ApiServer, group: &str, version: &str) -> String {
    let mut h = Sha512::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(group);
    h.update(version);
    for s in server.registry.custom() {
        if s.info.group == group && s.info.version == version {
            h.update(serde_json::to_vec(&s.crd_version).unwrap_or_default());
            h.update(&s.info.plural);
            h.update(&s.info.kind);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

/// The media type clients ask the protobuf Swagger 2.0 document by.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The Content-Type it is sent with (`@` is not allowed in a media type, so upstream
/// answers with a dot; Go's MIME parser refuses the other spelling).
const V2_PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Whether the Accept header names `media` (parameters ignored).
fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|m| m.split(';').next().unwrap_or("").trim() == media)
        })
}

fn accepts_json(headers: &HeaderMap) -> bool {
    match headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(a) => a.split(',').any(|m| {
            let m = m.split(';').next().unwrap_or("").trim();
            matches!(m, "application/json" | "*/*" | "application/*" | "")
        }),
    }
}

pub fn serve(
    server: &ApiServer,
    headers: &HeaderMap,
    path: &str,
    _query: &Query,
) -> ApiResult<Response<Body>> {
    let generation = server.registry.generation();
    let catalog = rkube_api::schema::builtin();
    if path == "/openapi/v3" {
        let (builtins, custom) = surface_parts(server);
        let surface = ApiSurface {
            catalog,
            builtins: &builtins,
            custom: &custom,
        };
        let mut paths = serde_json::Map::new();
        for (group, version) in surface.group_versions() {
            let p = openapi::document_path(&group, &version);
            let url = format!(
                "/openapi/v3/{p}?hash={}",
                document_hash(server, &group, &version)
            );
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
        return Ok(output::json_response(
            StatusCode::OK,
            &json!({"paths": paths}),
        ));
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["api", v] => (String::new(), v.to_string()),
            ["apis", g, v] => (g.to_string(), v.to_string()),
            _ => return Err(not_found()),
        };
        let bytes = server
            .openapi
            .get_or_render(generation, rest, || {
                let (builtins, custom) = surface_parts(server);
                let surface = ApiSurface {
                    catalog,
                    builtins: &builtins,
                    custom: &custom,
                };
                surface.v3_document(&group, &version)
            })
            .ok_or_else(not_found)?;
        let mut r = output::respond(StatusCode::OK, output::JSON, bytes);
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, immutable"),
        );
        return Ok(r);
    }
    if path == "/openapi/v2" {
        let render = || {
            let (builtins, custom) = surface_parts(server);
            let surface = ApiSurface {
                catalog,
                builtins: &builtins,
                custom: &custom,
            };
            surface.v2_document()
        };
        // client-go asks for gnostic's protobuf form; JSON is for everyone else.
        if accepts(headers, V2_PROTOBUF) || accepts(headers, V2_PROTOBUF_CONTENT_TYPE) {
            let bytes = server
                .openapi
                .get_or_encode(generation, "v2.pb", || {
                    Some(Bytes::from(openapi::v2_proto::encode_document(&render())))
                })
                .ok_or_else(not_found)?;
            return Ok(output::respond(
                StatusCode::OK,
                V2_PROTOBUF_CONTENT_TYPE,
                bytes,
            ));
        }
        if !accepts_json(headers) {
            return Err(ApiError::not_acceptable(format!(
                "only the following media types are accepted: application/json, {V2_PROTOBUF}"
            )));
        }
        let bytes = server
            .openapi
            .get_or_render(generation, "v2", || Some(render()))
            .ok_or_else(not_found)?;
        return Ok(output::respond(StatusCode::OK, output::JSON, bytes));
    }
    Err(not_found())
}
