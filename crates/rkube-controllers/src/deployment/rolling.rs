//! The RollingUpdate strategy: grow the new ReplicaSet within maxSurge, shrink the
//! old ones while at least `replicas - maxUnavailable` pods stay available.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::DeploymentError;
use super::sync::{Rollout, all_of, refs};
use super::util::*;

impl Rollout<'_> {
    pub async fn rollout_rolling(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
    ) -> Result<Option<Duration>, DeploymentError> {
        let (new, old) = self.all_replica_sets(rs_list, true).await?;
        let Some(new) = new else {
            return Ok(None);
        };
        let all = all_of(&old, Some(&new));
        let (scaled_up, new) = self.reconcile_new(&all, new).await?;
        if scaled_up {
            return self
                .sync_rollout_status(&all_of(&old, Some(&new)), Some(&new))
                .await;
        }
        let active_old: Vec<ReplicaSet> = old.iter().filter(|r| is_active(r)).cloned().collect();
        let (scaled_down, active_old) = self.reconcile_old(&all, active_old, &new).await?;
        let old: Vec<ReplicaSet> = old
            .into_iter()
            .map(|r| {
                active_old
                    .iter()
                    .find(|a| a.metadata.uid == r.metadata.uid)
                    .cloned()
                    .unwrap_or(r)
            })
            .collect();
        if scaled_down {
            return self
                .sync_rollout_status(&all_of(&old, Some(&new)), Some(&new))
                .await;
        }
        if let Some(s) = self.d.status.clone()
            && deployment_complete(&self.d, &s)
        {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all_of(&old, Some(&new)), Some(&new))
            .await
    }

    async fn reconcile_new(
        &mut self,
        all: &[ReplicaSet],
        new: ReplicaSet,
    ) -> Result<(bool, ReplicaSet), DeploymentError> {
        let want = replicas(&self.d);
        let have = rs_replicas(&new);
        if have == want {
            return Ok((false, new));
        }
        if have > want {
            return self.scale_rs(&new, want).await;
        }
        let count = new_rs_new_replicas(&self.d, &refs(all), &new);
        self.scale_rs(&new, count).await
    }

    /// Shrinks old ReplicaSets: first their unavailable pods, then available ones as
    /// far as the availability floor allows.
    async fn reconcile_old(
        &mut self,
        all: &[ReplicaSet],
        old: Vec<ReplicaSet>,
        new: &ReplicaSet,
    ) -> Result<(bool, Vec<ReplicaSet>), DeploymentError> {
        if replica_count(&refs(&old)) == 0 {
            return Ok((false, old));
        }
        let all_pods = replica_count(&refs(all));
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - rs_available_kept(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok((false, old));
        }
        let (old, cleaned) = self.cleanup_unhealthy(old, max_scaled_down).await?;
        let all = all_of(&old, Some(new));
        let (old, scaled) = self.scale_down_old(&all, old).await?;
        Ok((cleaned + scaled > 0, old))
    }

    async fn cleanup_unhealthy(
        &mut self,
        mut old: Vec<ReplicaSet>,
        max_cleanup: i32,
    ) -> Result<(Vec<ReplicaSet>, i32), DeploymentError> {
        sort_owned_by_creation(&mut old);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let (want, available) = (rs_replicas(rs), rs_available(rs));
            // Nothing unhealthy (a status still counting pods of a larger size
            // included): never a reason to grow.
            if want == 0 || available >= want {
                continue;
            }
            let down = (max_cleanup - total).min(want - available);
            let (_, updated) = self.scale_rs(rs, want - down).await?;
            *rs = updated;
            total += down;
        }
        Ok((old, total))
    }

    async fn scale_down_old(
        &mut self,
        all: &[ReplicaSet],
        mut old: Vec<ReplicaSet>,
    ) -> Result<(Vec<ReplicaSet>, i32), DeploymentError> {
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        // Counted as the ReplicaSets will be, not as their last status says: pods
        // above a ReplicaSet's size are going away.
        let available: i32 = all.iter().map(rs_available_kept).sum();
        if available <= min_available {
            return Ok((old, 0));
        }
        sort_owned_by_creation(&mut old);
        let budget = available - min_available;
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= budget {
                break;
            }
            let want = rs_replicas(rs);
            if want == 0 {
                continue;
            }
            let down = want.min(budget - total);
            let (_, updated) = self.scale_rs(rs, want - down).await?;
            *rs = updated;
            total += down;
        }
        Ok((old, total))
    }
}

pub(super) fn sort_owned_by_creation(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.clone(),
            a.metadata.name.clone(),
        )
            .cmp(&(
                b.metadata.creation_timestamp.clone(),
                b.metadata.name.clone(),
            ))
    });
}
