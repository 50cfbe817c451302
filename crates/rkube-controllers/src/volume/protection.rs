//! Storage protection: every claim carries `kubernetes.io/pvc-protection` and
//! every volume `kubernetes.io/pv-protection`. A deleted claim keeps its
//! finalizer while a scheduled pod uses it (asked of the API, not only the cache,
//! before letting go); a deleted volume keeps its finalizer while it is Bound.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::volume_phase;
use crate::controller_ref::patch_metadata_field;
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{object_key, split_key};
use crate::queue::WorkQueue;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Errors of the protection controllers.
#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// Adds or removes one finalizer, provided the object is the version seen.
async fn set_finalizer<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    finalizer: &str,
    on: bool,
) -> Result<(), ProtectionError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut list: Vec<String> = meta
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    if on {
        list.push(finalizer.to_string());
    }
    match patch_metadata_field(api, meta, "finalizers", json!(list)).await {
        Ok(_) => Ok(()),
        Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The claims a pod names (directly, or through its ephemeral volumes).
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let pname = pod.metadata.name.clone().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{pname}-{}", v.name))
            }
        })
        .collect()
}

/// Whether a pod holds a claim: only scheduled pods (the kubelet will not start a
/// pod whose claim is being deleted); a pod's ephemeral claim only while it runs.
pub fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.as_deref().is_none_or(str::is_empty) {
        return false;
    }
    let pname = pod.metadata.name.clone().unwrap_or_default();
    let shut_down = matches!(crate::pod_util::phase(pod), "Succeeded" | "Failed");
    spec.volumes.iter().flatten().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == claim)
            || (!shut_down && v.ephemeral.is_some() && format!("{pname}-{}", v.name) == claim)
    })
}

pub fn start_pvc_protection(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run_pvc(ctx))
}

pub fn start_pv_protection(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run_pv(ctx))
}

struct PvcProtection {
    client: Client,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    pods: Arc<Informer<Pod>>,
}

async fn run_pvc(ctx: ControllerContext) {
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let pods = ctx.informers.get::<Pod>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let claim_feed = crate::informer::feed(claims.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } => Some(object_key(new.as_ref())),
        Change::Deleted(_) => None,
    });
    // A pod going away (or finishing) may free the claims it held.
    let pod_feed = crate::informer::feed(pods.subscribe(), queue.clone(), |c| {
        let pod = match c {
            Change::Applied { old: Some(_), new } if new.metadata.deletion_timestamp.is_some() => {
                new
            }
            Change::Applied { old: Some(_), new } if !crate::pod_util::is_active(&new) => new,
            Change::Deleted(p) => p,
            _ => return Vec::new(),
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        claims_of(&pod)
            .into_iter()
            .map(|c| format!("{ns}/{c}"))
            .collect::<Vec<_>>()
    });
    claims.synced().await;
    pods.synced().await;
    let ctrl = Arc::new(PvcProtection {
        client: ctx.client.clone(),
        claims,
        pods,
    });
    let workers = queue.run(ctx.config.workers, "pvc-protection", move |key| {
        let c = ctrl.clone();
        async move { c.sync(&key).await }
    });
    futures::join!(claim_feed, pod_feed, workers);
}

impl PvcProtection {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, ProtectionError> {
        let (ns, name) = split_key(key);
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(None);
        };
        let ns = ns.unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let protected = has(&claim.metadata, PVC_PROTECTION);
        if claim.metadata.deletion_timestamp.is_none() {
            if !protected {
                set_finalizer(&api, &claim.metadata, PVC_PROTECTION, true).await?;
            }
            return Ok(None);
        }
        if !protected || self.in_use(ns, name).await? {
            return Ok(None);
        }
        set_finalizer(&api, &claim.metadata, PVC_PROTECTION, false).await?;
        Ok(None)
    }

    /// Whether a pod uses the claim: the cache first, then the API (a pod created
    /// a moment ago may not be cached yet).
    async fn in_use(&self, ns: &str, claim: &str) -> Result<bool, ProtectionError> {
        if self
            .pods
            .list_namespace(ns)
            .iter()
            .any(|p| pod_uses_claim(p, claim))
        {
            return Ok(true);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let live = api.list(&ListParams::default()).await?;
        Ok(live.items.iter().any(|p| pod_uses_claim(p, claim)))
    }
}

async fn run_pv(ctx: ControllerContext) {
    let volumes = ctx.informers.get::<PersistentVolume>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let feed = crate::informer::feed(volumes.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } => new.metadata.name.clone(),
        Change::Deleted(_) => None,
    });
    volumes.synced().await;
    let client = ctx.client.clone();
    let workers = queue.run(ctx.config.workers, "pv-protection", move |name| {
        let (client, volumes) = (client.clone(), volumes.clone());
        async move {
            let Some(pv) = volumes.get(None, &name) else {
                return Ok::<_, ProtectionError>(None);
            };
            let api: Api<PersistentVolume> = Api::all(client);
            let protected = has(&pv.metadata, PV_PROTECTION);
            if pv.metadata.deletion_timestamp.is_none() {
                if !protected {
                    set_finalizer(&api, &pv.metadata, PV_PROTECTION, true).await?;
                }
            } else if protected && volume_phase(&pv) != "Bound" {
                set_finalizer(&api, &pv.metadata, PV_PROTECTION, false).await?;
            }
            Ok(None)
        }
    });
    futures::join!(feed, workers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(node: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"nodeName": node, "containers": [],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn only_scheduled_pods_hold_claims() {
        assert!(pod_uses_claim(&pod(Some("n1"), "Running"), "data-claim"));
        assert!(!pod_uses_claim(&pod(None, "Pending"), "data-claim"));
        assert!(pod_uses_claim(&pod(Some("n1"), "Running"), "web-scratch"));
        // A finished pod still holds a named claim, not its ephemeral one.
        assert!(pod_uses_claim(&pod(Some("n1"), "Succeeded"), "data-claim"));
        assert!(!pod_uses_claim(
            &pod(Some("n1"), "Succeeded"),
            "web-scratch"
        ));
        assert!(!pod_uses_claim(&pod(Some("n1"), "Running"), "other"));
        assert_eq!(claims_of(&pod(None, "")), ["data-claim", "web-scratch"]);
    }
}
