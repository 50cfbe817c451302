//! The writer thread: the only connection that writes. It takes every write queued
//! while the previous commit was running, applies them in one transaction (group
//! commit), and only after the commit publishes their events and answers the callers.
//! Compaction runs here too, in small transactions between write batches.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, RwLock, mpsc};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{broadcast, oneshot};

use super::latest::Latest;
use super::schema::{backend, revisions};
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError};

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Revisions examined per compaction transaction, so writes never wait long.
const COMPACT_CHUNK: i64 = 2000;

pub(super) enum Write {
    Create(String, Bytes),
    Update(String, Bytes, Revision),
    Delete(String, Option<Revision>),
}

pub(super) enum Request {
    Write(Write, oneshot::Sender<Result<KeyValue>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

/// State shared by the writer and the store's readers.
pub(super) struct Published {
    /// The last committed revision.
    pub revision: AtomicI64,
    /// The compaction point.
    pub compacted: AtomicI64,
}

/// A compaction in progress: rows below `target` are examined from `cursor` upwards.
struct Compaction {
    target: Revision,
    cursor: Revision,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

pub(super) struct Writer {
    conn: Connection,
    requests: Receiver<Request>,
    events: broadcast::Sender<Arc<Event>>,
    published: Arc<Published>,
    latest: Option<Arc<RwLock<Latest>>>,
    /// The last revision written in the open (or last committed) transaction.
    revision: Revision,
    compacted: Revision,
    compaction: Option<Compaction>,
}

/// What one request did inside the batch's transaction.
enum Outcome {
    /// A write was applied.
    Done(Arc<Event>),
    /// A request was refused and changed nothing.
    Refused(StoreError),
    /// A compaction was accepted; `advanced` if it moved the compaction point.
    Compact { advanced: bool },
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        requests: Receiver<Request>,
        events: broadcast::Sender<Arc<Event>>,
        published: Arc<Published>,
        latest: Option<Arc<RwLock<Latest>>>,
    ) -> Result<Self> {
        let (revision, compacted) = revisions(&conn)?;
        published.revision.store(revision, Ordering::SeqCst);
        published.compacted.store(compacted, Ordering::SeqCst);
        Ok(Writer {
            conn,
            requests,
            events,
            published,
            latest,
            revision,
            compacted,
            compaction: None,
        })
    }

    /// Serves requests until every sender is gone.
    pub(super) fn run(mut self) {
        loop {
            let first = if self.compaction.is_some() {
                match self.requests.try_recv() {
                    Ok(r) => Some(r),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match self.requests.recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::RecvError) => break,
                }
            };
            match first {
                Some(first) => self.batch(first),
                None => self.compact_step(),
            }
        }
        // Finish a started compaction so its callers get an answer.
        while self.compaction.is_some() {
            self.compact_step();
        }
    }

    /// Commits `first` and whatever else is queued, then answers them all.
    fn batch(&mut self, first: Request) {
        let mut requests = vec![first];
        while requests.len() < MAX_BATCH {
            match self.requests.try_recv() {
                Ok(r) => requests.push(r),
                Err(_) => break,
            }
        }
        let start_revision = self.revision;
        let start_compacted = self.compacted;
        let result = self.apply_all(&requests);
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Nothing of the batch was committed: every caller gets the error.
                tracing::error!(error = %e, "sqlite store: write batch failed");
                self.revision = start_revision;
                self.compacted = start_compacted;
                for r in requests {
                    match r {
                        Request::Write(_, reply) => drop(reply.send(Err(backend(&e)))),
                        Request::Compact(_, reply) => drop(reply.send(Err(backend(&e)))),
                    }
                }
                return;
            }
        };
        // Committed: update the in-memory latest values and the published revision
        // (together, so a LIST never reports a revision ahead of `current_revision`),
        // publish the events in revision order, then answer.
        {
            let mut latest = self
                .latest
                .as_ref()
                .map(|l| l.write().unwrap_or_else(|e| e.into_inner()));
            if let Some(latest) = &mut latest {
                for outcome in &outcomes {
                    if let Outcome::Done(event) = outcome {
                        latest.apply(event);
                    }
                }
            }
            self.published
                .revision
                .store(self.revision, Ordering::SeqCst);
        }
        if self.compacted != start_compacted {
            self.published
                .compacted
                .store(self.compacted, Ordering::SeqCst);
        }
        for outcome in &outcomes {
            if let Outcome::Done(event) = outcome {
                let _ = self.events.send(event.clone());
            }
        }
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            match (request, outcome) {
                (Request::Write(_, reply), Outcome::Done(event)) => {
                    drop(reply.send(Ok(event.kv.clone())));
                }
                (Request::Write(_, reply), Outcome::Refused(e)) => {
                    drop(reply.send(Err(e)));
                }
                (Request::Compact(_, reply), Outcome::Refused(e)) => drop(reply.send(Err(e))),
                (Request::Compact(_, reply), Outcome::Compact { advanced: true }) => {
                    self.await_compaction(reply)
                }
                (Request::Compact(_, reply), _) => drop(reply.send(Ok(()))),
                (Request::Write(_, reply), Outcome::Compact { .. }) => {
                    drop(reply.send(Err(StoreError::Backend("internal: write outcome".into()))))
                }
            }
        }
    }

    /// Applies a batch in one transaction.
    fn apply_all(&mut self, requests: &[Request]) -> rusqlite::Result<Vec<Outcome>> {
        let tx = write_transaction(&mut self.conn)?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(match request {
                Request::Write(write, _) => apply(&tx, &mut self.revision, write)?,
                Request::Compact(target, _) => {
                    let target = *target;
                    if target > self.revision {
                        Outcome::Refused(StoreError::FutureRevision {
                            requested: target,
                            current: self.revision,
                        })
                    } else if target <= self.compacted {
                        Outcome::Compact { advanced: false }
                    } else {
                        // Readers check this row in their snapshot, so from this
                        // commit on nobody reads below `target`.
                        tx.prepare_cached(
                            "INSERT INTO meta (key, value) VALUES ('compacted', ?1)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        )?
                        .execute([target])?;
                        self.compacted = target;
                        Outcome::Compact { advanced: true }
                    }
                }
            });
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Registers a caller of `compact` to be answered when the deletion is done.
    fn await_compaction(&mut self, reply: oneshot::Sender<Result<()>>) {
        let target = self.compacted;
        match &mut self.compaction {
            Some(c) if c.target == target => c.waiters.push(reply),
            Some(c) => {
                // A newer point: rows already examined may now be superseded too.
                c.target = target;
                c.cursor = 0;
                c.waiters.push(reply);
            }
            None => {
                self.compaction = Some(Compaction {
                    target,
                    cursor: 0,
                    waiters: vec![reply],
                });
            }
        }
    }

    /// Deletes, in one short transaction, the superseded rows and deletes in the next
    /// slice of revisions below the compaction point.
    fn compact_step(&mut self) {
        let Some(c) = &mut self.compaction else {
            return;
        };
        let result = (|| -> rusqlite::Result<Option<Revision>> {
            let tx = write_transaction(&mut self.conn)?;
            // Skip the empty stretch below the first remaining row.
            let from: Option<Revision> = tx
                .prepare_cached("SELECT MIN(revision) FROM log WHERE revision > ?1")?
                .query_row([c.cursor], |r| r.get(0))
                .optional()?
                .flatten();
            let Some(from) = from.filter(|&f| f <= c.target) else {
                return Ok(None);
            };
            let to = (from + COMPACT_CHUNK).min(c.target + 1);
            tx.prepare_cached(
                "DELETE FROM log WHERE revision >= ?1 AND revision < ?2 AND (
                    deleted = 1 OR EXISTS (
                        SELECT 1 FROM log n WHERE n.name = log.name
                        AND n.revision > log.revision AND n.revision <= ?3))",
            )?
            .execute(params![from, to, c.target])?;
            tx.commit()?;
            Ok(Some(to - 1))
        })();
        match result {
            Ok(Some(done_up_to)) => c.cursor = done_up_to,
            Ok(None) => {
                for w in self.compaction.take().expect("compaction").waiters {
                    drop(w.send(Ok(())));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite store: compaction failed");
                for w in self.compaction.take().expect("compaction").waiters {
                    drop(w.send(Err(backend(&e))));
                }
            }
        }
    }
}

/// Begins a transaction holding the write lock from the start: one that reads first and
/// upgrades later gets "database is locked" at once, without waiting, if anyone holds
/// the lock at that moment.
fn write_transaction(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// The current row of `key`, as seen inside the transaction.
fn current(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    tx.prepare_cached(
        "SELECT c.name, l.value, l.create_revision, l.revision
         FROM current c JOIN log l ON l.revision = c.revision WHERE c.name = ?1",
    )?
    .query_row([key.as_bytes()], |row| super::schema::kv_from_row(row, 0))
    .optional()
}

/// Checks and applies one write. Refusals (exists, missing, conflict) write nothing.
fn apply(
    tx: &Transaction<'_>,
    revision: &mut Revision,
    write: &Write,
) -> rusqlite::Result<Outcome> {
    let key = match write {
        Write::Create(k, _) | Write::Update(k, _, _) | Write::Delete(k, _) => k.as_str(),
    };
    let existing = current(tx, key)?;
    let refused = match (write, &existing) {
        (Write::Create(..), Some(_)) => Some(StoreError::AlreadyExists(key.to_string())),
        (Write::Update(..) | Write::Delete(..), None) => {
            Some(StoreError::NotFound(key.to_string()))
        }
        (Write::Update(_, _, expected), Some(kv)) if kv.mod_revision != *expected => {
            Some(crate::conflict(key, *expected, kv.clone()))
        }
        (Write::Delete(_, Some(expected)), Some(kv)) if kv.mod_revision != *expected => {
            Some(crate::conflict(key, *expected, kv.clone()))
        }
        _ => None,
    };
    if let Some(e) = refused {
        return Ok(Outcome::Refused(e));
    }

    let rev = *revision + 1;
    let prev_revision = existing.as_ref().map_or(0, |kv| kv.mod_revision);
    let create_revision = existing.as_ref().map_or(rev, |kv| kv.create_revision);
    let (value, deleted) = match write {
        Write::Create(_, v) | Write::Update(_, v, _) => (Some(v.as_ref()), false),
        Write::Delete(..) => (None, true),
    };
    tx.prepare_cached(
        "INSERT INTO log (revision, name, create_revision, prev_revision, deleted, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        rev,
        key.as_bytes(),
        create_revision,
        prev_revision,
        deleted,
        value
    ])?;
    if deleted {
        tx.prepare_cached("DELETE FROM current WHERE name = ?1")?
            .execute([key.as_bytes()])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO current (name, revision) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET revision = excluded.revision",
        )?
        .execute(params![key.as_bytes(), rev])?;
    }
    *revision = rev;

    let event = match write {
        Write::Create(_, v) | Write::Update(_, v, _) => Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_string(),
                value: v.clone(),
                create_revision,
                mod_revision: rev,
            },
            prev: existing,
        },
        Write::Delete(..) => {
            let last = existing.expect("checked present");
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    mod_revision: rev,
                    ..last.clone()
                },
                prev: Some(last),
            }
        }
    };
    Ok(Outcome::Done(Arc::new(event)))
}
