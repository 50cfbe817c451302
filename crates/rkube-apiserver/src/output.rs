//! Content negotiation and response encoding: JSON, YAML, Table and
//! PartialObjectMetadata answers for objects, lists and watch events.

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::Served;

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// What goes in a Table row's `object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// The representation a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Table(IncludeObject),
    PartialMetadata,
    /// Kubernetes protobuf: only when the client accepts nothing else.
    Protobuf,
}

/// One entry of an Accept header: `type/subtype;k=v;...`.
struct MediaRange<'a> {
    mime: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl MediaRange<'_> {
    fn param(&self, k: &str) -> Option<&str> {
        self.params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v)
    }
}

fn parse_accept(accept: &str) -> Vec<MediaRange<'_>> {
    accept
        .split(',')
        .map(|part| {
            let mut it = part.split(';');
            let mime = it.next().unwrap_or("").trim();
            let params = it
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            MediaRange { mime, params }
        })
        .collect()
}

/// Picks the representation from the Accept header and `?includeObject=`.
pub fn negotiate(accept: Option<&str>, include_object: Option<&str>) -> ApiResult<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Format::Json);
    };
    for m in parse_accept(accept) {
        let json_like = matches!(m.mime, "application/json" | "*/*" | "application/*");
        match m.param("as") {
            Some("Table") if json_like && m.param("g") == Some("meta.k8s.io") => {
                let include = match include_object {
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    _ => IncludeObject::Metadata,
                };
                return Ok(Format::Table(include));
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if json_like && m.param("g") == Some("meta.k8s.io") =>
            {
                return Ok(Format::PartialMetadata);
            }
            Some(_) => continue,
            None => {}
        }
        if json_like {
            return Ok(Format::Json);
        }
        if m.mime == YAML {
            return Ok(Format::Yaml);
        }
    }
    // JSON is always preferred; protobuf is answered only to a client that takes
    // nothing else.
    if parse_accept(accept)
        .iter()
        .any(|m| m.mime == PROTOBUF && m.param("as").is_none())
    {
        return Ok(Format::Protobuf);
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, {TABLE_CONTENT_TYPE} (asked for {accept:?})"
    )))
}

/// A response with a body and content type.
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(JSON)),
    );
    r
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    respond(status, JSON, serde_json::to_vec(v).unwrap_or_default())
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status());
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// `PartialObjectMetadata` of an object.
pub use rkube_api::table::partial_object_metadata as partial_metadata;

/// Table columns and cells for a resource.
pub fn table(
    served: &Served,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let columns = crate::printing::columns(served);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": crate::printing::row(served, o, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    if headers {
        t["columnDefinitions"] = Value::Array(columns);
    }
    t
}

/// Protobuf bytes of an object, or its JSON when it has no protobuf form.
fn protobuf_response(status: StatusCode, obj: &Value) -> Response<Body> {
    match rkube_api::protobuf::encode(obj) {
        Ok(bytes) => respond(status, PROTOBUF, bytes),
        Err(e) => {
            tracing::debug!("answering JSON: no protobuf form: {e}");
            json_response(status, obj)
        }
    }
}

/// Encodes one object in the negotiated format.
pub fn object_response(
    served: &Served,
    status: StatusCode,
    obj: &Value,
    format: Format,
) -> Response<Body> {
    match format {
        Format::Json => json_response(status, obj),
        Format::Protobuf => protobuf_response(status, obj),
        Format::Yaml => respond(status, YAML, serde_yaml::to_string(obj).unwrap_or_default()),
        Format::PartialMetadata => json_response(status, &partial_metadata(obj)),
        Format::Table(include) => {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            let t = table(
                served,
                std::slice::from_ref(obj),
                json!({"resourceVersion": rv}),
                include,
                true,
            );
            respond(
                status,
                TABLE_CONTENT_TYPE,
                serde_json::to_vec(&t).unwrap_or_default(),
            )
        }
    }
}

/// List metadata: resourceVersion, continue, remainingItemCount.
pub fn list_meta(rv: i64, cont: Option<String>, remaining: Option<i64>) -> Value {
    let mut m = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        m["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        m["remainingItemCount"] = json!(r);
    }
    m
}

