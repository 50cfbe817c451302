//! Applying PATCH bodies: JSON merge patch, JSON patch, strategic merge patch and
//! server-side apply.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::registry::Served;

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("just made an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Applies a patch of media type `ct` to the current object (None: it does not exist).
pub fn apply_patch(
    served: &Served,
    ct: &str,
    current: Option<&Value>,
    patch: &Value,
    name: &str,
) -> ApiResult<Value> {
    let Some(current) = current else {
        if ct == "application/apply-patch+yaml" {
            return Ok(patch.clone());
        }
        return Err(ApiError::not_found(
            &served.info.group,
            &served.info.plural,
            name,
        ));
    };
    let mut obj = current.clone();
    match ct {
        "application/merge-patch+json"
        | "application/apply-patch+yaml"
        | "application/strategic-merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("the patch must be a JSON object"));
            }
            merge_patch(&mut obj, patch);
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }
}
