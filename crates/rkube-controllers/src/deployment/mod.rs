//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets named `<deployment>-<pod-template-hash>` (RollingUpdate within
//! maxSurge/maxUnavailable, or Recreate), keeps revisions on them
//! (`deployment.kubernetes.io/revision`; a rollback is a template that matches an
//! old ReplicaSet, which is reused under a new revision), honours `paused`, scales
//! proportionally, deletes revisions beyond `revisionHistoryLimit`, and reports the
//! status `kubectl get deploy` and `kubectl rollout status` read, with the
//! Available and Progressing conditions and the progress deadline.

pub mod hash;
mod progress;
mod recreate;
mod rolling;
mod sync;
pub mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client};

use crate::clock::Clock;
use crate::controller_ref::{self, Claim, controller_of};
use crate::events::EventRecorder;
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{self, object_key, split_key};
use crate::queue::WorkQueue;
use sync::Rollout;

/// Errors of the Deployment controller.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// A ReplicaSet of the new name exists with another template; the collision
    /// count was raised and the next sync picks another name.
    #[error("hash collision on replica set {0}")]
    HashCollision(String),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

pub struct DeploymentController {
    client: Client,
    clock: Arc<dyn Clock>,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
}

async fn run(ctx: ControllerContext) {
    let deployments = ctx.informers.get::<Deployment>();
    let replicasets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let ctrl = Arc::new(DeploymentController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        deployments: deployments.clone(),
        replicasets: replicasets.clone(),
        pods: pods.clone(),
        recorder: ctx.recorder("deployment-controller"),
        queue: WorkQueue::new(),
    });
    let mut d_changes = deployments.subscribe();
    let mut rs_changes = replicasets.subscribe();
    let mut pod_changes = pods.subscribe();
    let c = ctrl.clone();
    let d_feed = async move {
        while let Some(ch) = d_changes.recv().await {
            let d = match ch {
                Change::Applied { new, .. } => new,
                Change::Deleted(d) => d,
            };
            c.queue.add(object_key(d.as_ref()));
        }
    };
    let c = ctrl.clone();
    let rs_feed = async move {
        while let Some(ch) = rs_changes.recv().await {
            c.on_replicaset(ch);
        }
    };
    let c = ctrl.clone();
    let pod_feed = async move {
        while let Some(ch) = pod_changes.recv().await {
            if let Change::Deleted(p) = ch {
                c.on_pod_deleted(&p);
            }
        }
    };
    deployments.synced().await;
    replicasets.synced().await;
    pods.synced().await;
    let c = ctrl.clone();
    let workers = ctrl
        .queue
        .run(ctx.config.workers, "deployment", move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    futures::join!(d_feed, rs_feed, pod_feed, workers);
}

impl DeploymentController {
    /// The Deployment a controller reference points at, if cached with that uid.
    fn owner(&self, meta: &ObjectMeta) -> Option<Arc<Deployment>> {
        controller_ref::resolve(&self.deployments, meta)
    }

    /// Deployments whose selector matches an orphan ReplicaSet.
    fn matching(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        controller_ref::selecting(&self.deployments, ns, rs.metadata.labels.as_ref(), |d| {
            d.spec.as_ref().map(|s| &s.selector)
        })
    }

    fn on_replicaset(&self, c: Change<ReplicaSet>) {
        let (old, new) = match c {
            Change::Applied { old, new } => (old, new),
            Change::Deleted(rs) => {
                if let Some(d) = self.owner(&rs.metadata) {
                    self.queue.add(object_key(d.as_ref()));
                }
                return;
            }
        };
        if let Some(old) = &old {
            let old_ref = controller_of(&old.metadata).map(|r| r.uid.clone());
            let new_ref = controller_of(&new.metadata).map(|r| r.uid.clone());
            if old_ref != new_ref
                && let Some(d) = self.owner(&old.metadata)
            {
                self.queue.add(object_key(d.as_ref()));
            }
        }
        if let Some(d) = self.owner(&new.metadata) {
            self.queue.add(object_key(d.as_ref()));
            return;
        }
        // An orphan: the Deployments that select it may adopt it.
        if controller_of(&new.metadata).is_none() {
            for d in self.matching(&new) {
                self.queue.add(object_key(d.as_ref()));
            }
        }
    }

