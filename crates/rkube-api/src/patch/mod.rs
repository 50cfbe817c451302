//! The patch formats of PATCH requests: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386) and Kubernetes' strategic merge patch, driven by the schema model.
//!
//! Server-side apply (`application/apply-patch+yaml`) is not a patch of this kind;
//! it needs managed fields and lives elsewhere.

mod strategic;

use serde_json::Value;

pub use strategic::apply_strategic_merge_patch;

/// The patch format named by a request's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    /// From a Content-Type header (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The patch body is not JSON or not of the patch format's shape (400).
    #[error("{0}")]
    BadPatch(String),
    /// A JSON patch operation failed on this object (422), e.g. a `test` that
    /// does not match or a path that does not exist.
    #[error("{0}")]
    JsonPatchFailed(String),
    /// `$patch` holds something other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective { directive: String, map: String },
    /// A list item of a list merged by key lacks the key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// `$retainKeys` is not a list, or the patch sets a field it does not name.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` is not a list.
    #[error("invalid patch format of {0}")]
    BadDirectiveList(String),
    /// Lists of lists cannot be merged.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list mixes objects and scalars.
    #[error("the elements of a merged list are not all of the same type")]
    MixedList,
    /// `$patch: merge` on a list item.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
}

impl PatchError {
    /// Whether upstream answers 400 BadRequest (else 422 Unprocessable Entity).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            PatchError::BadPatch(_) | PatchError::BadRetainKeys | PatchError::BadDirectiveList(_)
        )
    }
}

/// Applies an RFC 6902 JSON patch (the raw request body) to an object.
pub fn apply_json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|e| PatchError::BadPatch(format!("invalid JSON patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(doc)
}

/// Applies an RFC 7386 JSON merge patch: objects merge key by key, `null` removes
/// a key, anything else (lists included) replaces.
pub fn apply_merge_patch(original: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if !original.is_object() {
                *original = Value::Object(Default::default());
            }
            let target = original.as_object_mut().expect("just made an object");
            for (k, v) in patch {
                if v.is_null() {
                    target.shift_remove(&k);
                } else {
                    apply_merge_patch(target.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *original = other,
    }
}

#[cfg(test)]
mod tests;
