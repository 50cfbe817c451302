//! Kubernetes protobuf request bodies (`k8s\0` + `runtime.Unknown`), as kubectl 1.32+
//! sends them for its typed `create` commands.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Decodes a protobuf-encoded object into its JSON form.
pub fn decode(bytes: &[u8]) -> ApiResult<Value> {
    rkube_api::protobuf::decode(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as protobuf: {e}"
        ))
    })
}
