//! JSON to protobuf: an object's `serde_json::Value` written by its message schema, field
//! numbers ascending and map keys sorted, as Go's encoder writes them.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::ProtobufError;
use super::schema::{Field, Scalar, Schema, Shape, Special, Type};
use super::wire::{FIXED64, VARINT, put_bytes, put_key, put_varint};

fn mismatch(path: &str, expected: &str) -> ProtobufError {
    ProtobufError::Type {
        path: path.to_string(),
        expected: expected.to_string(),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Encodes one message from its JSON value.
pub(crate) fn message(
    schema: &Schema,
    idx: usize,
    value: &Value,
    path: &str,
) -> Result<Vec<u8>, ProtobufError> {
    let msg = &schema.messages[idx];
    if msg.special != Special::None {
        return special(schema, idx, msg.special, value, path);
    }
    let obj = value
        .as_object()
        .ok_or_else(|| mismatch(path, "an object"))?;
    let mut known = HashSet::new();
    let out = fields(schema, idx, obj, path, &mut known)?;
    // TypeMeta is not part of protobuf messages; anything else unknown is an error.
    if let Some(k) = obj
        .keys()
        .find(|k| !known.contains(k.as_str()) && *k != "apiVersion" && *k != "kind")
    {
        return Err(ProtobufError::UnknownField {
            path: join(path, k),
        });
    }
    Ok(out)
}

/// The fields of a message taken from `obj`; inlined structs read the same object.
fn fields<'s>(
    schema: &'s Schema,
    idx: usize,
    obj: &Map<String, Value>,
    path: &str,
    known: &mut HashSet<&'s str>,
) -> Result<Vec<u8>, ProtobufError> {
    let mut out = Vec::new();
    for field in &schema.messages[idx].fields {
        if field.inline {
            let Type::Message(child) = field.ty else {
                unreachable!("only messages are inlined")
            };
            // Go writes embedded structs even when empty.
            let bytes = fields(schema, child, obj, path, known)?;
            put_bytes(&mut out, field.tag, &bytes);
            continue;
        }
        known.insert(field.json.as_str());
        let Some(value) = obj.get(&field.json).filter(|v| !v.is_null()) else {
            continue;
        };
        let child = join(path, &field.json);
        match field.shape {
            Shape::Single => single(schema, field, value, &child, &mut out)?,
            Shape::Repeated => {
                let items = value
                    .as_array()
                    .ok_or_else(|| mismatch(&child, "an array"))?;
                for (i, item) in items.iter().enumerate() {
                    single(schema, field, item, &format!("{child}[{i}]"), &mut out)?;
                }
            }
            Shape::Map => {
                let entries = value
                    .as_object()
                    .ok_or_else(|| mismatch(&child, "an object"))?;
                let mut keys: Vec<&String> = entries.keys().collect();
                keys.sort();
                for k in keys {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, k.as_bytes());
                    let v = &entries[k];
                    let entry_path = join(&child, k);
                    match field.ty {
                        Type::Message(m) => {
                            put_bytes(&mut entry, 2, &message(schema, m, v, &entry_path)?)
                        }
                        Type::Scalar(s) => put_scalar(&mut entry, 2, s, v, &entry_path)?,
                    }
                    put_bytes(&mut out, field.tag, &entry);
                }
            }
        }
    }
    Ok(out)
}

fn single(
    schema: &Schema,
    field: &Field,
    value: &Value,
    path: &str,
    out: &mut Vec<u8>,
) -> Result<(), ProtobufError> {
    match field.ty {
        Type::Scalar(s) => put_scalar(out, field.tag, s, value, path),
        Type::Message(m) => {
            let bytes = message(schema, m, value, path)?;
            put_bytes(out, field.tag, &bytes);
            Ok(())
        }
    }
}

