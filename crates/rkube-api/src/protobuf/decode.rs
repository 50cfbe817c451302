//! Protobuf to JSON: a message read by its schema into the `serde_json::Value` the same
//! object's JSON form would give.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::ProtobufError;
use super::schema::{Field, Message, Scalar, Schema, Shape, Special, Type};
use super::wire::{Reader, WireValue};

fn malformed(path: &str, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::Malformed {
        path: if path.is_empty() {
            "(object)".to_string()
        } else {
            path.to_string()
        },
        reason: reason.into(),
    }
}

/// Decodes one message. `Value::Null` stands for a zero time (the JSON `null`).
pub(crate) fn message(
    schema: &Schema,
    idx: usize,
    bytes: &[u8],
    path: &str,
) -> Result<Value, ProtobufError> {
    let msg = &schema.messages[idx];
    // Collect each field's wire values first: repeated fields may be interleaved.
    let mut values: Vec<Vec<WireValue<'_>>> = vec![Vec::new(); msg.fields.len()];
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.field().map_err(|r| malformed(path, r))? {
        // Unknown fields are skipped, as upstream's decoder does.
        if let Some(i) = msg.fields.iter().position(|f| f.tag == tag) {
            values[i].push(value);
        }
    }
    match msg.special {
        Special::None => {}
        special => return self::special(schema, msg, special, &values, bytes, path),
    }
    let mut out = Map::new();
    for (field, wire) in msg.fields.iter().zip(&values) {
        if wire.is_empty() {
            continue;
        }
        let child = if field.inline {
            path.to_string()
        } else {
            join(path, &field.json)
        };
        let value = match field.shape {
            Shape::Single => {
                let last = *wire.last().expect("non-empty");
                let v = single(schema, field, last, &child)?;
                if v.is_null() || (!field.keep_zero && is_zero_scalar(field, &v)) {
                    continue;
                }
                v
            }
            Shape::Repeated => Value::Array(repeated(schema, field, wire, &child)?),
            Shape::Map => Value::Object(map(schema, field, wire, &child)?),
        };
        if field.inline {
            if let Value::Object(inner) = value {
                out.extend(inner);
            }
        } else {
            out.insert(field.json.clone(), value);
        }
    }
    Ok(Value::Object(out))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Whether a decoded scalar is its type's zero value (which Go's encoder always writes).
fn is_zero_scalar(field: &Field, v: &Value) -> bool {
    match field.ty {
        Type::Scalar(_) => match v {
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            _ => false,
        },
        Type::Message(_) => false,
    }
}

fn single(
    schema: &Schema,
    field: &Field,
    wire: WireValue<'_>,
    path: &str,
) -> Result<Value, ProtobufError> {
    match field.ty {
        Type::Scalar(s) => scalar(s, wire, path),
        Type::Message(idx) => match wire {
            WireValue::Bytes(b) => message(schema, idx, b, path),
            _ => Err(malformed(
                path,
                format!("expected an embedded {}", schema.messages[idx].name),
            )),
        },
    }
}

fn scalar(s: Scalar, wire: WireValue<'_>, path: &str) -> Result<Value, ProtobufError> {
    Ok(match (s, wire) {
        (Scalar::String, WireValue::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| malformed(path, "string is not UTF-8"))?
                .to_string(),
        ),
        (Scalar::Bytes, WireValue::Bytes(b)) => Value::String(BASE64.encode(b)),
        // Negative int32 values are sign-extended to 64 bits on the wire.
        (Scalar::Int32, WireValue::Varint(v)) => Value::from(v as i64 as i32),
        (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Double, WireValue::Fixed64(v)) => {
            let f = f64::from_bits(v);
            // Go writes whole floats without a fraction (`minimum: 0`).
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Value::from(f as i64)
            } else {
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| malformed(path, "not a finite number"))?
            }
        }
        _ => return Err(malformed(path, format!("wrong wire type for {s:?}"))),
    })
}

