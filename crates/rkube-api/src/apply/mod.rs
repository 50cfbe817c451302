//! Server-side apply and `managedFields`, as upstream's structured-merge-diff does them.
//!
//! A [`FieldManager`] serves one resource (or subresource) of one kind. For
//! `application/apply-patch+yaml` requests, [`FieldManager::apply`] merges the
//! applied configuration into the live object by the schema's list and map
//! semantics, removes what the applier stopped applying, refuses changes to
//! fields other managers own (unless forced) and records the applier's fields.
//! For every other write, [`FieldManager::update`] gives the fields that changed
//! to the writer. Both keep `metadata.managedFields` in upstream's `FieldsV1` format.

mod fieldmanager;
mod fieldset;
mod last_applied;
mod managed;
mod typed;
mod updater;
mod zero;

pub use fieldmanager::{ApplyError, FieldManager, ResetFields};
pub use fieldset::{FieldSet, FieldsV1Error, Path, PathElement, path_string};
pub use last_applied::LAST_APPLIED_ANNOTATION;
pub use managed::{
    ANCIENT_CHANGES, MAX_UPDATE_MANAGERS, ManagedEntry, ManagedFields, ManagedFieldsError,
    ManagerId, Operation, format_time, is_reset, manager_from_user_agent, remove_managed_fields,
};
pub use updater::Conflict;

/// The manager upstream names for fields that existed before the first apply
/// to an object that had no managed fields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The manager kubectl uses for `apply --server-side`; its applies keep the
/// client-side apply annotation in step and may take over client-side fields.
pub const KUBECTL_MANAGER: &str = "kubectl";

#[cfg(test)]
mod tests;
