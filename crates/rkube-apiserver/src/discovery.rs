//! API discovery: the legacy documents (`/api`, `/apis`, `/api/v1`, `/apis/g/v`) and
//! aggregated discovery (`apidiscovery.k8s.io/v2`), which kubectl asks for first.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::output;
use crate::registry::Served;
use crate::server::ApiServer;

const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery v2 (kubectl 1.30+ offers it).
fn wants_aggregated(headers: &HeaderMap) -> bool {
    let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    accept.split(',').any(|m| {
        let params: Vec<&str> = m.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn served_in(server: &ApiServer, group: &str, version: &str) -> Vec<Arc<Served>> {
    server
        .registry
        .all()
        .into_iter()
        .filter(|s| s.info.group == group && s.info.version == version)
        .collect()
}

/// One version's resources in aggregated form.
fn aggregated_version(server: &ApiServer, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = served_in(server, group, version)
        .iter()
        .map(|s| {
            let i = &s.info;
            let mut r = json!({
                "resource": i.plural,
                "responseKind": {"group": i.group, "version": i.version, "kind": i.kind},
                "scope": if i.namespaced() { "Namespaced" } else { "Cluster" },
                "singularResource": i.singular,
                "verbs": i.verbs,
            });
            if !i.short_names.is_empty() {
                r["shortNames"] = json!(i.short_names);
            }
            if !i.categories.is_empty() {
                r["categories"] = json!(i.categories);
            }
            if !i.subresources.is_empty() {
                r["subresources"] = Value::Array(
                    i.subresources
                        .iter()
                        .map(|sr| {
                            json!({
                                "subresource": sr.name,
                                "responseKind": {"group": sr.group, "version": sr.version, "kind": sr.kind},
                                "verbs": sr.verbs,
                            })
                        })
                        .collect(),
                );
            }
            r
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

fn aggregated(items: Vec<Value>) -> Response<Body> {
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    });
    let mut r = output::json_response(StatusCode::OK, &body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(AGGREGATED_CONTENT_TYPE),
    );
    r.headers_mut()
        .insert(http::header::VARY, http::HeaderValue::from_static("Accept"));
    r
}

/// `/api`.
pub fn core_versions(server: &ApiServer, headers: &HeaderMap) -> Response<Body> {
    if wants_aggregated(headers) {
        let item = json!({"metadata": {}, "versions": [aggregated_version(server, "", "v1")]});
        return aggregated(vec![item]);
    }
    output::json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server.config.advertise_address}],
        }),
    )
}

fn group_entry(server: &ApiServer, group: &str) -> Value {
    let versions = server.registry.versions(group);
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": list,
        "preferredVersion": list.first().cloned().unwrap_or(json!({})),
    })
}

/// `/apis`.
pub fn groups(server: &ApiServer, headers: &HeaderMap) -> Response<Body> {
    let groups: Vec<String> = server
        .registry
        .groups()
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect();
    if wants_aggregated(headers) {
        let items = groups
            .iter()
            .map(|g| {
                let versions: Vec<Value> = server
                    .registry
                    .versions(g)
                    .iter()
                    .map(|v| aggregated_version(server, g, v))
                    .collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect();
        return aggregated(items);
    }
    let list: Vec<Value> = groups.iter().map(|g| group_entry(server, g)).collect();
    output::json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
    )
}

/// `/apis/<group>`.
pub fn group(server: &ApiServer, group: &str) -> ApiResult<Response<Body>> {
    if server.registry.versions(group).is_empty() {
        return Err(not_found());
    }
    let mut g = group_entry(server, group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Ok(output::json_response(StatusCode::OK, &g))
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// `/api/v1` and `/apis/<group>/<version>`.
pub fn group_version(server: &ApiServer, group: &str, version: &str) -> ApiResult<Response<Body>> {
    let served = served_in(server, group, version);
    if served.is_empty() {
        return Err(not_found());
    }
    let mut resources = Vec::new();
    for s in &served {
        let i = &s.info;
        let mut r = json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced(),
            "kind": i.kind,
            "verbs": i.verbs,
        });
        if !i.short_names.is_empty() {
            r["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            r["categories"] = json!(i.categories);
        }
        resources.push(r);
        for sr in &i.subresources {
            let mut r = json!({
                "name": format!("{}/{}", i.plural, sr.name),
                "singularName": "",
                "namespaced": i.namespaced(),
                "kind": sr.kind,
                "verbs": sr.verbs,
            });
            if sr.group != i.group || sr.version != i.version {
                r["group"] = json!(sr.group);
                r["version"] = json!(sr.version);
            }
            resources.push(r);
        }
    }
    let gv = rkube_api::resource::api_version(group, version);
    Ok(output::json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}
