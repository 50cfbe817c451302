//! The ownership bookkeeping of one write (upstream's structured-merge-diff
//! `Updater`): conflicts, ownership moving to the writer, and pruning what an
//! applier stopped applying.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::fieldset::{FieldSet, Path, PathElement};
use super::managed::{ManagedEntry, ManagedFields, ManagerId};
use super::typed::{Comparison, Ty, Types};

/// One field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: ManagerId,
    pub path: Path,
}

/// The fields of `new` that differ from `old`, restricted by `filter` (the reset
/// fields of the resource or subresource).
pub(crate) struct Updater<'a> {
    pub types: Types<'a>,
    pub root: Ty<'a>,
    pub filter: &'a dyn Fn(&mut FieldSet),
    /// The version sets are recorded in.
    pub api_version: &'a str,
}

impl Updater<'_> {
    fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let mut c = self.types.compare(self.root, old, new);
        for set in [&mut c.added, &mut c.modified, &mut c.removed] {
            (self.filter)(set);
        }
        c
    }

    /// Moves ownership of what changed from `old` to `new` away from every
    /// manager but `writer`: fields changed are conflicts (an error unless
    /// `force`), fields removed are simply no longer owned.
    pub fn update(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut ManagedFields,
        writer: Option<&ManagerId>,
        force: bool,
    ) -> Result<Comparison, Vec<Conflict>> {
        let cmp = self.compare(old, new);
        let changed = cmp.modified.union(&cmp.added);
        let mut conflicts: BTreeMap<ManagerId, FieldSet> = BTreeMap::new();
        for (id, entry) in &managed.entries {
            if Some(id) == writer {
                continue;
            }
            let c = entry.intersection(&changed);
            if !c.is_empty() {
                conflicts.insert(id.clone(), c);
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts
                .into_iter()
                .flat_map(|(manager, set)| {
                    set.paths().into_iter().map(move |path| Conflict {
                        manager: manager.clone(),
                        path,
                    })
                })
                .collect());
        }
        for (id, entry) in managed.entries.iter_mut() {
            if Some(id) == writer {
                continue;
            }
            if let Some(c) = conflicts.get(id) {
                entry.changed().subtract(c);
            }
            if !entry.intersection(&cmp.removed).is_empty() {
                entry.changed().subtract(&cmp.removed);
            }
        }
        managed.entries.retain(|_, e| !e.is_empty());
        Ok(cmp)
    }

    /// An `Update` by `writer`: it takes every field that changed.
    pub fn record_update(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut ManagedFields,
        writer: &ManagerId,
        now: jiff::Timestamp,
    ) {
        let cmp = self
            .update(old, new, managed, None, true)
            .expect("a forced update has no conflicts");
        let mut taken = cmp.modified;
        taken.union_with(&cmp.added);
        (self.filter)(&mut taken);
        strip_system_fields(&mut taken);
        if taken.is_empty() {
            return;
        }
        let entry = managed
            .entries
            .entry(writer.clone())
            .or_insert_with(|| ManagedEntry::new(FieldSet::new(), self.api_version, None));
        entry.changed().union_with(&taken);
        entry.api_version = self.api_version.to_string();
        entry.time = Some(now);
    }

    /// Removes from `merged` what the applier owned before (`last`) and no
    /// longer applies, unless another manager (or its new configuration) owns it.
    pub fn prune(
        &self,
        merged: Value,
        managed: &ManagedFields,
        last: Option<&FieldSet>,
        config: &FieldSet,
    ) -> Value {
        // Nothing to remove when everything applied before is applied again.
        let Some(last) = last.filter(|l| !l.is_subset_of(config)) else {
            return merged;
        };
        let t = self.types;
        let ensure = |s: &FieldSet| t.ensure_named_fields_are_members(self.root, s);
        let set_of = |v: &Value| ensure(&t.field_set(self.root, v, None));
        let remove = |s: &FieldSet| {
            t.remove_items(self.root, &merged, s)
                .unwrap_or_else(|| Value::Object(Default::default()))
        };
        let last = ensure(last);
        let owned = managed
            .entries
            .values()
            .fold(FieldSet::new(), |mut acc, e| {
                acc.union_with(e.set());
                acc
            });
        let owned = ensure(&owned);
        let merged_set = set_of(&merged);
        // What removing the last applied set takes away...
        let pruned = remove(&last);
        // ...except what someone still owns...
        let pruned = remove(&merged_set.difference(&set_of(&pruned).union(&owned)));
        // ...and only what the applier did own.
        remove(&merged_set.difference(&set_of(&pruned)).intersection(&last))
    }
}

/// Metadata the server sets: never owned by anyone.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// Leaves out what the server sets: apiVersion, kind and system metadata
/// (`metadata` itself only as a member, so its fields stay).
pub(crate) fn strip_system_fields(set: &mut FieldSet) {
    static STRIP: LazyLock<FieldSet> = LazyLock::new(|| {
        let mut strip = FieldSet::new();
        for f in ["apiVersion", "kind", "metadata"] {
            strip.insert(&[PathElement::field(f)]);
        }
        for f in SYSTEM_METADATA {
            strip.insert(&[PathElement::field("metadata"), PathElement::field(f)]);
        }
        strip
    });
    set.subtract(&STRIP);
}
