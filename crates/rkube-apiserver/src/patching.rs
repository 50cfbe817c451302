//! Applying PATCH bodies to objects: JSON patch, JSON merge patch and strategic merge
//! patch (from `rkube_api::patch`), and server-side apply (`crate::apply`).

use bytes::Bytes;
use rkube_api::patch::{self, PatchError, PatchType};
use rkube_api::schema;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::registry::Served;
use crate::storage::WriteOptions;

/// A PATCH request's body, read and parsed.
pub struct PatchBody {
    pub ty: PatchType,
    /// The raw bytes (JSON patch is applied from them).
    pub raw: Bytes,
    /// The parsed body (merge, strategic and apply patches).
    pub value: Value,
}

impl PatchBody {
    /// Parses a body of the given Content-Type.
    pub fn parse(content_type: &str, raw: Bytes) -> ApiResult<PatchBody> {
        let ty = PatchType::from_content_type(content_type)
            .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
        let value = match ty {
            PatchType::Apply => crate::body::parse_yaml(&raw)?,
            _ => serde_json::from_slice(&raw)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
        };
        if matches!(
            ty,
            PatchType::Merge | PatchType::StrategicMerge | PatchType::Apply
        ) && !value.is_object()
        {
            return Err(ApiError::bad_request("the patch must be a JSON object"));
        }
        Ok(PatchBody { ty, raw, value })
    }
}

fn patch_error(served: &Served, name: &str, e: PatchError) -> ApiError {
    if e.is_bad_request() {
        ApiError::bad_request(e.to_string())
    } else {
        let mut err = ApiError::invalid(&served.info.group, &served.info.kind, name, &[]);
        err.message = e.to_string();
        err
    }
}

/// Applies a patch to the current object. `current` is None when the object does
/// not exist (only server-side apply may then create it).
pub fn apply_patch(
    served: &Served,
    body: &PatchBody,
    current: Option<&Value>,
    name: &str,
    opts: &WriteOptions,
    force: bool,
) -> ApiResult<Value> {
    if body.ty == PatchType::Apply {
        return crate::apply::server_side_apply(served, current, &body.value, opts, force);
    }
    let Some(current) = current else {
        return Err(ApiError::not_found(
            &served.info.group,
            &served.info.plural,
            name,
        ));
    };
    match body.ty {
        PatchType::Json => {
            patch::apply_json_patch(current, &body.raw).map_err(|e| patch_error(served, name, e))
        }
        PatchType::Merge => {
            let mut obj = current.clone();
            patch::apply_merge_patch(&mut obj, body.value.clone());
            Ok(obj)
        }
        PatchType::StrategicMerge => {
            if served.is_custom() {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            let root = served.schema().ok_or_else(|| {
                ApiError::unsupported_media_type("application/strategic-merge-patch+json")
            })?;
            patch::apply_strategic_merge_patch(
                schema::builtin(),
                root,
                current.clone(),
                body.value.clone(),
            )
            .map_err(|e| patch_error(served, name, e))
        }
        PatchType::Apply => unreachable!("handled above"),
    }
}
