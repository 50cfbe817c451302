//! Server-side apply (`application/apply-patch+yaml`) and the `managedFields` of
//! every other write, through `rkube_api::apply`.

use std::sync::LazyLock;

use rkube_api::apply::{ApplyError, FieldManager, ResetFields};
use rkube_api::schema::{self, Schema, Type};
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Cause};
use crate::registry::Served;
use crate::storage::WriteOptions;

/// The schema of resources that have none: every field untyped.
static UNTYPED: LazyLock<Schema> = LazyLock::new(|| Schema::new(Type::Any));

/// Runs `f` with the field manager of a write to `served` through `subresource`.
fn with_field_manager<R>(
    served: &Served,
    subresource: Option<&str>,
    f: impl FnOnce(&FieldManager<'_>) -> R,
) -> R {
    let api_version = served.info.api_version();
    let reset = match subresource {
        // What a status write may change is status; the main resource may not.
        Some("status" | "approval") => ResetFields::AllButStatus,
        None if served.info.subresource("status").is_some() => ResetFields::Status,
        _ => ResetFields::None,
    };
    let fm = FieldManager {
        catalog: schema::builtin(),
        root: served.schema().unwrap_or(&UNTYPED),
        api_version: &api_version,
        kind: &served.info.kind,
        subresource,
        reset,
        custom: served.is_custom(),
    };
    f(&fm)
}

/// Applies a configuration to the live object (None: create it).
pub fn server_side_apply(
    served: &Served,
    current: Option<&Value>,
    applied: &Value,
    opts: &WriteOptions,
    force: bool,
) -> ApiResult<Value> {
    let manager = opts.field_manager.as_deref().unwrap_or_default();
    let now = jiff::Timestamp::now();
    with_field_manager(served, opts.subresource.as_deref(), |fm| {
        fm.apply(current, applied, manager, force, now)
    })
    .map_err(apply_error)
}

/// Gives the fields a create or update changes to its field manager (a no-op for
/// applies, which did it themselves, and for internal writers without a manager).
pub fn record_update(served: &Served, opts: &WriteOptions, old: Option<&Value>, new: &mut Value) {
    let Some(manager) = opts.field_manager.as_deref().filter(|_| !opts.apply) else {
        return;
    };
    let now = jiff::Timestamp::now();
    with_field_manager(served, opts.subresource.as_deref(), |fm| {
        fm.update(old, new, manager, now)
    });
}

/// The answer to a failed apply, as upstream's: conflicts are a 409 listing each
/// field as a `FieldManagerConflict` cause.
fn apply_error(e: ApplyError) -> ApiError {
    match &e {
        ApplyError::Conflicts(conflicts) => {
            let mut err = ApiError::new(http::StatusCode::CONFLICT, "Conflict", e.to_string());
            err.causes = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {}", c.manager.describe()),
                    field: rkube_api::apply::path_string(&c.path),
                })
                .collect();
            err
        }
        ApplyError::BadManagedFields(_) => ApiError::internal(e.to_string()),
        ApplyError::InvalidObjectType(_)
        | ApplyError::ManagedFieldsInRequest
        | ApplyError::InvalidPatch { .. } => ApiError::bad_request(e.to_string()),
    }
}
