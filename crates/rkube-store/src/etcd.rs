//! The etcd [`Store`] (feature `etcd`): the datastore of HA control planes, where
//! several rkube servers share one etcd cluster.
//!
//! etcd already has this crate's data model (one global revision, per-key create and
//! mod revisions, MVCC reads at past revisions, watches from a revision, compaction),
//! so each call maps to one etcd request: creates and compare-and-swaps are
//! transactions on `create_revision`/`mod_revision` that read the current value when
//! they fail, so a conflict carries it.
//!
//! Two edges of etcd's semantics are aligned with the other backends: a watch `after`
//! a revision older than the compaction point fails at once (etcd would report it
//! later, in the stream), and `compact` at or below the compaction point succeeds.
//! etcd does not report its compaction point directly; `compacted_revision` finds it
//! by binary search over reads at past revisions, which fail exactly below it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    WatchStream, prefix_end,
};

/// A connection to an etcd cluster. Cheap to clone inside; share it as `Arc<dyn Store>`.
pub struct EtcdStore {
    client: Client,
    /// The highest compaction point seen so far (etcd's only ever grows).
    compacted: Arc<AtomicI64>,
}

/// The largest gRPC message accepted from etcd.
const MAX_MESSAGE: usize = i32::MAX as usize;

const COMPACTED_MSG: &str = "required revision has been compacted";
const FUTURE_MSG: &str = "required revision is a future revision";

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (e.g. `["http://127.0.0.1:2379"]`).
    pub async fn connect<E: AsRef<str>>(endpoints: &[E]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to etcd: {e}")))?;
        Ok(EtcdStore {
            client,
            compacted: Arc::new(AtomicI64::new(0)),
        })
    }

    /// A KV client that takes responses of any size (a LIST of a large resource
    /// easily exceeds gRPC's default 4 MiB; etcd itself sends up to 2 GiB).
    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// Maps an etcd failure of a read at `requested`.
    async fn read_error(&self, e: etcd_client::Error, requested: Revision) -> StoreError {
        let msg = e.to_string();
        if msg.contains(COMPACTED_MSG) {
            let compacted = self.compacted_revision().await.unwrap_or(requested + 1);
            StoreError::Compacted {
                requested,
                compacted,
            }
        } else if msg.contains(FUTURE_MSG) {
            let current = self.current_revision().await.unwrap_or(requested - 1);
            StoreError::FutureRevision { requested, current }
        } else {
            backend(e)
        }
    }

    /// Whether a read at `revision` is still possible (not compacted).
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let opts = GetOptions::new().with_count_only().with_revision(revision);
        match self.kv().get(vec![0u8], Some(opts)).await {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains(COMPACTED_MSG) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.kv().txn(txn).await.map_err(backend)
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

fn kv_from(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: kv.key_str().map_err(backend)?.to_string(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn revision_of(resp: &TxnResponse) -> Result<Revision> {
    resp.header()
        .map(|h| h.revision())
        .ok_or_else(|| backend("response without a header"))
}

/// The key-value a failed transaction read in its `else` branch, if the key exists.
fn current_from(resp: &TxnResponse) -> Result<Option<KeyValue>> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            return get.kvs().first().map(kv_from).transpose();
        }
    }
    Ok(None)
}

/// Why a compare-and-swap on `key` expecting `expected` failed.
fn refusal(key: &str, expected: Revision, current: Option<KeyValue>) -> StoreError {
    match current {
        None => StoreError::NotFound(key.to_string()),
        Some(kv) => crate::conflict(key, expected, kv),
    }
}

