//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) to and from the
//! JSON objects (`serde_json::Value`) rkube's API server works with.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` envelope: the object's
//! `apiVersion` and `kind`, then the object's own message. Messages are read and written
//! generically through a schema table of every built-in type (field numbers, JSON names,
//! types), generated from k8s-pb and k8s-openapi by `tools/protobuf_schema.py`; a few
//! types with their own JSON form (times, quantities, int-or-string, embedded JSON) are
//! handled by name.
//!
//! Decoding gives the JSON a JSON body would give: Go's encoder writes every non-pointer
//! field, so zero values are dropped unless the field is required or a pointer in Go
//! (`src/protobuf/pointers.txt`), where a zero means what it says.

mod decode;
mod encode;
mod schema;
pub(crate) mod wire;

use serde_json::{Map, Value};
use thiserror::Error;

use wire::{LEN, Reader, WireValue};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// Why a protobuf body could not be read or an object not be written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the body is not a Kubernetes protobuf message (missing the k8s\\0 prefix)")]
    NotKubernetes,
    /// The bytes are not a valid message of the expected type.
    #[error("malformed protobuf at {path}: {reason}")]
    Malformed { path: String, reason: String },
    /// No built-in type has this apiVersion and kind.
    #[error("no protobuf encoding is known for {api_version}, Kind={kind}")]
    UnknownKind { api_version: String, kind: String },
    /// The envelope names a content encoding (compression) rkube does not read.
    #[error("unsupported protobuf content encoding {0:?}")]
    ContentEncoding(String),
    /// The object has a field its type does not define.
    #[error("{path}: unknown field")]
    UnknownField { path: String },
    /// A field has a value of the wrong JSON type.
    #[error("{path}: expected {expected}")]
    Type { path: String, expected: String },
}

/// Whether objects of this apiVersion and kind can be encoded and decoded.
pub fn supports(api_version: &str, kind: &str) -> bool {
    message_of(api_version, kind).is_some()
}

fn message_of(api_version: &str, kind: &str) -> Option<usize> {
    schema::schema()
        .kinds
        .get(&(api_version.to_string(), kind.to_string()))
        .copied()
}

fn unknown_kind(api_version: &str, kind: &str) -> ProtobufError {
    ProtobufError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    }
}

/// Reads a protobuf body into the JSON object it stands for, `apiVersion` and `kind`
/// first.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(&MAGIC)
        .ok_or(ProtobufError::NotKubernetes)?;
    let malformed = |reason: &str| ProtobufError::Malformed {
        path: "(envelope)".to_string(),
        reason: reason.to_string(),
    };
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| malformed("string is not UTF-8"))
    };
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    let mut reader = Reader::new(envelope);
    while let Some((tag, value)) = reader.field().map_err(malformed)? {
        let WireValue::Bytes(b) = value else {
            return Err(malformed("unexpected wire type"));
        };
        match tag {
            1 => {
                let mut meta = Reader::new(b);
                while let Some((t, v)) = meta.field().map_err(malformed)? {
                    if let WireValue::Bytes(s) = v {
                        match t {
                            1 => api_version = text(s)?,
                            2 => kind = text(s)?,
                            _ => {}
                        }
                    }
                }
            }
            2 => raw = b,
            3 => encoding = text(b)?,
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let idx = message_of(&api_version, &kind).ok_or_else(|| unknown_kind(&api_version, &kind))?;
    let body = decode::message(schema::schema(), idx, raw, "")?;
    let mut out = Map::new();
    out.insert("apiVersion".to_string(), Value::String(api_version));
    out.insert("kind".to_string(), Value::String(kind));
    if let Value::Object(fields) = body {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Writes a JSON object (with `apiVersion` and `kind`) as a protobuf body.
pub fn encode(obj: &Value) -> Result<Vec<u8>, ProtobufError> {
    let field = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let idx = message_of(api_version, kind).ok_or_else(|| unknown_kind(api_version, kind))?;
    let raw = encode::message(schema::schema(), idx, obj, "")?;
    let mut type_meta = Vec::new();
    wire::put_bytes(&mut type_meta, 1, api_version.as_bytes());
    wire::put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    wire::put_bytes(&mut out, 1, &type_meta);
    wire::put_bytes(&mut out, 2, &raw);
    // contentEncoding and contentType, empty as Go writes them.
    wire::put_key(&mut out, 3, LEN);
    out.push(0);
    wire::put_key(&mut out, 4, LEN);
    out.push(0);
    Ok(out)
}

#[cfg(test)]
mod tests;
