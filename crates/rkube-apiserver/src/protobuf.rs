//! Kubernetes protobuf request bodies (`k8s\0` + `runtime.Unknown`).

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Decodes a protobuf-encoded object into its JSON form.
pub fn decode(_bytes: &[u8]) -> ApiResult<Value> {
    Err(ApiError::unsupported_media_type(
        "application/vnd.kubernetes.protobuf",
    ))
}