    /// A Recreate rollout waits for old pods to be gone: their deletion matters.
    fn on_pod_deleted(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref();
        let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let Some(rs) = self.replicasets.get(ns, &r.name) else {
            return;
        };
        if let Some(d) = self.owner(&rs.metadata)
            && !util::is_rolling(&d)
        {
            self.queue.add(object_key(d.as_ref()));
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, DeploymentError> {
        let (ns, name) = split_key(key);
        let Some(d) = self.deployments.get(ns, name) else {
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let mut r = Rollout {
            ctrl: self,
            d: (*d).clone(),
            deployments: Api::namespaced(self.client.clone(), ns),
            replicasets: Api::namespaced(self.client.clone(), ns),
            now: self.clock.now(),
        };
        let spec = d.spec.clone().unwrap_or_default();
        let selector = match pod_util::selector(Some(&spec.selector)) {
            Ok(s) if !s.is_empty() => s,
            _ => {
                self.recorder.warning(
                    d.as_ref(),
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                );
                let status = r.d.status.get_or_insert_with(Default::default);
                if status.observed_generation < d.metadata.generation {
                    status.observed_generation = d.metadata.generation;
                    r.update_status().await?;
                }
                return Ok(None);
            }
        };
        let mut rs_list = self.claim_replicasets(&d, &selector).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new, old) = r.all_replica_sets(&mut rs_list, false).await?;
            r.sync_status(&sync::all_of(&old, new.as_ref()), new.as_ref())
                .await?;
            return Ok(None);
        }
        r.check_paused_conditions().await?;
        if util::is_paused(&r.d) || r.is_scaling_event(&mut rs_list).await? {
            tracing::debug!(
                "deployment {key}: scaling (paused: {}, replicas: {})",
                util::is_paused(&r.d),
                util::replicas(&r.d)
            );
            return self.sync_scaling(&mut r, &mut rs_list).await;
        }
        if util::is_rolling(&r.d) {
            r.rollout_rolling(&mut rs_list).await
        } else {
            let pods = self.pods_by_replicaset(&d, &selector, &rs_list);
            r.rollout_recreate(&mut rs_list, &pods).await
        }
    }

    /// A paused Deployment or a change of size: scale, clean up when paused, report.
    async fn sync_scaling(
        &self,
        r: &mut Rollout<'_>,
        rs_list: &mut Vec<ReplicaSet>,
    ) -> Result<Option<Duration>, DeploymentError> {
        let (new, old) = r.all_replica_sets(rs_list, false).await?;
        r.scale(new.as_ref(), &old).await?;
        if util::is_paused(&r.d) {
            r.cleanup(&old).await?;
        }
        // Report from what the cache has now (the scaling writes come back as events).
        let ns = r.d.metadata.namespace.clone().unwrap_or_default();
        let fresh = |rs: &ReplicaSet| {
            self.replicasets
                .get(Some(&ns), rs.metadata.name.as_deref().unwrap_or_default())
                .map(|a| (*a).clone())
                .unwrap_or_else(|| rs.clone())
        };
        let old: Vec<ReplicaSet> = old.iter().map(fresh).collect();
        let new = new.as_ref().map(fresh);
        r.sync_status(&sync::all_of(&old, new.as_ref()), new.as_ref())
            .await?;
        Ok(None)
    }

    /// The Deployment's ReplicaSets, adopting matching orphans and releasing owned
    /// ones that stopped matching.
    async fn claim_replicasets(
        &self,
        d: &Deployment,
        selector: &rkube_api::selector::LabelSelector,
    ) -> Result<Vec<ReplicaSet>, DeploymentError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let mut owned = Vec::new();
        let mut can_adopt = None;
        for rs in self.replicasets.list_namespace(&ns) {
            let matches = pod_util::matches(selector, rs.metadata.labels.as_ref());
            match controller_ref::classify(&uid, deleting, matches, &rs.metadata) {
                Claim::Owned => owned.push((*rs).clone()),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        let fresh: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                        let f = fresh
                            .get_opt(d.metadata.name.as_deref().unwrap_or_default())
                            .await?;
                        can_adopt = Some(f.is_some_and(|f| {
                            f.metadata.uid == d.metadata.uid
                                && f.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if can_adopt == Some(true) {
                        match controller_ref::adopt(&api, &rs, controller_ref::controller_ref(d))
                            .await
                        {
                            Ok(r) => owned.push(r),
                            Err(kube::Error::Api(e)) if e.code == 404 => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Claim::Release => match controller_ref::release(&api, &rs, &uid).await {
                    Ok(_) => {}
                    Err(e) if crate::api_error::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Ok(owned)
    }

    /// The Deployment's pods by the uid of the ReplicaSet that controls them.
    fn pods_by_replicaset(
        &self,
        d: &Deployment,
        selector: &rkube_api::selector::LabelSelector,
        rs_list: &[ReplicaSet],
    ) -> HashMap<String, Vec<Arc<Pod>>> {
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        rs_list
            .iter()
            .map(|r| {
                let uid = r.metadata.uid.clone().unwrap_or_default();
                let pods = self
                    .pods
                    .list_controlled_by(&uid)
                    .into_iter()
                    .filter(|p| {
                        p.metadata.namespace.as_deref() == Some(ns)
                            && pod_util::matches(selector, p.metadata.labels.as_ref())
                    })
                    .collect();
                (uid, pods)
            })
            .collect()
    }
}
