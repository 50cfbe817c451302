//! The Recreate strategy: scale every old ReplicaSet to zero, wait until none of
//! their pods is left running, then bring the new ReplicaSet up to size.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::DeploymentError;
use super::sync::{Rollout, all_of, refs};
use super::util::*;
use crate::pod_util;

impl Rollout<'_> {
    pub async fn rollout_recreate(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        pods_by_rs: &HashMap<String, Vec<Arc<Pod>>>,
    ) -> Result<Option<Duration>, DeploymentError> {
        let (new, old) = self.all_replica_sets(rs_list, false).await?;
        let mut scaled_down = false;
        for rs in old.iter().filter(|r| is_active(r)) {
            let (scaled, _) = self.scale_rs(rs, 0).await?;
            scaled_down |= scaled;
        }
        if scaled_down {
            return self
                .sync_rollout_status(&all_of(&old, new.as_ref()), new.as_ref())
                .await;
        }
        if old_pods_running(new.as_ref(), &old, pods_by_rs) {
            return self
                .sync_rollout_status(&all_of(&old, new.as_ref()), new.as_ref())
                .await;
        }
        let (new, old) = match new {
            Some(n) => (n, old),
            None => {
                let (n, o) = self.all_replica_sets(rs_list, true).await?;
                match n {
                    Some(n) => (n, o),
                    None => return Ok(None),
                }
            }
        };
        let want = replicas(&self.d);
        let (_, new) = self.scale_rs(&new, want).await?;
        if let Some(s) = self.d.status.clone()
            && deployment_complete(&self.d, &s)
        {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all_of(&old, Some(&new)), Some(&new))
            .await
    }
}

/// Whether an old ReplicaSet still has pods (counted, or in the cache and not
/// terminated).
fn old_pods_running(
    new: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    pods_by_rs: &HashMap<String, Vec<Arc<Pod>>>,
) -> bool {
    if actual_count(&refs(old)) > 0 {
        return true;
    }
    let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
    pods_by_rs.iter().any(|(uid, pods)| {
        Some(uid.as_str()) != new_uid
            && pods
                .iter()
                .any(|p| !matches!(pod_util::phase(p), "Failed" | "Succeeded"))
    })
}
