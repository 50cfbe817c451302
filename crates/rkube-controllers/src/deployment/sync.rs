//! One sync of one Deployment: finding (or creating) the new ReplicaSet and syncing
//! revisions, scaling, cleaning up old revisions, and writing the status.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::DeploymentController;
use super::DeploymentError;
use super::hash::{POD_TEMPLATE_HASH, compute_hash};
use super::util::*;
use crate::controller_ref;

/// The state of one sync: the Deployment as last written, and the APIs.
pub(super) struct Rollout<'a> {
    pub ctrl: &'a DeploymentController,
    pub d: Deployment,
    pub deployments: Api<Deployment>,
    pub replicasets: Api<ReplicaSet>,
    pub now: Timestamp,
}

fn uid(rs: &ReplicaSet) -> &str {
    rs.metadata.uid.as_deref().unwrap_or_default()
}

pub(super) fn refs(rss: &[ReplicaSet]) -> Vec<&ReplicaSet> {
    rss.iter().collect()
}

/// Old and new together, the new one last.
pub(super) fn all_of(old: &[ReplicaSet], new: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    old.iter().cloned().chain(new.cloned()).collect()
}

impl Rollout<'_> {
    fn name(&self) -> String {
        self.d.metadata.name.clone().unwrap_or_default()
    }

    /// Writes `self.d.status`.
    pub async fn update_status(&mut self) -> Result<(), DeploymentError> {
        self.d = self
            .deployments
            .replace_status(&self.name(), &PostParams::default(), &self.d)
            .await?;
        Ok(())
    }

    /// Records the revision on the Deployment (a metadata write: status writes do
    /// not carry annotations), keeping the status computed so far.
    async fn write_revision(&mut self, revision: &str) -> Result<(), DeploymentError> {
        let status = self.d.status.clone();
        let patch = json!({"metadata": {
            "annotations": {REVISION: revision},
            "resourceVersion": self.d.metadata.resource_version,
        }});
        let mut d = self
            .deployments
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        d.status = status;
        self.d = d;
        Ok(())
    }

    /// The new ReplicaSet (created when `create` and missing) and the old ones,
    /// with revisions brought up to date.
    /// What it writes to the new ReplicaSet is kept in `rs_list`.
    pub async fn all_replica_sets(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), DeploymentError> {
        let list = refs(rs_list);
        let existing = find_new_rs(&self.d, &list).cloned();
        let old: Vec<ReplicaSet> = rs_list
            .iter()
            .filter(|r| existing.as_ref().is_none_or(|e| uid(e) != uid(r)))
            .cloned()
            .collect();
        let new = self.new_replica_set(existing, &old, create).await?;
        if let Some(n) = &new {
            match rs_list.iter_mut().find(|r| uid(r) == uid(n)) {
                Some(r) => *r = n.clone(),
                None => rs_list.push(n.clone()),
            }
        }
        Ok((new, old))
    }

    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, DeploymentError> {
        let new_revision = max_revision(&refs(old)) + 1;
        if let Some(rs) = existing {
            let mut copy = rs.clone();
            let annotations_changed =
                set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = min_ready_seconds(&self.d);
            let spec = copy.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready;
            if annotations_changed || min_ready_changed {
                spec.min_ready_seconds = Some(min_ready);
                let name = copy.metadata.name.clone().unwrap_or_default();
                let updated = self
                    .replicasets
                    .replace(&name, &PostParams::default(), &copy)
                    .await?;
                return Ok(Some(updated));
            }
            let rev = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            let mut status_changed = false;
            let has_deadline = progress_deadline(&self.d).is_some();
            let status = self.d.status.get_or_insert_with(Default::default);
            if has_deadline && condition(status, "Progressing").is_none() {
                let msg = format!(
                    "Found new replica set {:?}",
                    copy.metadata.name.as_deref().unwrap_or_default()
                );
                set_condition(
                    status,
                    new_condition("Progressing", "True", FOUND_NEW_RS, msg, self.now),
                );
                status_changed = true;
            }
            let mut probe = self.d.clone();
            if set_deployment_revision(&mut probe, &rev) {
                self.write_revision(&rev).await?;
            }
            if status_changed {
                self.update_status().await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let d = &self.d;
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let template_value = serde_json::to_value(&spec.template).unwrap_or_default();
        let hash = compute_hash(&template_value, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.name());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref::controller_ref(d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(spec.min_ready_seconds.unwrap_or(0)),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&rs)).collect();
        let count = new_rs_new_replicas(d, &all, &rs);
        rs.spec.as_mut().expect("spec").replicas = Some(count);
        set_new_rs_annotations(d, &mut rs, new_revision, false);
        let mut already_exists = false;
        let created = match self.replicasets.create(&PostParams::default(), &rs).await {
            Ok(r) => r,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                already_exists = true;
                // A slow cache, or a hash collision.
                let found = self.replicasets.get(&name).await?;
                let ours = controller_ref::controller_of(&found.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = super::hash::equal_ignore_hash(
                    &template_value,
                    &serde_json::to_value(found.spec.as_ref().and_then(|s| s.template.as_ref()))
                        .unwrap_or_default(),
                );
                if !(ours && same) {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.update_status().await?;
                    return Err(DeploymentError::HashCollision(name));
                }
                found
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {name:?}: {}",
                    crate::api_error::message(&e)
                );
                if progress_deadline(&self.d).is_some() {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    set_condition(
                        status,
                        new_condition(
                            "Progressing",
                            "False",
                            FAILED_RS_CREATE,
                            msg.clone(),
                            self.now,
                        ),
                    );
                    let _ = self.update_status().await;
                }
                self.ctrl.recorder.warning(&self.d, FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        if !already_exists && count > 0 {
            self.ctrl.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {count}"),
            );
        }
        let rev = new_revision.to_string();
        let mut probe = self.d.clone();
        if set_deployment_revision(&mut probe, &rev) {
            self.write_revision(&rev).await?;
        }
        if !already_exists && progress_deadline(&self.d).is_some() {
            let status = self.d.status.get_or_insert_with(Default::default);
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_CREATED,
                    format!("Created new replica set {name:?}"),
                    self.now,
                ),
            );
            self.update_status().await?;
        }
        Ok(Some(created))
    }

    /// Sets a ReplicaSet's size (and replica annotations); records a
    /// `ScalingReplicaSet` event when the size changes. Returns whether it wrote.
    pub async fn scale_rs(
        &mut self,
        rs: &ReplicaSet,
        to: i32,
    ) -> Result<(bool, ReplicaSet), DeploymentError> {
        let from = rs_replicas(rs);
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let size_changes = from != to;
        if !size_changes && !replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(to);
        set_replicas_annotations(&mut copy, desired, max);
        let name = copy.metadata.name.clone().unwrap_or_default();
        let updated = self
            .replicasets
            .replace(&name, &PostParams::default(), &copy)
            .await?;
        if size_changes {
            let op = if to > from { "up" } else { "down" };
            self.ctrl.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {from} to {to}"),
            );
        }
        Ok((true, updated))
    }

    /// Scaling without a rollout: the Deployment's size changed, or it is paused.
    /// Returns the ReplicaSets as they are after scaling.
    pub async fn scale(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), DeploymentError> {
        let want = replicas(&self.d);
        let old_refs = refs(old);
        if let Some(rs) = find_active_or_latest(new, &old_refs).cloned() {
            if rs_replicas(&rs) != want {
                self.scale_rs(&rs, want).await?;
            }
            return Ok(());
        }
        if is_saturated(&self.d, new) {
            for rs in old.iter().filter(|r| is_active(r)) {
                self.scale_rs(rs, 0).await?;
            }
            return Ok(());
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        // Several active ReplicaSets: spread the change in proportion to their sizes.
        let mut all: Vec<ReplicaSet> = all_of(old, new).into_iter().filter(is_active).collect();
        let total = replica_count(&refs(&all));
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        all.sort_by(|a, b| {
            let by_size = rs_replicas(b).cmp(&rs_replicas(a));
            let by_age = a
                .metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp);
            by_size.then(if to_add > 0 { by_age.reverse() } else { by_age })
        });
        let mut sizes: HashMap<String, i32> = HashMap::new();
        let mut added = 0;
        for rs in &all {
            let p = if to_add != 0 {
                proportion(rs, &self.d, to_add, added)
            } else {
                0
            };
            sizes.insert(uid(rs).to_string(), rs_replicas(rs) + p);
            added += p;
        }
        for (i, rs) in all.iter().enumerate() {
            let mut size = sizes[uid(rs)];
            if i == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(rs, size).await?;
        }
        Ok(())
    }

    /// Deletes the oldest ReplicaSets beyond `revisionHistoryLimit` (only those with
    /// no pods and fully observed).
    pub async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), DeploymentError> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut alive: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = alive.len() as i64 - i64::from(limit.max(0));
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision(a).cmp(&revision(b)).then(
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp),
            )
        });
        for rs in alive.into_iter().take(diff as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_actual(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            tracing::debug!(
                "deployment {}: deleting old replica set {name}",
                self.name()
            );
            match self
                .replicasets
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The status the ReplicaSets give the Deployment (conditions but Progressing).
    pub fn calculate_status(
        &self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> DeploymentStatus {
        let all = refs(all);
        let available = available_count(&all);
        let total = replica_count(&all);
        let mut status = self.d.status.clone().unwrap_or_default();
        status.observed_generation = self.d.metadata.generation;
        status.replicas = Some(actual_count(&all));
        status.updated_replicas = Some(new.map(rs_actual).unwrap_or(0));
        status.ready_replicas = Some(ready_count(&all));
        status.available_replicas = Some(available);
        status.unavailable_replicas = Some((total - available).max(0));
        let c = if available >= replicas(&self.d) - max_unavailable(&self.d) {
            new_condition(
                "Available",
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                "Available",
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// Writes the status if it changed (paused and scaling syncs).
    pub async fn sync_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), DeploymentError> {
        let status = self.calculate_status(all, new);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_status().await
    }

    /// Whether some active ReplicaSet was sized for another replica count.
    pub async fn is_scaling_event(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
    ) -> Result<bool, DeploymentError> {
        let (new, old) = self.all_replica_sets(rs_list, false).await?;
        let want = replicas(&self.d);
        Ok(all_of(&old, new.as_ref())
            .iter()
            .filter(|r| is_active(r))
            .any(|r| {
                let scaled = desired_replicas_annotation(r).is_some_and(|d| d != want);
                if scaled {
                    tracing::debug!(
                        "replica set {:?} was sized for {:?} replicas, not {want}",
                        r.metadata.name,
                        desired_replicas_annotation(r)
                    );
                }
                scaled
            }))
    }

    /// The paused/resumed Progressing condition.
    pub async fn check_paused_conditions(&mut self) -> Result<(), DeploymentError> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let status = self.d.status.clone().unwrap_or_default();
        let reason = condition(&status, "Progressing").and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused = is_paused(&self.d);
        let c = if paused && reason.as_deref() != Some(PAUSED) {
            new_condition(
                "Progressing",
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                self.now,
            )
        } else if !paused && reason.as_deref() == Some(PAUSED) {
            new_condition(
                "Progressing",
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                self.now,
            )
        } else {
            return Ok(());
        };
        set_condition(self.d.status.get_or_insert_with(Default::default), c);
        self.update_status().await
    }
}
