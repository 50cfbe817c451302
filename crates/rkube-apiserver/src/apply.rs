//! Server-side apply (`application/apply-patch+yaml`).

use serde_json::Value;

use crate::error::ApiResult;
use crate::registry::Served;
use crate::storage::WriteOptions;

/// Applies a configuration to the live object (None: create it).
pub fn server_side_apply(
    _served: &Served,
    current: Option<&Value>,
    applied: &Value,
    _opts: &WriteOptions,
    _force: bool,
) -> ApiResult<Value> {
    let mut obj = current.cloned().unwrap_or(Value::Null);
    rkube_api::patch::apply_merge_patch(&mut obj, applied.clone());
    Ok(obj)
}