fn put_scalar(
    out: &mut Vec<u8>,
    tag: u32,
    s: Scalar,
    v: &Value,
    path: &str,
) -> Result<(), ProtobufError> {
    match s {
        Scalar::String => put_bytes(
            out,
            tag,
            v.as_str()
                .ok_or_else(|| mismatch(path, "a string"))?
                .as_bytes(),
        ),
        Scalar::Bytes => {
            let text = v
                .as_str()
                .ok_or_else(|| mismatch(path, "a base64 string"))?;
            let bytes = BASE64
                .decode(text)
                .map_err(|_| mismatch(path, "a base64 string"))?;
            put_bytes(out, tag, &bytes);
        }
        Scalar::Int32 => {
            let n = v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| mismatch(path, "a 32-bit integer"))?;
            put_key(out, tag, VARINT);
            put_varint(out, i64::from(n) as u64);
        }
        Scalar::Int64 => {
            let n = v.as_i64().ok_or_else(|| mismatch(path, "an integer"))?;
            put_key(out, tag, VARINT);
            put_varint(out, n as u64);
        }
        Scalar::Bool => {
            let b = v.as_bool().ok_or_else(|| mismatch(path, "a boolean"))?;
            put_key(out, tag, VARINT);
            put_varint(out, u64::from(b));
        }
        Scalar::Double => {
            let f = v.as_f64().ok_or_else(|| mismatch(path, "a number"))?;
            put_key(out, tag, FIXED64);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
    }
    Ok(())
}

fn special(
    schema: &Schema,
    idx: usize,
    special: Special,
    value: &Value,
    path: &str,
) -> Result<Vec<u8>, ProtobufError> {
    let msg = &schema.messages[idx];
    let mut out = Vec::new();
    match special {
        Special::None => unreachable!("handled by the caller"),
        Special::Time | Special::MicroTime => {
            let text = value
                .as_str()
                .ok_or_else(|| mismatch(path, "an RFC 3339 time"))?;
            let t: Timestamp = text
                .parse()
                .map_err(|_| mismatch(path, "an RFC 3339 time"))?;
            put_key(&mut out, 1, VARINT);
            put_varint(&mut out, t.as_second() as u64);
            let nanos = t.subsec_nanosecond();
            if nanos != 0 && special == Special::MicroTime {
                put_key(&mut out, 2, VARINT);
                put_varint(&mut out, i64::from(nanos / 1000 * 1000) as u64);
            }
        }
        Special::Quantity => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(mismatch(path, "a quantity")),
            };
            put_bytes(&mut out, 1, text.as_bytes());
        }
        Special::IntOrString => {
            // Go writes all three fields: the type, the number and the string.
            let (kind, int, text) = match value {
                Value::Number(_) => {
                    let n = value
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| mismatch(path, "a 32-bit integer"))?;
                    (0u64, n, "")
                }
                Value::String(s) => (1, 0, s.as_str()),
                _ => return Err(mismatch(path, "an integer or a string")),
            };
            put_key(&mut out, 1, VARINT);
            put_varint(&mut out, kind);
            put_key(&mut out, 2, VARINT);
            put_varint(&mut out, i64::from(int) as u64);
            put_bytes(&mut out, 3, text.as_bytes());
        }
        Special::RawJson => {
            let raw = serde_json::to_vec(value).expect("a Value serializes");
            put_bytes(&mut out, 1, &raw);
        }
        Special::StringList => {
            let items = value
                .as_array()
                .ok_or_else(|| mismatch(path, "an array of strings"))?;
            for (i, item) in items.iter().enumerate() {
                put_scalar(&mut out, 1, Scalar::String, item, &format!("{path}[{i}]"))?;
            }
        }
        Special::PropsOrArray | Special::PropsOrStringArray => match value {
            Value::Object(_) => single(schema, &msg.fields[0], value, path, &mut out)?,
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    single(
                        schema,
                        &msg.fields[1],
                        item,
                        &format!("{path}[{i}]"),
                        &mut out,
                    )?;
                }
            }
            _ => return Err(mismatch(path, "a schema or an array")),
        },
        Special::PropsOrBool => match value {
            Value::Object(_) => {
                // Go also writes `allows: true` next to a schema.
                put_key(&mut out, 1, VARINT);
                put_varint(&mut out, 1);
                single(schema, &msg.fields[1], value, path, &mut out)?;
            }
            Value::Bool(b) => {
                put_key(&mut out, 1, VARINT);
                put_varint(&mut out, u64::from(*b));
            }
            _ => return Err(mismatch(path, "a schema or a boolean")),
        },
    }
    Ok(out)
}
