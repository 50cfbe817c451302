//! Reading request bodies: size limit, content types, decoding into objects.

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Upstream's limit on request bodies (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Reads the whole body, refusing more than `MAX_BODY` bytes.
pub async fn read(body: Body) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::too_large(
                    "Request entity too large: limit is 3145728",
                ))
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}

/// The media type of a request (without parameters); JSON when absent.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "application/json".to_string())
}

/// Decodes an object body (create, update) in any supported media type.
pub fn decode_object(content_type: &str, bytes: &[u8]) -> ApiResult<Value> {
    match content_type {
        "application/json" | "*/*" => parse_json(bytes),
        "application/yaml" | "application/x-yaml" | "text/yaml" => parse_yaml(bytes),
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(bytes),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Decodes the body of a write to a resource of `kind`; a body that cannot be read
/// is refused as upstream does, naming the kind and the start of the data.
pub fn decode_object_of(kind: &str, content_type: &str, bytes: &[u8]) -> ApiResult<Value> {
    decode_object(content_type, bytes).map_err(|e| {
        if e.code == http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return e;
        }
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): {} ({})",
            e.message,
            summarize(bytes, 30)
        ))
    })
}

/// The start of a body for an error message: as text when it looks like JSON, else
/// in hex.
fn summarize(data: &[u8], max: usize) -> String {
    let (head, more) = if data.len() > max {
        (&data[..max], " ...")
    } else {
        (data, "")
    };
    match data.first() {
        None => "<empty>".to_string(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(head)),
        Some(_) => {
            let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}{more}")
        }
    }
}

pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

pub fn parse_yaml(bytes: &[u8]) -> ApiResult<Value> {
    serde_yaml::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
}
