//! The field manager of one resource: apply and update, in upstream's order of
//! steps (version check, client-side apply bridge, first-apply bookkeeping, cap
//! on update entries, timestamps, system metadata left unowned).

use serde_json::{Value, json};

use super::fieldset::{FieldSet, PathElement, path_string};
use super::last_applied;
use super::managed::{
    MAX_UPDATE_MANAGERS, ManagedEntry, ManagedFields, ManagerId, Operation, is_reset,
    take_managed_fields,
};
use super::typed::{Ty, Types};
use super::updater::{Conflict, Updater, strip_system_fields};
use super::{BEFORE_FIRST_APPLY, KUBECTL_MANAGER};
use crate::schema::{Catalog, Schema};

/// Which fields a write may not set, so nobody owns them through it (upstream's
/// reset fields of a strategy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResetFields {
    #[default]
    None,
    /// The main resource of a kind with a status subresource: `status`.
    Status,
    /// The status subresource: everything but `status`.
    AllButStatus,
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    /// The applied object is of another apiVersion or kind (400).
    #[error("invalid object type: {0}")]
    InvalidObjectType(String),
    /// The applied object sets `metadata.managedFields` (400).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInRequest,
    /// The applied object breaks the schema's list rules: duplicate items, items
    /// without their keys (400).
    #[error("failed to create typed patch object ({object}): {}", render_errors(.errors))]
    InvalidPatch { object: String, errors: Vec<String> },
    /// The live object's managed fields cannot be read (500).
    #[error("failed to decode managed fields: {0}")]
    BadManagedFields(String),
    /// Fields owned by other managers would change (409).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
}

fn render_errors(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    }
}

/// Upstream's message: one conflict inline, several grouped by manager.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager.describe(),
            path_string(&c.path)
        );
    }
    let mut lines = Vec::new();
    let mut last: Option<&ManagerId> = None;
    for c in conflicts {
        if last != Some(&c.manager) {
            lines.push(format!("conflicts with {}:", c.manager.describe()));
            last = Some(&c.manager);
        }
        lines.push(format!("- {}", path_string(&c.path)));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply and managed fields for one resource of one kind.
#[derive(Clone, Copy)]
pub struct FieldManager<'a> {
    pub catalog: &'a Catalog,
    /// The kind's schema.
    pub root: &'a Schema,
    /// The served version, e.g. `apps/v1`.
    pub api_version: &'a str,
    pub kind: &'a str,
    /// The subresource written (`status`, `scale`, ...), if any.
    pub subresource: Option<&'a str>,
    pub reset: ResetFields,
    /// Custom resources start from an empty object; built-in kinds from their
    /// zero value, whose top-level structs always exist.
    pub custom: bool,
}

