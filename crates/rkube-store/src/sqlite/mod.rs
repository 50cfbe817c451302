//! The embedded SQLite [`Store`]: rkube's default datastore, one file on disk.
//!
//! One writer thread owns the only write connection and commits queued writes in
//! groups (see [`writer`]); reads run on a small pool of read connections on tokio's
//! blocking pool, each in its own WAL snapshot (see [`read`]); committed events are
//! broadcast to live watchers in revision order. The schema and the durability choice
//! (WAL, `synchronous=NORMAL`: acknowledged writes survive `kill -9`) are described
//! in [`schema`]. A lock file beside the database keeps a second process from opening
//! it, since revisions are allocated in this process's memory.

mod latest;
mod read;
mod schema;
mod writer;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::{broadcast, oneshot};

use crate::watch::{self, DEFAULT_WATCH_CAPACITY};
use crate::{
    Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchStream,
};
use latest::Latest;
use read::{REPLAY_CHUNK, Readers};
use writer::{Published, Request, Write, Writer};

/// Tuning of a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How many events a live watcher may fall behind before it is cut off with
    /// [`StoreError::WatchLagged`].
    pub watch_capacity: usize,
    /// Keep the latest value of every key in memory too (see [`latest`]): gets,
    /// counts and LISTs at the head then never touch SQLite. Costs memory for one
    /// copy of the live values.
    pub latest_in_memory: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            watch_capacity: DEFAULT_WATCH_CAPACITY,
            latest_in_memory: true,
        }
    }
}

/// The SQLite store. Share it as `Arc<dyn Store>`; dropping the last handle finishes
/// the queued writes and closes the database.
pub struct SqliteStore {
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    events: broadcast::Sender<Arc<Event>>,
    published: Arc<Published>,
    latest: Option<Arc<RwLock<Latest>>>,
    /// Held (locked) for as long as the store is open.
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; the revision sequence
    /// continues from what the file holds.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let lock = lock_file(&path)?;
        let conn = schema::open_connection(&path, schema::Role::Writer)?;
        schema::migrate(&conn)?;

        let (events, _) = broadcast::channel(options.watch_capacity.max(1));
        let published = Arc::new(Published {
            revision: Default::default(),
            compacted: Default::default(),
        });
        let latest = match options.latest_in_memory {
            true => Some(Arc::new(RwLock::new(Latest::load(&conn)?))),
            false => None,
        };
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(conn, rx, events.clone(), published.clone(), latest.clone())?;
        let handle = std::thread::Builder::new()
            .name("rkube-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("starting the sqlite writer: {e}")))?;
        tracing::debug!(
            path = %path.display(),
            revision = published.revision.load(Ordering::SeqCst),
            "sqlite store open"
        );
        Ok(SqliteStore {
            requests: Some(tx),
            writer: Some(handle),
            readers: Arc::new(Readers::new(path)),
            events,
            published,
            latest,
            _lock: lock,
        })
    }

    async fn write(&self, write: Write) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write(write, reply))?;
        answer.await.map_err(|_| writer_gone())?
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests
            .as_ref()
            .and_then(|tx| tx.send(request).ok())
            .ok_or_else(writer_gone)
    }
}

fn read_lock(latest: &RwLock<Latest>) -> std::sync::RwLockReadGuard<'_, Latest> {
    // The writer never leaves the map half-updated across a panic point.
    latest.read().unwrap_or_else(|e| e.into_inner())
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the sqlite writer thread has stopped".into())
}

/// Takes `<path>.lock`, refusing a database another process has open. (A separate
/// file: closing any descriptor of the database itself would drop SQLite's locks.)
fn lock_file(path: &Path) -> Result<File> {
    let mut lock_path = PathBuf::from(path).into_os_string();
    lock_path.push(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Backend(format!("opening {lock_path:?}: {e}")))?;
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => StoreError::Backend(format!(
            "database {} is in use by another process",
            path.display()
        )),
        std::fs::TryLockError::Error(e) => {
            StoreError::Backend(format!("locking {lock_path:?}: {e}"))
        }
    })?;
    Ok(file)
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; waiting
        // for it means the file is closed (and unlocked) when drop returns.
        self.requests.take();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("sqlite writer thread panicked");
        }
    }
}

