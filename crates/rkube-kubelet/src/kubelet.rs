//! The kubelet proper: watches the pods bound to this node and runs one pod worker
//! per pod; adopts what the runtime already runs when it starts (a restart changes
//! nothing for running containers) and removes what belongs to no pod any more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use rkube_net::PodNetwork;
use rkube_runtime::Runtime;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::KubeletConfig;
use crate::dns::NodeDns;
use crate::events::EventRecorder;
use crate::images::ImageManager;
use crate::node::capacity::NodeResources;
use crate::objects::ClusterObjects;
use crate::pod_registry::PodRegistry;
use crate::pod_worker::{Adopted, PodUpdate, PodWorker, labels};
use crate::probes::ProbeResults;
use crate::status_manager::StatusManager;
use crate::volumes::VolumeManager;

/// Errors of a pod worker's pass (logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] rkube_runtime::RuntimeError),
    /// The pod network failed.
    #[error(transparent)]
    Network(#[from] rkube_net::pod_network::PodNetworkError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What every pod worker shares.
pub struct Ctx {
    pub config: KubeletConfig,
    pub client: Client,
    pub runtime: Arc<dyn Runtime>,
    pub network: Arc<PodNetwork>,
    pub images: ImageManager,
    pub volumes: VolumeManager,
    pub objects: Arc<ClusterObjects>,
    pub probes: Arc<ProbeResults>,
    pub status: Arc<StatusManager>,
    pub events: EventRecorder,
    pub registry: Arc<PodRegistry>,
    pub resources: NodeResources,
    pub dns: NodeDns,
}

struct Worker {
    updates: watch::Sender<PodUpdate>,
    wake: Arc<Notify>,
    volumes_dirty: Arc<AtomicBool>,
    pod: Arc<Pod>,
}

/// The pod side of the node agent.
pub struct Kubelet {
    ctx: Arc<Ctx>,
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Kubelet {
    /// A kubelet over its shared parts.
    pub fn new(ctx: Ctx) -> Kubelet {
        Kubelet { ctx: Arc::new(ctx) }
    }

    /// The registry the streaming server looks pods up in.
    pub fn registry(&self) -> Arc<PodRegistry> {
        self.ctx.registry.clone()
    }

    /// What the runtime runs, by pod UID.
    async fn adoptable(&self) -> HashMap<String, Adopted> {
        let mut by_pod: HashMap<String, Adopted> = HashMap::new();
        for sb in self
            .ctx
            .runtime
            .list_pod_sandboxes()
            .await
            .unwrap_or_default()
        {
            if let Some(uid) = sb.config.labels.get(labels::POD_UID) {
                by_pod.entry(uid.clone()).or_default().sandboxes.push(sb);
            }
        }
        for c in self.ctx.runtime.list_containers().await.unwrap_or_default() {
            if let Some(uid) = c.labels.get(labels::POD_UID) {
                by_pod.entry(uid.clone()).or_default().containers.push(c);
            }
        }
        by_pod
    }

    /// Removes sandboxes, containers, addresses and pod directories of pods that are
    /// not bound to this node any more.
    async fn remove_orphans(
        ctx: Arc<Ctx>,
        orphans: HashMap<String, Adopted>,
        known: HashSet<String>,
    ) {
        for (uid, a) in orphans {
            tracing::info!(uid, "removing the containers of a pod that is gone");
            for sb in &a.sandboxes {
                let _ = ctx
                    .runtime
                    .stop_pod_sandbox(&sb.id, Duration::from_secs(2))
                    .await;
                if sb.netns_path.is_some() {
                    let _ = ctx.network.teardown(&sb.id).await;
                }
                let _ = ctx.runtime.remove_pod_sandbox(&sb.id).await;
            }
            for c in &a.containers {
                let _ = ctx.runtime.remove_container(&c.id).await;
            }
            let _ = ctx.volumes.teardown(&uid);
        }
        for uid in ctx.volumes.pods_on_disk() {
            if !known.contains(&uid) {
                let _ = ctx.volumes.teardown(&uid);
            }
        }
        // Addresses held by sandboxes that no longer exist.
        let live: HashSet<String> = ctx
            .runtime
            .list_pod_sandboxes()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.id)
            .collect();
        if let Err(e) = ctx.network.sweep(&live).await {
            tracing::warn!(error = %e, "sweeping the pod network failed");
        }
    }

    fn spawn_worker(
        &self,
        workers: &mut HashMap<String, Worker>,
        pod: Arc<Pod>,
        adopted: Adopted,
        done: mpsc::UnboundedSender<String>,
    ) {
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let wake = Arc::new(Notify::new());
        let volumes_dirty = Arc::new(AtomicBool::new(false));
        let id = uid(&pod);
        let worker = PodWorker::new(
            self.ctx.clone(),
            pod.clone(),
            rx,
            wake.clone(),
            volumes_dirty.clone(),
            adopted,
        );
        let uid2 = id.clone();
        tokio::spawn(async move {
            worker.run().await;
            let _ = done.send(uid2);
        });
        workers.insert(
            id,
            Worker {
                updates: tx,
                wake,
                volumes_dirty,
                pod,
            },
        );
    }

    /// Runs the kubelet until the pod watch ends (it does not, in practice).
    pub async fn run(self) {
        let ctx = self.ctx.clone();
        tokio::spawn(ctx.status.clone().run());
        let api: Api<Pod> = Api::all(ctx.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
        let (store, writer): (Store<Pod>, _) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        let mut stream = std::pin::pin!(stream);
        ctx.objects.ready().await;
        let mut changes = ctx.objects.subscribe();
        let mut adoptable: Option<HashMap<String, Adopted>> = Some(self.adoptable().await);
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                ev = stream.next() => {
                    let Some(ev) = ev else { break };
                    match ev {
                        Ok(watcher::Event::Apply(p)) => self.dispatch(&mut workers, Arc::new(p), &mut adoptable, &done_tx),
                        Ok(watcher::Event::Delete(p)) => {
                            if let Some(w) = workers.get(&uid(&p)) {
                                let _ = w.updates.send(None);
                            }
                        }
                        Ok(watcher::Event::InitDone) => {
                            let current: HashMap<String, Arc<Pod>> =
                                store.state().into_iter().map(|p| (uid(&p), p)).collect();
                            // Pods deleted while the watch was away.
                            for (id, w) in &workers {
                                if !current.contains_key(id) {
                                    let _ = w.updates.send(None);
                                }
                            }
                            for p in current.values() {
                                self.dispatch(&mut workers, p.clone(), &mut adoptable, &done_tx);
                            }
                            if let Some(rest) = adoptable.take() {
                                let known: HashSet<String> = current.keys().cloned().collect();
                                let orphans: HashMap<String, Adopted> = rest
                                    .into_iter()
                                    .filter(|(id, _)| !workers.contains_key(id))
                                    .collect();
                                tokio::spawn(Self::remove_orphans(ctx.clone(), orphans, known));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "watching pods failed; retrying"),
                    }
                }
                Some(id) = done_rx.recv() => {
                    workers.remove(&id);
                }
                ch = changes.recv() => match ch {
                    Ok(c) => {
                        for w in workers.values() {
                            let same_ns = w.pod.metadata.namespace.as_deref() == Some(c.namespace.as_str());
                            if same_ns && VolumeManager::uses(&w.pod, c.kind, &c.name) {
                                w.volumes_dirty.store(true, Ordering::SeqCst);
                                w.wake.notify_one();
                            }
                        }
                    }
                    Err(_) => {
                        // Missed announcements: refresh everyone's volumes.
                        for w in workers.values() {
                            w.volumes_dirty.store(true, Ordering::SeqCst);
                            w.wake.notify_one();
                        }
                    }
                },
                _ = housekeeping.tick() => {
                    ctx.images.gc();
                }
            }
        }
    }

    fn dispatch(
        &self,
        workers: &mut HashMap<String, Worker>,
        pod: Arc<Pod>,
        adoptable: &mut Option<HashMap<String, Adopted>>,
        done: &mpsc::UnboundedSender<String>,
    ) {
        let id = uid(&pod);
        if let Some(w) = workers.get_mut(&id) {
            w.pod = pod.clone();
            let _ = w.updates.send(Some(pod));
            return;
        }
        // Until the first full list, adoption needs the whole pod list; after it,
        // new pods have nothing in the runtime.
        let adopted = adoptable
            .as_mut()
            .and_then(|a| a.remove(&id))
            .unwrap_or_default();
        let has_state = !adopted.sandboxes.is_empty() || !adopted.containers.is_empty();
        if is_terminal(&pod) && !has_state && pod.metadata.deletion_timestamp.is_none() {
            // Finished before we saw it (or before a restart): nothing to run.
            return;
        }
        self.spawn_worker(workers, pod, adopted, done.clone());
    }
}