/// The range `[from, end)` of keys under `prefix` after `start_after`, for etcd.
fn key_range(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let from = match start_after {
        Some(after) if after >= prefix => {
            let mut k = after.as_bytes().to_vec();
            k.push(0);
            k
        }
        _ => prefix.as_bytes().to_vec(),
    };
    // etcd reads `\0` as "to the end of the keyspace".
    (from, prefix_end(prefix).unwrap_or_else(|| vec![0]))
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.kv().get(key, None).await.map_err(backend)?;
        resp.kvs().first().map(kv_from).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let (from, end) = key_range(prefix, opts.start_after.as_deref());
        let mut get = GetOptions::new().with_range(end);
        if let Some(limit) = opts.limit.filter(|&l| l > 0) {
            get = get.with_limit(limit as i64);
        }
        let requested = opts.revision.filter(|&r| r > 0);
        if let Some(r) = requested {
            get = get.with_revision(r);
        }
        let resp = match self.kv().get(from, Some(get)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.read_error(e, requested.unwrap_or(0)).await),
        };
        let kvs = resp.kvs().iter().map(kv_from).collect::<Result<Vec<_>>>()?;
        let revision = match requested {
            Some(r) => r,
            None => resp.header().map_or(0, |h| h.revision()),
        };
        let more = resp.more();
        Ok(ListResult {
            remaining: more.then(|| resp.count() - kvs.len() as i64),
            kvs,
            revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let (from, end) = key_range(prefix, None);
        let opts = GetOptions::new().with_range(end).with_count_only();
        let resp = self.kv().get(from, Some(opts)).await.map_err(backend)?;
        Ok(resp.count())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        let revision = revision_of(&resp)?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        // A missing key has mod_revision 0: never let `expected <= 0` create it.
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key, CompareOp::Equal, expected),
                Compare::create_revision(key, CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(
                key,
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(refusal(key, expected, current_from(&resp)?));
        }
        let revision = revision_of(&resp)?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| backend("update without the previous value"))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut when = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            let current = current_from(&resp)?;
            return Err(refusal(key, expected.unwrap_or(0), current));
        }
        let revision = revision_of(&resp)?;
        let last = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(del) => del.prev_kvs().first().map(kv_from),
                _ => None,
            })
            .ok_or_else(|| backend("delete without the previous value"))??;
        Ok(KeyValue {
            mod_revision: revision,
            ..last
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let current = self.current_revision().await?;
        if after > current {
            return Err(StoreError::FutureRevision {
                requested: after,
                current,
            });
        }
        // etcd accepts a watch starting at the compaction point itself; the other
        // backends (and this trait) need `after` at or above it.
        if !self.readable_at(after.max(1)).await? {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted_revision().await?,
            });
        }
        let (from, end) = key_range(prefix, None);
        let opts = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after + 1)
            .with_prev_key();
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(from, Some(opts))
            .await
            .map_err(backend)?;
        let state = EtcdWatch {
            stream,
            buffered: VecDeque::new(),
            last: after,
        };
        Ok(futures::stream::unfold(Some(state), EtcdWatch::next).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only();
        let resp = self
            .kv()
            .get(vec![0u8], Some(opts))
            .await
            .map_err(backend)?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| backend("response without a header"))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let opts = CompactionOptions::new().with_physical();
        match self.kv().compact(revision, Some(opts)).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::SeqCst);
                Ok(())
            }
            // At or below the compaction point: nothing to do.
            Err(e) if e.to_string().contains(COMPACTED_MSG) => Ok(()),
            Err(e) if e.to_string().contains(FUTURE_MSG) => Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(e) => Err(backend(e)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // Reads fail exactly below the compaction point: find the lowest readable
        // revision between the last known point and the head.
        let mut low = self.compacted.load(Ordering::SeqCst).max(1);
        let mut high = self.current_revision().await?.max(low);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.readable_at(mid).await? {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        // Readable from revision 1: never compacted (compacting at 1 changes nothing).
        let compacted = if low <= 1 { 0 } else { low };
        self.compacted.fetch_max(compacted, Ordering::SeqCst);
        Ok(compacted)
    }
}

/// A watch on etcd, flattened to one event per item.
struct EtcdWatch {
    stream: etcd_client::WatchStream,
    buffered: VecDeque<Event>,
    /// The revision of the last event delivered.
    last: Revision,
}

impl EtcdWatch {
    async fn next(state: Option<Self>) -> Option<(Result<Event>, Option<Self>)> {
        let mut st = state?;
        loop {
            if let Some(ev) = st.buffered.pop_front() {
                st.last = ev.revision();
                return Some((Ok(ev), Some(st)));
            }
            let resp = match st.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return None,
                Err(e) => return Some((Err(backend(e)), None)),
            };
            if resp.canceled() {
                let err = if resp.compact_revision() > 0 {
                    StoreError::Compacted {
                        requested: st.last,
                        compacted: resp.compact_revision(),
                    }
                } else {
                    backend(format!("watch canceled: {}", resp.cancel_reason()))
                };
                return Some((Err(err), None));
            }
            for ev in resp.events() {
                match event_from(ev) {
                    Ok(ev) if ev.revision() <= st.last => {}
                    Ok(ev) => st.buffered.push_back(ev),
                    Err(e) => return Some((Err(e), None)),
                }
            }
        }
    }
}

fn event_from(ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| backend("watch event without a key"))?;
    let prev = ev.prev_kv().map(kv_from).transpose()?;
    Ok(match ev.event_type() {
        EventType::Put => Event {
            kind: EventKind::Put,
            kv: kv_from(kv)?,
            prev,
        },
        EventType::Delete => {
            // etcd's delete event has only the key and the delete's revision.
            let key = kv.key_str().map_err(backend)?.to_string();
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key,
                    value: prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                    create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                    mod_revision: kv.mod_revision(),
                },
                prev,
            }
        }
    })
}