impl<'a> FieldManager<'a> {
    fn types(&self) -> Types<'a> {
        Types {
            catalog: self.catalog,
        }
    }

    fn root(&self) -> Ty<'a> {
        Ty::Schema(self.root)
    }

    fn filter_reset(&self, set: &mut FieldSet) {
        let status = PathElement::field("status");
        match self.reset {
            ResetFields::None => {}
            ResetFields::Status => set.remove_subtree(&status),
            ResetFields::AllButStatus => set.retain_subtree(&status),
        }
    }

    fn updater<'f>(&self, filter: &'f dyn Fn(&mut FieldSet)) -> Updater<'f>
    where
        'a: 'f,
    {
        Updater {
            types: self.types(),
            root: self.root(),
            filter,
            api_version: self.api_version,
        }
    }

    fn id(&self, manager: &str, operation: Operation) -> ManagerId {
        ManagerId::new(
            manager,
            operation,
            self.api_version,
            self.subresource.unwrap_or(""),
        )
    }

    /// An object as its Go type would serialise it, for comparisons (see
    /// [`super::zero`]). Custom resources are taken as they are.
    fn zero_filled(&self, mut v: Value) -> Value {
        if !self.custom {
            super::zero::fill(self.catalog, self.root, &mut v);
        }
        v
    }

    /// The part of an object a write may change, for comparing before and after:
    /// the reset fields are filtered out of every change anyway, so copying and
    /// comparing them is wasted (a status write compares `status` alone).
    fn comparable(&self, v: &Value) -> Value {
        let Value::Object(m) = v else {
            return v.clone();
        };
        let keep = |k: &str| match self.reset {
            ResetFields::None => true,
            ResetFields::Status => k != "status",
            ResetFields::AllButStatus => matches!(k, "apiVersion" | "kind" | "status"),
        };
        let copy = |(k, v): (&String, &Value)| {
            let v = match (k.as_str(), v) {
                // managedFields are compared by no one: not copied.
                ("metadata", Value::Object(meta)) => Value::Object(
                    meta.iter()
                        .filter(|(k, _)| *k != "managedFields")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                _ => v.clone(),
            };
            (k.clone(), v)
        };
        Value::Object(m.iter().filter(|(k, _)| keep(k)).map(copy).collect())
    }

    /// What a new object is before a write.
    fn empty_object(&self) -> Value {
        self.zero_filled(json!({"apiVersion": self.api_version, "kind": self.kind}))
    }

    /// Applies a configuration (`applied`, the request body) by `manager` to the
    /// live object (None: the object does not exist yet). Returns the new object
    /// with its `managedFields`, to be defaulted, validated and stored.
    pub fn apply(
        &self,
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
        force: bool,
        now: jiff::Timestamp,
    ) -> Result<Value, ApplyError> {
        let api_version = applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version != self.api_version || kind != self.kind {
            let (group, version) = match api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", api_version),
            };
            return Err(ApplyError::InvalidObjectType(format!(
                "{group}/{version}, Kind={kind}"
            )));
        }
        if applied
            .pointer("/metadata/managedFields")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ApplyError::ManagedFieldsInRequest);
        }
        let mut errors = Vec::new();
        let mut config_set = self
            .types()
            .field_set(self.root(), applied, Some(&mut errors));
        if !errors.is_empty() {
            let ns = applied
                .pointer("/metadata/namespace")
                .and_then(Value::as_str);
            let name = applied.pointer("/metadata/name").and_then(Value::as_str);
            let object = format!(
                "{}{}; {api_version}, Kind={kind}",
                ns.map(|n| format!("{n}/")).unwrap_or_default(),
                name.unwrap_or_default()
            );
            return Err(ApplyError::InvalidPatch { object, errors });
        }
        self.filter_reset(&mut config_set);

        let mut live = match live {
            Some(l) => l.clone(),
            None => json!({"apiVersion": self.api_version, "kind": self.kind}),
        };
        let mut managed = ManagedFields::decode_stored(take_managed_fields(&mut live))
            .map_err(|e| ApplyError::BadManagedFields(e.to_string()))?;

        let filter = |s: &mut FieldSet| self.filter_reset(s);
        let updater = self.updater(&filter);
        if managed.is_empty() {
            // Whatever the object holds now belongs to the time before apply.
            let id = self.id(BEFORE_FIRST_APPLY, Operation::Update);
            let current = self.zero_filled(live.clone());
            updater.record_update(&self.empty_object(), &current, &mut managed, &id, now);
        }

        let id = self.id(manager, Operation::Apply);
        let attempt = |mut managed: ManagedFields, force: bool| {
            let merged = self.types().merge(self.root(), &live, applied);
            let last = managed.entries.get(&id).map(|e| e.set().clone());
            let time = managed.entries.get(&id).and_then(|e| e.time);
            managed.entries.insert(
                id.clone(),
                ManagedEntry::new(config_set.clone(), self.api_version, time),
            );
            let merged = updater.prune(merged, &managed, last.as_ref(), &config_set);
            updater.update(&live, &merged, &mut managed, Some(&id), force)?;
            Ok::<_, Vec<Conflict>>((merged, managed))
        };
        // kubectl may take over what it applied client-side: keep a copy to retry.
        let before = (manager == KUBECTL_MANAGER && !force).then(|| managed.clone());
        let (mut obj, mut managed) = match (attempt(managed, force), before) {
            (Ok(done), _) => done,
            (Err(conflicts), Some(before)) => {
                // Fields kubectl applied client-side with the same values are kubectl's.
                let allowed = last_applied::allowed_conflicts(
                    self.types(),
                    self.root(),
                    self.api_version,
                    &live,
                );
                let left: Vec<Conflict> = match &allowed {
                    Some(a) => conflicts.into_iter().filter(|c| !a.has(&c.path)).collect(),
                    None => conflicts,
                };
                if !left.is_empty() {
                    return Err(ApplyError::Conflicts(left));
                }
                attempt(before, true).map_err(ApplyError::Conflicts)?
            }
            (Err(conflicts), None) => return Err(ApplyError::Conflicts(conflicts)),
        };

        let changed = obj != live;
        if let Some(entry) = managed.entries.get_mut(&id) {
            strip_system_fields(entry.changed());
            if changed {
                entry.time = Some(now);
            }
        }
        managed.entries.retain(|_, e| !e.is_empty());
        if manager == KUBECTL_MANAGER {
            last_applied::sync(&mut obj, applied);
        }
        managed.write_to(&mut obj);
        Ok(obj)
    }

    /// Records a create, update or non-apply patch by `manager`: `old` is the
    /// stored object (None on create), `new` the object about to be stored,
    /// whose `managedFields` (as the client sent them) are replaced.
    ///
    /// As upstream: a client may set `managedFields` (a subresource write may
    /// not), `[]` clears them, unreadable ones are replaced by the stored ones,
    /// and an object without managed fields is not tracked until it is applied
    /// (creates are always tracked).
    pub fn update(
        &self,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
        now: jiff::Timestamp,
    ) {
        let live = match old {
            Some(o) => self.zero_filled(self.comparable(o)),
            None => self.empty_object(),
        };
        let stored = old.and_then(|o| o.pointer("/metadata/managedFields"));
        let requested = take_managed_fields(new);
        // A write that carries the stored list as it is (a status write keeps the
        // stored metadata) hands its copy over. Stored lists are read lazily.
        let carried = matches!((&requested, stored), (Some(r), Some(s)) if identical(r, s));
        let live_managed = |list| ManagedFields::decode_stored(list).unwrap_or_default();
        let mut managed = if carried {
            live_managed(requested)
        } else if self.subresource.is_some() {
            live_managed(stored.cloned())
        } else if is_reset(requested.as_ref()) {
            ManagedFields::default()
        } else {
            match ManagedFields::decode(requested.as_ref()) {
                Ok(m) if !m.is_empty() => m.rewrite_all(),
                _ => live_managed(stored.cloned()),
            }
        };
        if managed.is_empty() && old.is_some() {
            return;
        }
        let filter = |s: &mut FieldSet| self.filter_reset(s);
        let id = self.id(manager, Operation::Update);
        let compared = self.zero_filled(self.comparable(new));
        self.updater(&filter)
            .record_update(&live, &compared, &mut managed, &id, now);
        managed.cap_updates(MAX_UPDATE_MANAGERS);
        managed.write_to(new);
    }
}

/// Whether two values are the same, key order included (`==` ignores the order
/// of object keys, which a stored list written back as read must keep).
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && identical(va, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(va, vb)| identical(va, vb))
        }
        _ => a == b,
    }
}
