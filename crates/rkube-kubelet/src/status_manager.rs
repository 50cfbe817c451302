//! Writes pod statuses to the API: pod workers hand over the status they computed;
//! an unchanged status is not written again, several quick changes of one pod become
//! one write, and writes of different pods go out concurrently.
//!
//! Each write is a strategic merge patch of `status`, so conditions merge by type
//! (PodScheduled and readiness-gate conditions others own are kept), as upstream's
//! status manager patches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Notify;

#[derive(Clone)]
struct Wanted {
    namespace: String,
    name: String,
    status: PodStatus,
}

#[derive(Default)]
struct State {
    /// Statuses waiting to be written, by pod UID.
    pending: HashMap<String, Wanted>,
    /// What the API has, as of our last successful write.
    written: HashMap<String, PodStatus>,
}

/// Hands pod statuses to the API.
pub struct StatusManager {
    client: Client,
    state: Mutex<State>,
    notify: Notify,
}

const CONCURRENCY: usize = 16;

impl StatusManager {
    /// A status manager writing through `client`; [`StatusManager::run`] does the writing.
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(StatusManager {
            client,
            state: Mutex::default(),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `status` to be the pod's status.
    pub fn set(&self, pod: &Pod, status: PodStatus) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        {
            let mut s = self.lock();
            if s.written.get(&uid) == Some(&status) {
                s.pending.remove(&uid);
                return;
            }
            s.pending.insert(
                uid,
                Wanted {
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    status,
                },
            );
        }
        self.notify.notify_one();
    }

    /// Remembers a status the API already has (a pod adopted after a restart).
    pub fn seed(&self, uid: &str, status: PodStatus) {
        self.lock().written.insert(uid.to_string(), status);
    }

    /// Forgets a pod that is gone.
    pub fn forget(&self, uid: &str) {
        let mut s = self.lock();
        s.pending.remove(uid);
        s.written.remove(uid);
    }

    /// Whether the status of a pod is written (nothing pending for it).
    pub fn is_synced(&self, uid: &str) -> bool {
        !self.lock().pending.contains_key(uid)
    }

    /// Writes statuses for as long as the kubelet runs.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.notify.notified().await;
            loop {
                let batch: Vec<(String, Wanted)> = self.lock().pending.drain().collect();
                if batch.is_empty() {
                    break;
                }
                let results: Vec<(String, Wanted, bool)> = futures::stream::iter(batch)
                    .map(|(uid, w)| {
                        let me = self.clone();
                        async move {
                            let ok = me.write(&uid, &w).await;
                            (uid, w, ok)
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                let mut retry = false;
                {
                    let mut s = self.lock();
                    for (uid, w, ok) in results {
                        if ok {
                            s.written.insert(uid, w.status);
                        } else if let std::collections::hash_map::Entry::Vacant(e) =
                            s.pending.entry(uid)
                        {
                            e.insert(w);
                            retry = true;
                        }
                    }
                }
                if retry {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// One write; false if it should be retried.
    async fn write(&self, uid: &str, w: &Wanted) -> bool {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &w.namespace);
        let mut status = serde_json::to_value(&w.status).unwrap_or_default();
        // Fields the kubelet no longer sets are cleared explicitly.
        for k in ["reason", "message"] {
            if status.get(k).is_none() {
                status[k] = Value::Null;
            }
        }
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        match api
            .patch_status(&w.name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {
                tracing::debug!(pod = %w.name, uid, error = %e.message, "pod status not written; the pod is gone or replaced");
                true
            }
            Err(e) => {
                tracing::warn!(pod = %w.name, error = %e, "writing pod status failed; retrying");
                false
            }
        }
    }
}
