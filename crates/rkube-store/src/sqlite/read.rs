//! Reads: a small pool of read-only connections, each read in its own WAL snapshot, so
//! reads never wait for the writer and see a consistent revision.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use super::schema::{Role, backend, kv_from_row, open_connection, revisions};
use crate::prefix_end;
use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, StoreError};

/// Connections kept open between reads; more are opened under load and closed after.
const IDLE_READERS: usize = 4;

/// Events read from the log per query while a watch replays history.
pub(super) const REPLAY_CHUNK: usize = 1000;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read connection on tokio's blocking pool.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let popped = readers.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match popped {
                Some(conn) => conn,
                None => open_connection(&readers.path, Role::Reader)?,
            };
            let out = f(&mut conn);
            let mut idle = readers.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite read task failed: {e}")))?
    }
}

/// The bounds of a key range scan: keys under `prefix`, strictly after `start_after`.
struct KeyRange {
    low: Vec<u8>,
    low_inclusive: bool,
    high: Option<Vec<u8>>,
}

impl KeyRange {
    fn new(prefix: &str, start_after: Option<&str>) -> Self {
        match start_after {
            Some(after) if after >= prefix => KeyRange {
                low: after.as_bytes().to_vec(),
                low_inclusive: false,
                high: prefix_end(prefix),
            },
            _ => KeyRange {
                low: prefix.as_bytes().to_vec(),
                low_inclusive: true,
                high: prefix_end(prefix),
            },
        }
    }

    /// The SQL condition on `column` with parameters `?1` (low) and `?2` (high).
    fn condition(&self, column: &str) -> String {
        let op = if self.low_inclusive { ">=" } else { ">" };
        match self.high {
            Some(_) => format!("{column} {op} ?1 AND {column} < ?2"),
            None => format!("{column} {op} ?1 AND ?2 IS NULL"),
        }
    }
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT c.name, l.value, l.create_revision, l.revision
             FROM current c JOIN log l ON l.revision = c.revision WHERE c.name = ?1",
        )
        .map_err(backend)?;
    let mut rows = stmt.query([key.as_bytes()]).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => Ok(Some(kv_from_row(row, 0).map_err(backend)?)),
        None => Ok(None),
    }
}

pub(super) fn count(conn: &Connection, prefix: &str) -> Result<i64> {
    let range = KeyRange::new(prefix, None);
    let sql = format!(
        "SELECT COUNT(*) FROM current WHERE {}",
        range.condition("name")
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![range.low, range.high], |r| r.get(0)))
        .map_err(backend)
}

pub(super) fn list(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    // One transaction: the revision checks and the rows come from one snapshot.
    let tx = conn.transaction().map_err(backend)?;
    let (current, compacted) = revisions(&tx)?;
    let revision = crate::check_read_revision(opts.revision, current, compacted)?;
    let range = KeyRange::new(prefix, opts.start_after.as_deref());
    let limit = opts.limit.filter(|&l| l > 0).map_or(-1, |l| l as i64);

    let (rows_sql, count_sql) = if revision == current {
        // The latest state: walk `current` in key order.
        let cond = range.condition("c.name");
        (
            format!(
                "SELECT c.name, l.value, l.create_revision, l.revision
                 FROM current c JOIN log l ON l.revision = c.revision
                 WHERE {cond} ORDER BY c.name LIMIT ?3"
            ),
            format!("SELECT COUNT(*) FROM current c WHERE {cond} AND c.name > ?3"),
        )
    } else {
        // A past state: each key's newest row at or before the revision, unless that
        // row is a delete.
        let cond = range.condition("name");
        let at = format!(
            "SELECT l.name, l.value, l.create_revision, l.revision, l.deleted
             FROM (SELECT MAX(revision) AS revision FROM log
                   WHERE {cond} AND revision <= ?4 GROUP BY name) m
             JOIN log l ON l.revision = m.revision"
        );
        (
            format!("SELECT * FROM ({at}) WHERE deleted = 0 ORDER BY name LIMIT ?3"),
            format!("SELECT COUNT(*) FROM ({at}) WHERE deleted = 0 AND name > ?3"),
        )
    };

    let mut kvs = Vec::new();
    {
        let mut stmt = tx.prepare_cached(&rows_sql).map_err(backend)?;
        let fetch = if limit < 0 { -1 } else { limit + 1 };
        let mut rows = if revision == current {
            stmt.query(params![range.low, range.high, fetch])
        } else {
            stmt.query(params![range.low, range.high, fetch, revision])
        }
        .map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            kvs.push(kv_from_row(row, 0).map_err(backend)?);
        }
    }
    let more = limit >= 0 && kvs.len() as i64 > limit;
    let mut remaining = None;
    if more {
        kvs.truncate(limit as usize);
        let last = kvs.last().map(|kv| kv.key.as_bytes().to_vec());
        let mut stmt = tx.prepare_cached(&count_sql).map_err(backend)?;
        let n: i64 = if revision == current {
            stmt.query_row(params![range.low, range.high, last], |r| r.get(0))
        } else {
            stmt.query_row(params![range.low, range.high, last, revision], |r| r.get(0))
        }
        .map_err(backend)?;
        remaining = Some(n);
    }
    Ok(ListResult {
        kvs,
        revision,
        more,
        remaining,
    })
}

/// Up to [`REPLAY_CHUNK`] events under `prefix` after `cursor`, in revision order,
/// with the snapshot's current revision. `cursor` below the compaction point fails:
/// the events after it may be gone.
pub(super) fn replay_chunk(
    conn: &mut Connection,
    prefix: &str,
    cursor: Revision,
) -> Result<(Vec<Event>, Revision)> {
    let tx = conn.transaction().map_err(backend)?;
    let (current, compacted) = revisions(&tx)?;
    crate::check_watch_revision(cursor, current, compacted)?;
    let range = KeyRange::new(prefix, None);
    // `+l.name` keeps SQLite on the rowid (revision) range: the history after a
    // recent revision is short, while a prefix may cover most of the log.
    let sql = format!(
        "SELECT l.name, l.value, l.create_revision, l.revision, l.deleted,
                p.name, p.value, p.create_revision, p.revision
         FROM log l LEFT JOIN log p ON p.revision = l.prev_revision AND l.prev_revision > 0
         WHERE l.revision > ?3 AND {} ORDER BY l.revision LIMIT {REPLAY_CHUNK}",
        range.condition("+l.name")
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(backend)?;
    let mut rows = stmt
        .query(params![range.low, range.high, cursor])
        .map_err(backend)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let deleted: bool = row.get(4).map_err(backend)?;
        let prev = match row.get::<_, Option<i64>>(8).map_err(backend)? {
            Some(_) => Some(kv_from_row(row, 5).map_err(backend)?),
            None => None,
        };
        let kv = kv_from_row(row, 0).map_err(backend)?;
        events.push(if deleted {
            let last = prev.clone().ok_or_else(|| {
                StoreError::Backend(format!(
                    "delete of {:?} at revision {} has no previous value",
                    kv.key, kv.mod_revision
                ))
            })?;
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    value: last.value,
                    ..kv
                },
                prev,
            }
        } else {
            Event {
                kind: EventKind::Put,
                kv,
                prev,
            }
        });
    }
    Ok((events, current))
}
