//! The SQLite schema, connection settings, and the row ↔ key-value mapping.
//!
//! The table `log` is the history: one row per revision (the revision is the rowid),
//! in the manner of etcd's MVCC store and k3s' kine. A delete is a row with
//! `deleted = 1` and no value; `prev_revision` points at the row it replaced, which
//! gives watch events their previous value. `current` maps every live key to the
//! revision of its latest row, so "the latest value of every key under a prefix" is a
//! range scan of `current` joined to `log` by rowid. `meta` holds the compaction point.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, Row};

use crate::{KeyValue, Result, Revision, StoreError};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    name            BLOB    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    value           BLOB
);
CREATE INDEX IF NOT EXISTS log_name_revision ON log (name, revision);
CREATE TABLE IF NOT EXISTS current (
    name     BLOB    PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Which connection: the one writer, or one of the readers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Writer,
    Reader,
}

/// Opens a connection for `role`.
///
/// Durability choice: WAL with `synchronous=NORMAL`. A commit appends its pages to the
/// WAL with `write(2)` before the commit returns, so once a write is acknowledged it is
/// in the kernel's page cache and survives the process being killed (`kill -9`, a
/// panic, an OOM kill). Only a power loss or kernel crash can lose the last commits
/// since the previous checkpoint (the database stays consistent: SQLite fsyncs at each
/// checkpoint). `synchronous=FULL` would fsync the WAL on every commit, which costs a
/// disk flush per write batch; like etcd's single-node deployments behind k3s, rkube
/// trades that window for throughput on one machine. HA clusters use etcd.
///
/// The WAL is checkpointed every 8,192 pages (32 MiB) rather than SQLite's 1,000:
/// the index and `current` pages a burst of writes keeps changing are copied back
/// once per checkpoint, and each checkpoint's fsync is paid less often.
pub(super) fn open_connection(path: &Path, role: Role) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if role == Role::Writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 268435456;",
    )
    .map_err(backend)?;
    match role {
        // WAL mode is a property of the file, set once by the writer. A reader must not
        // set it: on a fresh connection that takes the write lock for a moment, and the
        // writer, upgrading from its reads, would then fail with "database is locked".
        Role::Writer => conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 8192;",
        ),
        Role::Reader => conn.execute_batch("PRAGMA query_only = ON;"),
    }
    .map_err(backend)?;
    Ok(conn)
}

/// Creates the schema if needed and refuses a database written by a newer rkube.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA).map_err(backend)?;
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_or_else(
            |e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(backend(e)),
            },
            |v| Ok(Some(v)),
        )?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )
            .map_err(backend)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Backend(format!(
                "database schema version {v} is newer than this rkube understands ({SCHEMA_VERSION})"
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

/// `(current revision, compacted revision)` as seen by `conn`'s snapshot.
///
/// Compaction may delete the newest row (a delete at the compaction point), but never
/// a row above the compaction point, so the current revision is the larger of the two.
pub(super) fn revisions(conn: &Connection) -> Result<(Revision, Revision)> {
    let (max, compacted): (i64, i64) = conn
        .prepare_cached(
            "SELECT COALESCE((SELECT MAX(revision) FROM log), 0),
                    COALESCE((SELECT value FROM meta WHERE key = 'compacted'), 0)",
        )
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(backend)?;
    Ok((max.max(compacted), compacted))
}

pub(super) fn key_from(name: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(name).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// A key-value from columns `name, value, create_revision, revision` starting at `at`.
pub(super) fn kv_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_from(row.get(at)?)?,
        value: Bytes::from(row.get::<_, Option<Vec<u8>>>(at + 1)?.unwrap_or_default()),
        create_revision: row.get(at + 2)?,
        mod_revision: row.get(at + 3)?,
    })
}