/// A watch: history replayed chunk by chunk from the log, then the live broadcast.
struct Replay {
    readers: Arc<Readers>,
    prefix: String,
    /// Events read but not yet delivered.
    buffered: VecDeque<Event>,
    /// Every event up to this revision has been read.
    cursor: Revision,
    /// The history is exhausted; live events after `cursor` follow.
    caught_up: bool,
    rx: Option<broadcast::Receiver<Arc<Event>>>,
}

enum Phase {
    Replay(Replay),
    Live(BoxStream<'static, Result<Event>>),
}

impl Replay {
    fn into_stream(self) -> WatchStream {
        stream::unfold(Some(Phase::Replay(self)), |phase| async move {
            let mut st = match phase? {
                Phase::Live(mut live) => {
                    return live
                        .next()
                        .await
                        .map(|item| (item, Some(Phase::Live(live))));
                }
                Phase::Replay(st) => st,
            };
            loop {
                if let Some(ev) = st.buffered.pop_front() {
                    return Some((Ok(ev), Some(Phase::Replay(st))));
                }
                if st.caught_up {
                    let rx = st.rx.take().expect("receiver");
                    let mut live = watch::live(rx, st.prefix, st.cursor).boxed();
                    return live
                        .next()
                        .await
                        .map(|item| (item, Some(Phase::Live(live))));
                }
                let (readers, prefix, cursor) = (st.readers.clone(), st.prefix.clone(), st.cursor);
                match readers
                    .run(move |c| read::replay_chunk(c, &prefix, cursor))
                    .await
                {
                    Ok((events, snapshot)) => st.absorb(events, snapshot),
                    // The history after `cursor` was compacted meanwhile, or the disk failed.
                    Err(e) => return Some((Err(e), None)),
                }
            }
        })
        .boxed()
    }

    /// Takes a chunk read at a snapshot whose current revision was `snapshot`.
    fn absorb(&mut self, events: Vec<Event>, snapshot: Revision) {
        if events.len() < REPLAY_CHUNK {
            // Everything up to the snapshot has been read.
            self.cursor = snapshot;
            self.caught_up = true;
        } else if let Some(last) = events.last() {
            self.cursor = last.revision();
        }
        self.buffered.extend(events);
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        if let Some(latest) = &self.latest {
            return Ok(read_lock(latest).get(key));
        }
        let key = key.to_string();
        self.readers.run(move |c| read::get(c, &key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        if let Some(latest) = &self.latest {
            let latest = read_lock(latest);
            if latest.serves(opts.revision) {
                return Ok(latest.list(prefix, &opts));
            }
        }
        let prefix = prefix.to_string();
        self.readers
            .run(move |c| read::list(c, &prefix, &opts))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        if let Some(latest) = &self.latest {
            return Ok(read_lock(latest).count(prefix));
        }
        let prefix = prefix.to_string();
        self.readers.run(move |c| read::count(c, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(Write::Create(key.to_string(), value)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.write(Write::Update(key.to_string(), value, expected))
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(Write::Delete(key.to_string(), expected)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before reading history: every event committed after the history's
        // snapshot is then in the channel, and those before it are skipped by revision.
        let rx = self.events.subscribe();
        let owned = prefix.to_string();
        // The first chunk is read here, so a compacted or future `after` fails the call.
        let (events, snapshot) = self
            .readers
            .run(move |c| read::replay_chunk(c, &owned, after))
            .await?;
        let mut replay = Replay {
            readers: self.readers.clone(),
            prefix: prefix.to_string(),
            buffered: VecDeque::new(),
            cursor: after,
            caught_up: false,
            rx: Some(rx),
        };
        replay.absorb(events, snapshot);
        Ok(replay.into_stream())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.published.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact(revision, reply))?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.published.compacted.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests;
