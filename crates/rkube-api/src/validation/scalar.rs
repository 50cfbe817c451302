//! Type checks of one value against one schema node, worded as upstream's decoders.

use serde_json::Value;

use crate::schema::{Catalog, Schema, Type, go_type_name};

/// Why a value does not fit.
pub(crate) enum Mismatch {
    /// The JSON type is wrong; `found` may carry the number (`number 1.5`).
    Kind {
        found: String,
        expected: &'static str,
    },
    /// A custom decoder refused the value with this message.
    Custom {
        message: String,
        expected: &'static str,
    },
}

/// The JSON type of a value as Go's decoder names it.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The JSON Schema type a schema wants, for CRD-style messages.
pub(crate) fn expected_kind(ty: &Type) -> &'static str {
    match ty {
        Type::Object(_) | Type::Map(_) => "object",
        Type::Array(_) => "array",
        Type::String { .. } | Type::Quantity => "string",
        Type::Integer { .. } | Type::IntOrString => "integer",
        Type::Number { .. } => "number",
        Type::Boolean => "boolean",
        Type::Ref(_) | Type::Any => "object",
    }
}

/// Checks a value against a schema (the caller handles `null` and descends into
/// containers; here a container only has to be of the right kind).
pub(crate) fn check(catalog: &Catalog, schema: &Schema, v: &Value) -> Result<(), Mismatch> {
    let ty = &catalog.resolve(schema).ty;
    let kind = |expected| Mismatch::Kind {
        found: json_kind(v).to_string(),
        expected,
    };
    match (ty, v) {
        (Type::Any, _) => Ok(()),
        (Type::Object(_) | Type::Map(_), Value::Object(_)) => Ok(()),
        (Type::Array(_), Value::Array(_)) => Ok(()),
        (Type::Boolean, Value::Bool(_)) => Ok(()),
        (Type::Number { .. }, Value::Number(_)) => Ok(()),
        (Type::String { format }, Value::String(s)) => match format.as_deref() {
            Some("byte") => base64(s).map_err(|message| Mismatch::Custom {
                message,
                expected: "string",
            }),
            Some("date-time") => rfc3339(s).map_err(|message| Mismatch::Custom {
                message,
                expected: "string",
            }),
            _ => Ok(()),
        },
        (Type::Integer { format }, Value::Number(n)) => {
            let fits = match format.as_deref() {
                Some("int32") => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                _ => n.as_i64().is_some(),
            };
            if fits {
                Ok(())
            } else {
                Err(Mismatch::Kind {
                    found: format!("number {n}"),
                    expected: "integer",
                })
            }
        }
        (Type::IntOrString, Value::String(_)) => Ok(()),
        (Type::IntOrString, Value::Number(n))
            if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) =>
        {
            Ok(())
        }
        (Type::IntOrString, other) => {
            let found = match other {
                Value::Number(n) => format!("number {n}"),
                _ => json_kind(other).to_string(),
            };
            Err(Mismatch::Custom {
                message: format!("json: cannot unmarshal {found} into Go value of type int32"),
                expected: "integer",
            })
        }
        (Type::Quantity, Value::String(s)) => quantity(s),
        (Type::Quantity, Value::Number(n)) => quantity(&n.to_string()),
        (Type::Quantity, _) => Err(Mismatch::Custom {
            message: QUANTITY_REGEX_ERROR.to_string(),
            expected: "string",
        }),
        _ => Err(kind(expected_kind(ty))),
    }
}

/// Upstream's message for a string that is not a quantity.
const QUANTITY_REGEX_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Checks the syntax of a `resource.Quantity` (`500m`, `1.5Gi`, `1e3`).
fn quantity(s: &str) -> Result<(), Mismatch> {
    let fail = |message: &str| {
        Err(Mismatch::Custom {
            message: message.to_string(),
            expected: "string",
        })
    };
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let num_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_len);
    let suffix_shape = suffix
        .chars()
        .all(|c| "eEinumkKMGTP+-0123456789".contains(c));
    if number.is_empty() || !suffix_shape {
        return fail(QUANTITY_REGEX_ERROR);
    }
    if number.matches('.').count() > 1 || number == "." {
        return fail("unable to parse numeric part of quantity");
    }
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()));
    if valid_suffix {
        Ok(())
    } else {
        fail("unable to parse quantity's suffix")
    }
}

/// Checks standard base64 with padding, as Go's `encoding/base64` StdEncoding.
fn base64(s: &str) -> Result<(), String> {
    let bytes = s.as_bytes();
    let is_alpha = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let data_len = bytes.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
    let padding = bytes.len() - data_len;
    if let Some(bad) = bytes[..data_len].iter().position(|&b| !is_alpha(b)) {
        return Err(format!("illegal base64 data at input byte {bad}"));
    }
    if !bytes.len().is_multiple_of(4) || padding > 2 || (padding > 0 && data_len % 4 < 2) {
        let at = if bytes.len().is_multiple_of(4) {
            data_len
        } else {
            bytes.len() - bytes.len() % 4
        };
        return Err(format!("illegal base64 data at input byte {at}"));
    }
    Ok(())
}

/// Checks an RFC 3339 timestamp as `metav1.Time` parses it.
fn rfc3339(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let mut ok = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if ok {
        let mut i = 19;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            ok = i > start;
        }
        let zone = &b[i.min(b.len())..];
        ok = ok
            && (zone == b"Z"
                || zone == b"z"
                || (zone.len() == 6
                    && (zone[0] == b'+' || zone[0] == b'-')
                    && zone[1..3].iter().all(u8::is_ascii_digit)
                    && zone[3] == b':'
                    && zone[4..6].iter().all(u8::is_ascii_digit)));
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "parsing time {s:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {s:?} as \"2006\""
        ))
    }
}

/// The Go type a schema decodes into, for messages.
pub(crate) fn go_type(catalog: &Catalog, schema: &Schema) -> String {
    go_type_name(catalog, schema)
}
