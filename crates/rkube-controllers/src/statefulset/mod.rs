//! The StatefulSet controller: pods with stable ordinal names `<set>-<n>`, created
//! in order and each waiting for its predecessor to be Running and Ready
//! (OrderedReady) or all at once (Parallel), removed from the highest ordinal down;
//! a PVC per volumeClaimTemplate and ordinal, kept or deleted as the
//! persistentVolumeClaimRetentionPolicy says; RollingUpdate (highest ordinal first,
//! down to the partition, each waiting for the one before to be healthy) or
//! OnDelete; template history in ControllerRevisions; the status kubectl reads.

mod control;
pub mod identity;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{Api, Client};

use crate::clock::Clock;
use crate::controller_ref;
use crate::events::EventRecorder;
use crate::history::{self, HistoryError};
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{self, object_key, split_key};
use crate::queue::WorkQueue;

/// Errors of the StatefulSet controller.
#[derive(Debug, thiserror::Error)]
pub enum StatefulSetError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// Writing a ControllerRevision failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A claim the pod needs is being deleted; the pod waits for it to go.
    #[error("pvc {0} is being deleted")]
    ClaimDeleting(String),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

pub struct StatefulSetController {
    client: Client,
    clock: Arc<dyn Clock>,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    revisions: Arc<Informer<ControllerRevision>>,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
}

async fn run(ctx: ControllerContext) {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let ctrl = Arc::new(StatefulSetController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
        claims: claims.clone(),
        revisions: revisions.clone(),
        recorder: ctx.recorder("statefulset-controller"),
        queue: WorkQueue::new(),
    });
    let mut set_changes = sets.subscribe();
    let mut pod_changes = pods.subscribe();
    let mut rev_changes = revisions.subscribe();
    let c = ctrl.clone();
    let set_feed = async move {
        while let Some(ch) = set_changes.recv().await {
            let s = match ch {
                Change::Applied { new, .. } => new,
                Change::Deleted(s) => s,
            };
            c.queue.add(object_key(s.as_ref()));
        }
    };
    let c = ctrl.clone();
    let pod_feed = async move {
        while let Some(ch) = pod_changes.recv().await {
            c.on_pod(ch);
        }
    };
    let c = ctrl.clone();
    let rev_feed = async move {
        while let Some(ch) = rev_changes.recv().await {
            let r = match ch {
                Change::Applied { new, .. } => new,
                Change::Deleted(r) => r,
            };
            if let Some(s) = controller_ref::resolve(&c.sets, &r.metadata) {
                c.queue.add(object_key(s.as_ref()));
            }
        }
    };
    sets.synced().await;
    pods.synced().await;
    claims.synced().await;
    revisions.synced().await;
    let c = ctrl.clone();
    let workers = ctrl
        .queue
        .run(ctx.config.workers, "statefulset", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    futures::join!(set_feed, pod_feed, rev_feed, workers);
}

impl StatefulSetController {
    fn owner_of(&self, pod: &Pod) -> Option<Arc<StatefulSet>> {
        controller_ref::resolve(&self.sets, &pod.metadata)
    }

    fn on_pod(&self, c: Change<Pod>) {
        let (old, new) = match c {
            Change::Applied { old, new } => (old, new),
            Change::Deleted(p) => {
                if let Some(s) = self.owner_of(&p) {
                    self.queue.add(object_key(s.as_ref()));
                }
                return;
            }
        };
        let Some(a) = controller_ref::affected(&self.sets, old.as_deref(), new.as_ref(), |s| {
            s.spec.as_ref().map(|s| &s.selector)
        }) else {
            return;
        };
        for s in a.previous.iter().chain(&a.candidates) {
            self.queue.add(object_key(s.as_ref()));
        }
        if let Some(s) = a.current {
            let key = object_key(s.as_ref());
            let min_ready = s.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if let Some(m) = min_ready.filter(|m| *m > 0)
                && pod_util::is_ready(&new)
                && !old.as_ref().is_some_and(|o| pod_util::is_ready(o))
            {
                // Look again when the pod becomes available.
                self.queue
                    .add_after(key.clone(), Duration::from_secs(m as u64 + 1));
            }
            self.queue.add(key);
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, StatefulSetError> {
        let (ns, name) = split_key(key);
        let Some(set) = self.sets.get(ns, name) else {
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let selector = match pod_util::selector(Some(&spec.selector)) {
            Ok(s) if !s.is_empty() => s,
            _ => {
                tracing::warn!("statefulset {key}: empty or invalid selector");
                return Ok(None);
            }
        };
        let pods = controller_ref::claim(
            &self.client,
            set.as_ref(),
            self.pods
                .list_claimable(ns, set.metadata.uid.as_deref().unwrap_or_default()),
            |p: &Pod| {
                pod_util::matches(&selector, p.metadata.labels.as_ref())
                    && identity::is_member_of(&set, p)
            },
        )
        .await?;
        let revs = controller_ref::claim(
            &self.client,
            set.as_ref(),
            self.revisions.list_namespace(ns),
            |r: &ControllerRevision| pod_util::matches(&selector, r.metadata.labels.as_ref()),
        )
        .await?;
        let revs: Vec<ControllerRevision> = revs.iter().map(|r| (**r).clone()).collect();
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let collision = set.status.as_ref().and_then(|s| s.collision_count);
        let found =
            history::find_or_create(&rev_api, set.as_ref(), &spec.template, revs, collision)
                .await?;
        let update_rev = found.update.clone();
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current_rev = found
            .all
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update_rev.clone());

        let mut run = control::SetSync::new(self, &set, &current_rev, &update_rev, &pods);
        run.status.collision_count = found.collision_count;
        let result = run.run(&pods).await;
        let (status, requeue) = run.finish();
        self.write_status(&set, status).await?;
        result?;

        // Revisions that pods or the status still use stay; older ones beyond the
        // history limit go.
        let mut live: HashSet<String> = pods
            .iter()
            .map(|p| identity::pod_revision(p).to_string())
            .collect();
        live.insert(current_rev.metadata.name.clone().unwrap_or_default());
        live.insert(update_rev.metadata.name.clone().unwrap_or_default());
        history::truncate(
            &rev_api,
            &found.all,
            &live,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await?;
        Ok(requeue)
    }

    async fn write_status(
        &self,
        set: &StatefulSet,
        status: StatefulSetStatus,
    ) -> Result<(), StatefulSetError> {
        if set.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or_default(),
        );
        controller_ref::write_status(&api, set, |s| s.status = Some(status.clone())).await?;
        Ok(())
    }
}