/// Encodes a list from objects already serialised as JSON (the fast path: no parse).
pub fn list_response(
    served: &Served,
    items: &[Bytes],
    meta: Value,
    format: Format,
) -> Response<Body> {
    match format {
        Format::Json => {
            let mut out =
                BytesMut::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
            out.put_slice(b"{\"kind\":\"");
            out.put_slice(served.info.list_kind().as_bytes());
            out.put_slice(b"\",\"apiVersion\":\"");
            out.put_slice(served.info.api_version().as_bytes());
            out.put_slice(b"\",\"metadata\":");
            out.put_slice(&serde_json::to_vec(&meta).unwrap_or_default());
            out.put_slice(b",\"items\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                out.put_slice(item);
            }
            out.put_slice(b"]}");
            respond(StatusCode::OK, JSON, out.freeze())
        }
        other => {
            let values: Vec<Value> = items
                .iter()
                .filter_map(|b| serde_json::from_slice(b).ok())
                .collect();
            match other {
                Format::Table(include) => {
                    let t = table(served, &values, meta, include, true);
                    respond(
                        StatusCode::OK,
                        TABLE_CONTENT_TYPE,
                        serde_json::to_vec(&t).unwrap_or_default(),
                    )
                }
                Format::PartialMetadata => {
                    let list = json!({
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": meta,
                        "items": values.iter().map(partial_metadata).collect::<Vec<_>>(),
                    });
                    json_response(StatusCode::OK, &list)
                }
                _ => {
                    let list = json!({
                        "kind": served.info.list_kind(),
                        "apiVersion": served.info.api_version(),
                        "metadata": meta,
                        "items": values,
                    });
                    respond(
                        StatusCode::OK,
                        YAML,
                        serde_yaml::to_string(&list).unwrap_or_default(),
                    )
                }
            }
        }
    }
}

/// One line of a watch stream.
pub fn watch_line(
    served: &Served,
    event_type: &str,
    obj_json: &Bytes,
    format: Format,
    first: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(obj_json.len() + 40);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(event_type.as_bytes());
    out.put_slice(b"\",\"object\":");
    match format {
        Format::Json | Format::Yaml | Format::Protobuf => out.put_slice(obj_json),
        Format::PartialMetadata => put_partial_metadata(&mut out, obj_json),
        Format::Table(include) => {
            let v: Value = serde_json::from_slice(obj_json).unwrap_or(Value::Null);
            let rv = v
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            let t = table(
                served,
                std::slice::from_ref(&v),
                json!({"resourceVersion": rv}),
                include,
                first,
            );
            out.put_slice(&serde_json::to_vec(&t).unwrap_or_default());
        }
    }
    out.put_slice(b"}\n");
    out.freeze()
}

/// An object's PartialObjectMetadata, its metadata copied as stored: the rest
/// of the object is skipped, not parsed into values.
fn put_partial_metadata(out: &mut BytesMut, obj_json: &[u8]) {
    #[derive(serde::Deserialize)]
    struct MetadataOnly<'a> {
        #[serde(borrow)]
        metadata: Option<&'a serde_json::value::RawValue>,
    }
    out.put_slice(br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#);
    match serde_json::from_slice::<MetadataOnly>(obj_json) {
        Ok(MetadataOnly { metadata: Some(m) }) => out.put_slice(m.get().as_bytes()),
        _ => out.put_slice(b"{}"),
    }
    out.put_slice(b"}");
}

/// A bookmark event carrying only a resourceVersion (and optional annotations).
pub fn bookmark_line(served: &Served, rv: i64, initial_events_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": served.info.kind, "apiVersion": served.info.api_version(), "metadata": meta});
    let mut line =
        serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// The content type of a watch stream in a format.
pub fn watch_content_type(format: Format) -> &'static str {
    match format {
        Format::Table(_) => TABLE_CONTENT_TYPE,
        _ => JSON,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_what_kubectl_sends() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(Some(table), None).unwrap(),
            Format::Table(IncludeObject::Metadata)
        );
        assert_eq!(
            negotiate(Some("application/json, */*"), None).unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(
                Some("application/vnd.kubernetes.protobuf,application/json"),
                None
            )
            .unwrap(),
            Format::Json
        );
        assert_eq!(negotiate(None, None).unwrap(), Format::Json);
        assert_eq!(
            negotiate(Some("application/yaml"), None).unwrap(),
            Format::Yaml
        );
        assert!(negotiate(Some("text/html"), None).is_err());
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), None).unwrap(),
            Format::Protobuf
        );
        assert_eq!(
            negotiate(
                Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
                None
            )
            .unwrap(),
            Format::PartialMetadata
        );
    }
}
