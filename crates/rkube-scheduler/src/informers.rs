//! Watch streams reduced to what the scheduler's handlers need: one object applied or
//! deleted, or (after a (re)list) the complete current set to replace the old one.

use std::fmt::Debug;
use std::future::Future;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rkube_api::unmanaged::Unmanaged;
use serde::de::DeserializeOwned;

/// A change seen on a watch.
#[derive(Debug)]
pub enum Change<K> {
    Apply(K),
    Delete(K),
    /// Everything that exists now (after the initial list or a re-list).
    Replace(Vec<K>),
}

/// Follows `api` forever (retrying with backoff), calling `handle` for each change.
/// Nothing here reads managedFields: objects are decoded without them, which
/// roughly halves what is kept and saves most of the decoding.
pub async fn follow<K, F, Fut>(api: Api<Unmanaged<K>>, config: watcher::Config, mut handle: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Default,
    F: FnMut(Change<K>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Option<Vec<K>> = None;
    while let Some(ev) = stream.next().await {
        let ev = ev.map(|ev| match ev {
            Event::Apply(o) => Event::Apply(o.0),
            Event::Delete(o) => Event::Delete(o.0),
            Event::Init => Event::Init,
            Event::InitApply(o) => Event::InitApply(o.0),
            Event::InitDone => Event::InitDone,
        });
        match ev {
            Ok(Event::Init) => listing = Some(Vec::new()),
            Ok(Event::InitApply(o)) => match &mut listing {
                Some(l) => l.push(o),
                None => handle(Change::Apply(o)).await,
            },
            Ok(Event::InitDone) => {
                handle(Change::Replace(listing.take().unwrap_or_default())).await;
            }
            Ok(Event::Apply(o)) => handle(Change::Apply(o)).await,
            Ok(Event::Delete(o)) => handle(Change::Delete(o)).await,
            Err(e) => {
                tracing::debug!(error = %e, kind = std::any::type_name::<K>(), "watch error; retrying")
            }
        }
    }
}

/// Aborts a set of tasks when dropped: a component that stops leading takes its
/// watchers and workers down with it.
#[derive(Default)]
pub struct TaskSet(Vec<tokio::task::JoinHandle<()>>);

impl TaskSet {
    pub fn spawn(&mut self, f: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(f));
    }
}

impl Drop for TaskSet {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
