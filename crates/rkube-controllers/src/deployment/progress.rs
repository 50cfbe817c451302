//! The rollout status: counts, the Available condition, and the Progressing
//! condition with its deadline (NewReplicaSetAvailable, ReplicaSetUpdated,
//! ProgressDeadlineExceeded), plus ReplicaFailure carried over from ReplicaSets.

use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSet};

use super::DeploymentError;
use super::sync::Rollout;
use super::util::*;

impl Rollout<'_> {
    /// Writes the rollout status; returns when to look again if the rollout may
    /// time out.
    pub async fn sync_rollout_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<Option<Duration>, DeploymentError> {
        let mut status = self.calculate_status(all, new);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let old_status = self.d.status.clone().unwrap_or_default();
        let current = condition(&old_status, "Progressing").cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        let rs_name = |verb: &str| match new {
            Some(rs) => format!(
                "ReplicaSet {:?} {verb}",
                rs.metadata.name.as_deref().unwrap_or_default()
            ),
            None => format!(
                "Deployment {:?} {verb}",
                self.d.metadata.name.as_deref().unwrap_or_default()
            ),
        };
        if deadline.is_some() && !complete_before {
            if deployment_complete(&self.d, &status) {
                let c = new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    rs_name("has successfully progressed."),
                    self.now,
                );
                set_condition(&mut status, c);
            } else if deployment_progressing(&self.d, &status) {
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    RS_UPDATED,
                    rs_name("is progressing."),
                    self.now,
                );
                // Progress refreshes lastUpdateTime even with the same reason.
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, "Progressing");
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, self.now) {
                let c = new_condition(
                    "Progressing",
                    "False",
                    TIMED_OUT,
                    rs_name("has timed out progressing."),
                    self.now,
                );
                set_condition(&mut status, c);
            }
        }
        match replica_failure(all, new) {
            Some(c) => set_condition(&mut status, c),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        if self.d.status.as_ref() == Some(&status) {
            return Ok(self.requeue_stuck(&status));
        }
        self.d.status = Some(status);
        self.update_status().await?;
        Ok(None)
    }

    /// When a rollout that is neither complete nor timed out should be looked at
    /// again to check its deadline.
    fn requeue_stuck(
        &self,
        status: &k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Option<Duration> {
        let deadline = progress_deadline(&self.d)?;
        let cur = condition(self.d.status.as_ref()?, "Progressing")?;
        if deployment_complete(&self.d, status) || cur.reason.as_deref() == Some(TIMED_OUT) {
            return None;
        }
        let from = cur.last_update_time.as_ref()?.0;
        let until = from
            .checked_add(SignedDuration::from_secs(i64::from(deadline)))
            .ok()?;
        let after = until.duration_since(self.now);
        let after = Duration::try_from(after).unwrap_or_default();
        Some(after.max(Duration::from_millis(200)))
    }
}

/// A ReplicaFailure condition of the new ReplicaSet (else of any), as the
/// Deployment's.
fn replica_failure(all: &[ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failing = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure")
            .cloned()
    };
    let c = new
        .and_then(failing)
        .or_else(|| all.iter().find_map(failing))?;
    Some(DeploymentCondition {
        type_: "ReplicaFailure".into(),
        status: c.status,
        reason: c.reason,
        message: c.message,
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time,
    })
}
