//! The live half of a watch, shared by the in-process backends: a broadcast of committed
//! events, filtered by prefix and de-duplicated against what the replay already sent.

use std::sync::Arc;

use futures::stream::{self, Stream};
use tokio::sync::broadcast;

use crate::{Event, Result, Revision, StoreError};

/// How many events a live watcher may fall behind before it is cut off.
pub(crate) const DEFAULT_WATCH_CAPACITY: usize = 4096;

/// Live events with revision > `after` for keys under `prefix`, from a receiver that was
/// subscribed before the replay was read. Ends with `WatchLagged` if the watcher falls
/// more than the channel's capacity behind, and quietly when the store shuts down.
pub(crate) fn live(
    rx: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    after: Revision,
) -> impl Stream<Item = Result<Event>> + Send + 'static {
    stream::unfold(Some((rx, prefix, after)), |state| async move {
        let (mut rx, prefix, mut last) = state?;
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    // Events already replayed from history (or older) are skipped.
                    if ev.revision() <= last {
                        continue;
                    }
                    last = ev.revision();
                    if ev.kv.key.starts_with(&prefix) {
                        return Some((Ok((*ev).clone()), Some((rx, prefix, last))));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        prefix,
                        revision = last,
                        skipped,
                        "store watcher fell behind"
                    );
                    return Some((
                        Err(StoreError::WatchLagged {
                            revision: last,
                            skipped,
                        }),
                        None,
                    ));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
