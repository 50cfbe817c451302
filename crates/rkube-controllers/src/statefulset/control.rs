//! One pass over a StatefulSet's pods, in upstream's order: replace failed pods and
//! create missing ones (with their claims) from the lowest ordinal up, then remove
//! condemned ordinals from the highest down, then roll the update out from the
//! highest ordinal down to the partition. In OrderedReady mode each step waits for
//! what came before it to be Running and Ready; in Parallel mode nothing waits
//! but the rolling update.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::identity::*;
use super::{StatefulSetController, StatefulSetError};
use crate::controller_ref::patch_metadata_field;
use crate::history;
use crate::pod_util;

/// Whether a step lets the pass go on or makes it stop (OrderedReady waiting).
enum Step {
    Continue,
    Exit,
}

pub(super) struct SetSync<'a> {
    ctrl: &'a StatefulSetController,
    set: &'a StatefulSet,
    /// The set with the current revision's template.
    current_set: StatefulSet,
    current_rev: String,
    update_rev: String,
    pods_api: Api<Pod>,
    claims_api: Api<PersistentVolumeClaim>,
    now: Timestamp,
    monotonic: bool,
    min_ready: i32,
    pub status: StatefulSetStatus,
    requeue: Option<Duration>,
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

impl<'a> SetSync<'a> {
    pub fn new(
        ctrl: &'a StatefulSetController,
        set: &'a StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        pods: &[Arc<Pod>],
    ) -> Self {
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let mut current_set = set.clone();
        if let (Some(t), Some(s)) = (history::template_of(current), current_set.spec.as_mut()) {
            s.template = t;
        }
        let current_rev = current.metadata.name.clone().unwrap_or_default();
        let update_rev = update.metadata.name.clone().unwrap_or_default();
        let now = ctrl.clock.now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let mut status = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            current_revision: Some(current_rev.clone()),
            update_revision: Some(update_rev.clone()),
            collision_count: set.status.as_ref().and_then(|s| s.collision_count),
            conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
            ..Default::default()
        };
        let (mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0);
        for p in pods {
            if is_created(p) && !is_terminating(p) {
                status.replicas += 1;
                if pod_revision(p) == current_rev {
                    cur += 1;
                }
                if pod_revision(p) == update_rev {
                    upd += 1;
                }
            }
            if is_running_and_ready(p) {
                ready += 1;
                if is_running_and_available(p, min_ready, now) {
                    available += 1;
                }
            }
        }
        status.ready_replicas = Some(ready);
        status.available_replicas = Some(available);
        status.current_replicas = Some(cur);
        status.updated_replicas = Some(upd);
        SetSync {
            ctrl,
            set,
            current_set,
            current_rev,
            update_rev,
            pods_api: Api::namespaced(ctrl.client.clone(), &ns),
            claims_api: Api::namespaced(ctrl.client.clone(), &ns),
            now,
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            min_ready,
            status,
            requeue: None,
        }
    }

    fn set_name(&self) -> &str {
        self.set.metadata.name.as_deref().unwrap_or_default()
    }

    fn on_delete(&self) -> bool {
        self.set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete")
    }

    fn partition(&self) -> i32 {
        self.set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
    }

    /// The status to write, with a finished rolling update made current, and when
    /// to look again.
    pub fn finish(mut self) -> (StatefulSetStatus, Option<Duration>) {
        let on_delete = self.on_delete();
        let s = &mut self.status;
        let replicas = s.replicas;
        if !on_delete && s.updated_replicas == Some(replicas) && s.ready_replicas == Some(replicas)
        {
            s.current_replicas = s.updated_replicas;
            s.current_revision = s.update_revision.clone();
        }
        (self.status, self.requeue)
    }

    /// Counts a pod that appears (`+1`) or goes (`-1`) in the status.
    fn count(&mut self, pod: &Pod, by: i32) {
        self.status.replicas += by;
        let rev = pod_revision(pod);
        if rev == self.current_rev {
            *self.status.current_replicas.get_or_insert(0) += by;
        }
        if rev == self.update_rev {
            *self.status.updated_replicas.get_or_insert(0) += by;
        }
    }

    /// A new pod of `ordinal`: from the current revision below the partition, from
    /// the update revision otherwise.
    fn versioned_pod(&self, ordinal: i32) -> Pod {
        let start = start_ordinal(self.set);
        if !self.on_delete() && ordinal < start + self.partition() {
            new_pod(&self.current_set, ordinal, &self.current_rev)
        } else {
            new_pod(self.set, ordinal, &self.update_rev)
        }
    }

    fn pod_event(&self, verb: &str, pod: &Pod, err: Option<&kube::Error>) {
        let (name, set) = (name_of(pod), self.set_name());
        let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
        match err {
            None => self.ctrl.recorder.normal(
                self.set,
                &format!("Successful{title}"),
                format!("{verb} Pod {name} in StatefulSet {set} successful"),
            ),
            Some(e) => self.ctrl.recorder.warning(
                self.set,
                &format!("Failed{title}"),
                format!(
                    "{verb} Pod {name} in StatefulSet {set} failed error: {}",
                    crate::api_error::message(e)
                ),
            ),
        }
    }

    async fn delete_pod(&mut self, pod: &Pod) -> Result<(), StatefulSetError> {
        match self
            .pods_api
            .delete(&name_of(pod), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.pod_event("delete", pod, None);
                self.count(pod, -1);
                Ok(())
            }
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => {
                self.pod_event("delete", pod, Some(&e));
                Err(e.into())
            }
        }
    }

    /// Creates the claims the pod of `ordinal` is missing.
    async fn create_claims(&self, pod: &Pod, ordinal: i32) -> Result<(), StatefulSetError> {
        let ns = self.set.metadata.namespace.as_deref();
        for (_, mut claim) in claims(self.set, ordinal) {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            if let Some(existing) = self.ctrl.claims.get(ns, &cname) {
                if existing.metadata.deletion_timestamp.is_some() {
                    return Err(StatefulSetError::ClaimDeleting(cname));
                }
                continue;
            }
            if let Some(refs) = claim_owner_refs(self.set, &claim, pod, false) {
                claim.metadata.owner_references = Some(refs);
            }
            let (set, pname) = (self.set_name(), name_of(pod));
            match self.claims_api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.ctrl.recorder.normal(
                    self.set,
                    "SuccessfulCreate",
                    format!("create Claim {cname} Pod {pname} in StatefulSet {set} success"),
                ),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    self.ctrl.recorder.warning(
                        self.set,
                        "FailedCreate",
                        format!(
                            "create Claim {cname} for Pod {pname} in StatefulSet {set} failed error: {}",
                            crate::api_error::message(&e)
                        ),
                    );
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn create_pod(&mut self, pod: &Pod, ordinal: i32) -> Result<(), StatefulSetError> {
        if let Err(e) = self.create_claims(pod, ordinal).await {
            if let StatefulSetError::ClaimDeleting(c) = &e {
                self.ctrl.recorder.warning(
                    self.set,
                    "FailedCreate",
                    format!(
                        "create Pod {} in StatefulSet {} failed error: pvc {c} is being deleted",
                        name_of(pod),
                        self.set_name()
                    ),
                );
            }
            return Err(e);
        }
        match self.pods_api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.pod_event("create", pod, None);
                self.count(pod, 1);
                Ok(())
            }
            // The cache has not seen it yet: its event brings the set back.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => {
                self.pod_event("create", pod, Some(&e));
                Err(e.into())
            }
        }
    }

    /// Brings the owner references of the pod's claims in line with the policy.
    async fn retain_claims(&self, pod: &Pod, condemned: bool) -> Result<(), StatefulSetError> {
        let Some(ord) = ordinal(pod) else {
            return Ok(());
        };
        let ns = self.set.metadata.namespace.as_deref();
        for (_, want) in claims(self.set, ord) {
            let cname = want.metadata.name.clone().unwrap_or_default();
            let Some(claim) = self.ctrl.claims.get(ns, &cname) else {
                continue;
            };
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(refs) = claim_owner_refs(self.set, &claim, pod, condemned) {
                match patch_metadata_field(
                    &self.claims_api,
                    &claim.metadata,
                    "ownerReferences",
                    json!(refs),
                )
                .await
                {
                    Ok(_) => {}
                    Err(e) if matches!(crate::api_error::code(&e), Some(404 | 409 | 422)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Waits (in OrderedReady mode) until a pod that became ready is available.
    fn wait_available(&mut self) {
        if self.min_ready > 0 {
            self.requeue = Some(Duration::from_secs(self.min_ready as u64));
        }
    }

    async fn process_replica(&mut self, pod: &mut Pod, ord: i32) -> Result<Step, StatefulSetError> {
        let exit = if self.monotonic {
            Step::Exit
        } else {
            Step::Continue
        };
        if is_created(pod) && matches!(pod_util::phase(pod), "Failed" | "Succeeded") {
            let (set, ns, pname) = (
                self.set_name().to_string(),
                self.set.metadata.namespace.clone().unwrap_or_default(),
                name_of(pod),
            );
            if pod_util::phase(pod) == "Failed" {
                self.ctrl.recorder.warning(
                    self.set,
                    "RecreatingFailedPod",
                    format!("StatefulSet {ns}/{set} is recreating failed Pod {pname}"),
                );
            } else {
                self.ctrl.recorder.normal(
                    self.set,
                    "RecreatingTerminatedPod",
                    format!("StatefulSet {ns}/{set} is recreating terminated Pod {pname}"),
                );
            }
            if !is_terminating(pod) {
                self.delete_pod(pod).await?;
            }
            // The new pod comes once the old one is gone from the API.
            return Ok(exit);
        }
        if !is_created(pod) {
            self.create_pod(pod, ord).await?;
            return Ok(exit);
        }
        if pod_util::phase(pod) == "Pending" {
            self.create_claims(pod, ord).await?;
        }
        if is_terminating(pod) {
            tracing::debug!(
                "statefulset {}: waiting for {} to terminate",
                self.set_name(),
                name_of(pod)
            );
            return Ok(exit);
        }
        if !is_running_and_ready(pod) && self.monotonic {
            return Ok(Step::Exit);
        }
        if !is_running_and_available(pod, self.min_ready, self.now) && self.monotonic {
            self.wait_available();
            return Ok(Step::Exit);
        }
        let missing = missing_identity(self.set, pod);
        if !missing.is_empty() {
            let patch = json!({"metadata": {"labels": missing}});
            let r = self
                .pods_api
                .patch(
                    &name_of(pod),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            self.pod_event("update", pod, r.as_ref().err());
            if let Err(e) = r
                && !crate::api_error::is_not_found(&e)
            {
                return Err(e.into());
            }
        }
        self.retain_claims(pod, false).await?;
        Ok(Step::Continue)
    }

    async fn process_condemned(
        &mut self,
        pod: &Pod,
        first_unhealthy: Option<&str>,
    ) -> Result<Step, StatefulSetError> {
        if is_terminating(pod) {
            return Ok(if self.monotonic {
                Step::Exit
            } else {
                Step::Continue
            });
        }
        let is_first_unhealthy = first_unhealthy == pod.metadata.name.as_deref();
        if self.monotonic && !is_first_unhealthy {
            if !is_running_and_ready(pod) {
                return Ok(Step::Exit);
            }
            if !is_running_and_available(pod, self.min_ready, self.now) {
                self.wait_available();
                return Ok(Step::Exit);
            }
        }
        self.retain_claims(pod, true).await?;
        self.delete_pod(pod).await?;
        Ok(if self.monotonic {
            Step::Exit
        } else {
            Step::Continue
        })
    }

    /// The pass itself; the status is kept up to date as pods come and go.
    pub async fn run(&mut self, pods: &[Arc<Pod>]) -> Result<(), StatefulSetError> {
        let start = start_ordinal(self.set);
        let n = replicas(self.set);
        let mut slots: Vec<Option<Pod>> = vec![None; n as usize];
        let mut condemned: Vec<Pod> = Vec::new();
        for p in pods {
            match ordinal(p) {
                Some(o) if o >= start && o < start + n => {
                    slots[(o - start) as usize] = Some((**p).clone())
                }
                Some(_) => condemned.push((**p).clone()),
                None => {}
            }
        }
        let mut replicas: Vec<Pod> = slots
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.unwrap_or_else(|| self.versioned_pod(start + i as i32)))
            .collect();
        // Highest ordinal first.
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        let first_unhealthy: Option<String> = replicas
            .iter()
            .chain(condemned.iter().rev())
            .find(|p| !is_healthy(p))
            .and_then(|p| p.metadata.name.clone());
        if self.set.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        for (i, pod) in replicas.iter_mut().enumerate() {
            if let Step::Exit = self.process_replica(pod, start + i as i32).await? {
                return Ok(());
            }
        }
        for pod in &condemned {
            if let Step::Exit = self
                .process_condemned(pod, first_unhealthy.as_deref())
                .await?
            {
                return Ok(());
            }
        }
        if self.on_delete() {
            return Ok(());
        }
        // The rolling update: the highest ordinal not at the update revision goes
        // first, each only once the ones above it are healthy again.
        let min = self.partition().max(0) as usize;
        for target in (min..replicas.len()).rev() {
            let pod = &replicas[target];
            if pod_revision(pod) != self.update_rev && !is_terminating(pod) {
                let pod = pod.clone();
                self.delete_pod(&pod).await?;
                return Ok(());
            }
            if !is_healthy(pod) {
                return Ok(());
            }
        }
        Ok(())
    }
}