fn repeated(
    schema: &Schema,
    field: &Field,
    wire: &[WireValue<'_>],
    path: &str,
) -> Result<Vec<Value>, ProtobufError> {
    let mut out = Vec::new();
    for (i, w) in wire.iter().enumerate() {
        let item = format!("{path}[{i}]");
        match (field.ty, w) {
            // Packed numbers: several varints (or doubles) in one length-delimited field.
            (
                Type::Scalar(s @ (Scalar::Int32 | Scalar::Int64 | Scalar::Bool)),
                WireValue::Bytes(b),
            ) => {
                let mut r = Reader::new(b);
                while !r.is_empty() {
                    let v = r.varint().map_err(|e| malformed(&item, e))?;
                    out.push(scalar(s, WireValue::Varint(v), &item)?);
                }
            }
            (Type::Scalar(Scalar::Double), WireValue::Bytes(b)) => {
                for chunk in b.chunks_exact(8) {
                    let bits = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                    out.push(scalar(Scalar::Double, WireValue::Fixed64(bits), &item)?);
                }
            }
            _ => out.push(single(schema, field, *w, &item)?),
        }
    }
    Ok(out)
}

fn map(
    schema: &Schema,
    field: &Field,
    wire: &[WireValue<'_>],
    path: &str,
) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for w in wire {
        let WireValue::Bytes(entry) = w else {
            return Err(malformed(path, "map entry is not a message"));
        };
        let mut key = String::new();
        let mut value = None;
        let mut r = Reader::new(entry);
        while let Some((tag, v)) = r.field().map_err(|e| malformed(path, e))? {
            match tag {
                1 => match scalar(Scalar::String, v, path)? {
                    Value::String(s) => key = s,
                    _ => unreachable!("strings decode to strings"),
                },
                2 => value = Some(v),
                _ => {}
            }
        }
        let child = join(path, &key);
        let value = match (field.ty, value) {
            (Type::Scalar(Scalar::String), None) => Value::from(""),
            (Type::Scalar(Scalar::Bytes), None) => Value::from(""),
            (Type::Message(idx), None) => message(schema, idx, &[], &child)?,
            (_, Some(v)) => single(schema, field, v, &child)?,
            (Type::Scalar(_), None) => return Err(malformed(&child, "map entry without value")),
        };
        out.insert(key, value);
    }
    Ok(out)
}

fn varint_of(values: &[Vec<WireValue<'_>>], i: usize) -> Option<u64> {
    match values.get(i)?.last()? {
        WireValue::Varint(v) => Some(*v),
        _ => None,
    }
}

fn bytes_of<'a>(values: &[Vec<WireValue<'a>>], i: usize) -> Option<&'a [u8]> {
    match values.get(i)?.last()? {
        WireValue::Bytes(b) => Some(b),
        _ => None,
    }
}

fn special(
    schema: &Schema,
    msg: &Message,
    special: Special,
    values: &[Vec<WireValue<'_>>],
    bytes: &[u8],
    path: &str,
) -> Result<Value, ProtobufError> {
    let field = |i: usize| &msg.fields[i];
    Ok(match special {
        Special::None => unreachable!("handled by the caller"),
        Special::Time | Special::MicroTime => {
            // Go writes a zero time as an empty message; JSON writes it as null.
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            let seconds = varint_of(values, 0).unwrap_or(0) as i64;
            let nanos = varint_of(values, 1).unwrap_or(0) as i64 as i32;
            let t = Timestamp::from_second(seconds).map_err(|e| malformed(path, e.to_string()))?;
            if special == Special::Time {
                // Upstream keeps only seconds of a `Time`.
                Value::from(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            } else {
                let micros = nanos.clamp(0, 999_999_999) / 1000;
                Value::from(format!("{}.{micros:06}Z", t.strftime("%Y-%m-%dT%H:%M:%S")))
            }
        }
        Special::Quantity => match bytes_of(values, 0) {
            Some(b) => scalar(Scalar::String, WireValue::Bytes(b), path)?,
            None => Value::from("0"),
        },
        Special::IntOrString => match varint_of(values, 0).unwrap_or(0) {
            0 => Value::from(varint_of(values, 1).unwrap_or(0) as i64 as i32),
            _ => match bytes_of(values, 2) {
                Some(b) => scalar(Scalar::String, WireValue::Bytes(b), path)?,
                None => Value::from(""),
            },
        },
        Special::RawJson => match bytes_of(values, 0) {
            None | Some([]) => Value::Null,
            Some(raw) if raw.starts_with(&super::MAGIC) => super::decode(raw)?,
            Some(raw) => serde_json::from_slice(raw)
                .map_err(|e| malformed(path, format!("embedded JSON: {e}")))?,
        },
        Special::StringList => Value::Array(repeated(schema, field(0), &values[0], path)?),
        Special::PropsOrArray => match bytes_of(values, 0) {
            Some(b) => single(schema, field(0), WireValue::Bytes(b), path)?,
            None => Value::Array(repeated(schema, field(1), &values[1], path)?),
        },
        Special::PropsOrBool => match bytes_of(values, 1) {
            Some(b) => single(schema, field(1), WireValue::Bytes(b), path)?,
            None => Value::Bool(varint_of(values, 0).unwrap_or(0) != 0),
        },
        Special::PropsOrStringArray => match bytes_of(values, 0) {
            Some(b) => single(schema, field(0), WireValue::Bytes(b), path)?,
            None => Value::Array(repeated(schema, field(1), &values[1], path)?),
        },
    })
}
