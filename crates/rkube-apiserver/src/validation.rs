//! Field validation of request bodies (`?fieldValidation=Strict|Warn|Ignore`): unknown
//! and duplicate fields and values of the wrong type, checked against the schema.

use rkube_api::schema;
use rkube_api::validation::{self as v, DecodeError, Decoded, FieldValidation, Verdict};
use serde_json::{Map as JsonMap, Value};

use crate::error::{ApiError, ApiResult, FieldError};
use crate::handlers::Ctx;
use crate::registry::Served;

type Map = JsonMap<String, Value>;

/// Reads `?fieldValidation=`; upstream's default is Warn.
pub fn mode(ctx: &Ctx) -> ApiResult<FieldValidation> {
    FieldValidation::parse(ctx.query.get("fieldValidation").unwrap_or(""))
        .map_err(ApiError::bad_request)
}

/// Turns a decoding failure into upstream's answer: 400 with the first Go-style
/// message for built-in kinds, 422 listing every field for custom resources.
fn decode_error(served: &Served, obj_name: &str, e: DecodeError) -> ApiError {
    let gvk = served.info.gvk();
    match e {
        DecodeError::Syntax(msg) => ApiError::bad_request(v::cannot_handle(&gvk, &msg)),
        DecodeError::Types(errs) if served.is_custom() => {
            let fields: Vec<FieldError> = errs
                .iter()
                .map(|t| {
                    FieldError::invalid(
                        t.path.clone(),
                        t.found,
                        format!(
                            "{} in body must be of type {}: \"{}\"",
                            t.path, t.expected, t.found
                        ),
                    )
                })
                .collect();
            ApiError::invalid(&gvk.group, &gvk.kind, obj_name, &fields)
        }
        DecodeError::Types(errs) => {
            let first = errs
                .first()
                .map(|t| t.go_message.clone())
                .unwrap_or_default();
            ApiError::bad_request(v::cannot_handle(&gvk, &first))
        }
    }
}

/// Applies the verdict of a decode to the request: an error, or the warnings to send.
fn judge(served: &Served, decoded: &Decoded, mode: FieldValidation) -> ApiResult<Vec<String>> {
    match decoded.verdict(mode) {
        Verdict::Proceed { warnings } => Ok(warnings),
        Verdict::Reject { detail } => Err(ApiError::bad_request(v::cannot_handle(
            &served.info.gvk(),
            &detail,
        ))),
    }
}

/// Checks a body as received (create, update): replaces `obj` with the decoded
/// object (unknown fields dropped) and returns warnings to send back.
pub fn check_fields(ctx: &Ctx, obj: &mut Value, raw: &[u8]) -> ApiResult<Vec<String>> {
    let mode = mode(ctx)?;
    let Some(root) = ctx.served.schema() else {
        return Ok(Vec::new());
    };
    let catalog = schema::builtin();
    let name = rkube_api::meta::name(obj).unwrap_or_default().to_string();
    // Raw JSON keeps duplicate keys visible; other encodings are checked as values.
    let is_json = raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && crate::body::content_type(&ctx.headers) != "application/vnd.kubernetes.protobuf";
    let decoded = if is_json {
        v::decode(catalog, root, raw)
    } else {
        v::decode_value(catalog, root, obj.clone())
    }
    .map_err(|e| decode_error(&ctx.served, &name, e))?;
    let warnings = judge(&ctx.served, &decoded, mode)?;
    *obj = decoded.object;
    Ok(warnings)
}

/// Checks an object produced by a patch: types, and unknown fields per `mode`.
/// Duplicate fields of the patch body itself are found by `check_patch_body`.
/// Top-level fields equal to those of `cur`, the object patched, were checked when
/// it was written and are not walked again: a status patch walks `status` alone.
pub fn check_patched(
    served: &Served,
    obj: Value,
    cur: Option<&Value>,
    mode: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    let Some(root) = served.schema() else {
        return Ok((obj, Vec::new()));
    };
    let name = rkube_api::meta::name(&obj).unwrap_or_default().to_string();
    let (changed, unchanged) = split_unchanged(obj, cur);
    let decoded = v::decode_value(schema::builtin(), root, changed)
        .map_err(|e| decode_error(served, &name, e))?;
    let warnings = judge(served, &decoded, mode)?;
    Ok((rejoin(decoded.object, unchanged), warnings))
}

/// The top-level fields of `obj` that differ from `cur`'s, and the others with
/// the order of every field.
fn split_unchanged(obj: Value, cur: Option<&Value>) -> (Value, Option<(Vec<String>, Map)>) {
    let (mut fields, cur) = match (obj, cur) {
        (Value::Object(fields), Some(Value::Object(cur))) => (fields, cur),
        (obj, _) => return (obj, None),
    };
    let order: Vec<String> = fields.keys().cloned().collect();
    let mut unchanged = Map::new();
    for k in &order {
        if cur.get(k) == fields.get(k)
            && let Some(v) = fields.remove(k)
        {
            unchanged.insert(k.clone(), v);
        }
    }
    (Value::Object(fields), Some((order, unchanged)))
}

/// Puts the fields `split_unchanged` set aside back, in their order; a field the
/// check dropped stays dropped.
fn rejoin(checked: Value, unchanged: Option<(Vec<String>, Map)>) -> Value {
    let (mut checked, (order, mut unchanged)) = match (checked, unchanged) {
        (Value::Object(checked), Some(u)) => (checked, u),
        (checked, _) => return checked,
    };
    let mut out = Map::new();
    for k in order {
        if let Some(v) = checked.remove(&k).or_else(|| unchanged.remove(&k)) {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// Duplicate keys in a JSON patch body, judged per `mode`.
pub fn check_patch_body(
    served: &Served,
    raw: &[u8],
    mode: FieldValidation,
) -> ApiResult<Vec<String>> {
    let issues = v::find_duplicate_fields(raw).map_err(|e| decode_error(served, "", e))?;
    match v::verdict(&issues, mode) {
        Verdict::Proceed { warnings } => Ok(warnings),
        Verdict::Reject { detail } => Err(ApiError::bad_request(v::cannot_handle(
            &served.info.gvk(),
            &detail,
        ))),
    }
}
