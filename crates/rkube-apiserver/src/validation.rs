//! Field validation of request bodies (`?fieldValidation=Strict|Warn|Ignore`).

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;

/// How unknown and duplicate fields are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Reads `?fieldValidation=`; upstream's default is Warn.
pub fn mode(ctx: &Ctx) -> ApiResult<FieldValidation> {
    match ctx.query.get("fieldValidation") {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
        ))),
    }
}

/// Checks a decoded body against the resource's schema.
pub fn check_fields(ctx: &Ctx, _obj: &mut Value, _raw: &[u8]) -> ApiResult<()> {
    mode(ctx)?;
    Ok(())
}
