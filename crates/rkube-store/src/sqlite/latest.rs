//! The latest value of every live key, held in memory beside the database, so the hot
//! reads (get, count, LIST at the head) are answered without SQLite: a LIST then costs
//! cloning reference-counted values instead of reading and copying every row. The
//! writer applies each committed batch before it publishes the batch's revision, so a
//! caller never sees a revision the map does not hold yet. It costs one copy of the
//! live values in memory (shared with the watch events); `SqliteOptions` can turn it
//! off.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::schema::{backend, kv_from_row, revisions};
use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision};

#[derive(Default)]
pub(super) struct Latest {
    /// The revision the map is at.
    pub revision: Revision,
    keys: BTreeMap<String, KeyValue>,
}

impl Latest {
    /// Reads every live key from the database.
    pub(super) fn load(conn: &Connection) -> Result<Self> {
        let (revision, _) = revisions(conn)?;
        let mut stmt = conn
            .prepare(
                "SELECT c.name, l.value, l.create_revision, l.revision
                 FROM current c JOIN log l ON l.revision = c.revision",
            )
            .map_err(backend)?;
        let keys = stmt
            .query_map([], |row| kv_from_row(row, 0))
            .map_err(backend)?
            .map(|kv| kv.map(|kv| (kv.key.clone(), kv)).map_err(backend))
            .collect::<Result<_>>()?;
        Ok(Latest { revision, keys })
    }

    pub(super) fn apply(&mut self, event: &Event) {
        match event.kind {
            EventKind::Put => {
                self.keys.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Delete => {
                self.keys.remove(&event.kv.key);
            }
        }
        self.revision = self.revision.max(event.revision());
    }

    pub(super) fn get(&self, key: &str) -> Option<KeyValue> {
        self.keys.get(key).cloned()
    }

    pub(super) fn count(&self, prefix: &str) -> i64 {
        crate::key_range(&self.keys, prefix, None).count() as i64
    }

    /// Whether a list at `revision` is a list of this map.
    pub(super) fn serves(&self, revision: Option<Revision>) -> bool {
        revision.is_none_or(|r| r <= 0 || r == self.revision)
    }

    pub(super) fn list(&self, prefix: &str, opts: &ListOptions) -> ListResult {
        let kvs = crate::key_range(&self.keys, prefix, opts.start_after.as_deref())
            .map(|(_, kv)| kv.clone());
        crate::page(kvs, opts.limit, self.revision)
    }
}
