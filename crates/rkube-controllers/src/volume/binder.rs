//! The PersistentVolume binder (`persistentvolume-binder`): binds each claim to a
//! volume (the one it names, or the best match), both ways (`claimRef` on the
//! volume, `volumeName` on the claim) with upstream's annotations and phases;
//! claims of WaitForFirstConsumer classes wait until the scheduler names a node
//! (`volume.kubernetes.io/selected-node`); claims nothing fits are left to their
//! class's provisioner; a volume whose claim is gone is Released and reclaimed
//! (Retain keeps it, Delete removes the object unless a provisioner made it).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client};

use super::matching::{bound_to_claim, check_satisfies, find_best, volume_mode_mismatch};
use super::*;
use crate::events::EventRecorder;
use crate::informer::{Change, Informer};
use crate::manager::ControllerContext;
use crate::pod_util::{object_key, split_key};
use crate::queue::WorkQueue;

/// Every claim and volume is looked at again this often (upstream: 15s), for
/// what no event announces (a volume that now fits a waiting claim).
const RESYNC: Duration = Duration::from_secs(15);

/// Errors of the binder.
#[derive(Debug, thiserror::Error)]
pub enum BinderError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// A claim is bound by the binder to a volume another claim holds.
    #[error("invalid binding of claim {0} to volume {1}: volume already claimed by {2}")]
    Misbound(String, String, String),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

struct Binder {
    client: Client,
    clock: Arc<dyn crate::clock::Clock>,
    volumes: Arc<Informer<PersistentVolume>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    classes: Arc<Informer<StorageClass>>,
    nodes: Arc<Informer<Node>>,
    recorder: EventRecorder,
    claim_queue: WorkQueue<String>,
    volume_queue: WorkQueue<String>,
}

async fn run(ctx: ControllerContext) {
    let volumes = ctx.informers.get::<PersistentVolume>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let classes = ctx.informers.get::<StorageClass>();
    let nodes = ctx.informers.get::<Node>();
    let b = Arc::new(Binder {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        volumes: volumes.clone(),
        claims: claims.clone(),
        classes: classes.clone(),
        nodes: nodes.clone(),
        recorder: ctx.recorder("persistentvolume-controller"),
        claim_queue: WorkQueue::new(),
        volume_queue: WorkQueue::new(),
    });
    let mut claim_changes = claims.subscribe();
    let mut volume_changes = volumes.subscribe();
    let mut class_changes = classes.subscribe();
    let c = b.clone();
    let claim_feed = async move {
        while let Some(ch) = claim_changes.recv().await {
            match ch {
                Change::Applied { new, .. } => c.claim_queue.add(object_key(new.as_ref())),
                Change::Deleted(claim) => {
                    // Its volume is released.
                    if let Some(v) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                        c.volume_queue.add(v);
                    }
                }
            }
        }
    };
    let c = b.clone();
    let volume_feed = async move {
        while let Some(ch) = volume_changes.recv().await {
            let v = match ch {
                Change::Applied { new, .. } => new,
                Change::Deleted(v) => {
                    c.claim_for(&v);
                    continue;
                }
            };
            c.volume_queue
                .add(v.metadata.name.clone().unwrap_or_default());
            c.claim_for(&v);
            if volume_phase(&v) == "Available"
                && v.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())
            {
                c.pending_claims();
            }
        }
    };
    let c = b.clone();
    let class_feed = async move {
        while class_changes.recv().await.is_some() {
            c.pending_claims();
        }
    };
    volumes.synced().await;
    claims.synced().await;
    classes.synced().await;
    nodes.synced().await;
    let c = b.clone();
    let resync = async move {
        loop {
            tokio::time::sleep(RESYNC).await;
            for claim in c.claims.list() {
                c.claim_queue.add(object_key(claim.as_ref()));
            }
            for v in c.volumes.list() {
                c.volume_queue
                    .add(v.metadata.name.clone().unwrap_or_default());
            }
        }
    };
    let c = b.clone();
    let claim_workers = b.claim_queue.run(
        ctx.config.workers,
        "persistentvolume-binder-claims",
        move |key| {
            let c = c.clone();
            async move { c.sync_claim(&key).await.map(|_| None) }
        },
    );
    let c = b.clone();
    let volume_workers = b.volume_queue.run(
        ctx.config.workers,
        "persistentvolume-binder-volumes",
        move |key| {
            let c = c.clone();
            async move { c.sync_volume(&key).await.map(|_| None) }
        },
    );
    futures::join!(
        claim_feed,
        volume_feed,
        class_feed,
        resync,
        claim_workers,
        volume_workers
    );
}

impl Binder {
    /// Queues the claim a volume points at.
    fn claim_for(&self, v: &PersistentVolume) {
        if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            self.claim_queue.add(crate::pod_util::key(
                r.namespace.as_deref(),
                r.name.as_deref(),
            ));
        }
    }

    /// Queues every claim still waiting for a volume.
    fn pending_claims(&self) {
        for c in self.claims.list() {
            if !has_annotation(&c.metadata, BIND_COMPLETED) {
                self.claim_queue.add(object_key(c.as_ref()));
            }
        }
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(None, name)
    }

    fn default_class(&self) -> Option<String> {
        let mut defaults: Vec<Arc<StorageClass>> = self
            .classes
            .list()
            .into_iter()
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS))
                    .is_some_and(|v| v == "true")
            })
            .collect();
        // Several defaults: the newest, as upstream's admission picks.
        defaults.sort_by_key(|c| c.metadata.creation_timestamp.as_ref().map(|t| t.0));
        defaults.last().and_then(|c| c.metadata.name.clone())
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    async fn sync_claim(&self, key: &str) -> Result<(), BinderError> {
        let (ns, name) = split_key(key);
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(());
        };
        if !has_annotation(&claim.metadata, BIND_COMPLETED) {
            // A claim without a class gets the default one, once one exists.
            if !claim_class_set(&claim)
                && claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .is_none_or(str::is_empty)
                && let Some(default) = self.default_class()
            {
                let mut c = (*claim).clone();
                c.spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(default);
                self.claims_api(ns.unwrap_or_default())
                    .replace(name, &PostParams::default(), &c)
                    .await?;
                return Ok(());
            }
            self.sync_unbound_claim(&claim).await
        } else {
            self.sync_bound_claim(&claim).await
        }
    }

    /// A claim's class wants its first consumer scheduled before binding.
    fn delays_binding(&self, claim: &PersistentVolumeClaim) -> bool {
        let class = claim_class(claim);
        !class.is_empty()
            && self
                .class(&class)
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }

    async fn sync_unbound_claim(&self, claim: &PersistentVolumeClaim) -> Result<(), BinderError> {
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let Some(volume_name) = volume_name else {
            let delay = self.delays_binding(claim);
            let node = claim
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE))
                .and_then(|n| self.nodes.get(None, n));
            let volumes = self.volumes.list();
            if let Some(v) = find_best(claim, &volumes, delay, node.as_deref()) {
                return self.bind(&v, claim).await;
            }
            let selected = has_annotation(&claim.metadata, SELECTED_NODE);
            let class = claim_class(claim);
            if delay && !selected {
                self.recorder.normal(
                    claim,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                );
            } else if !class.is_empty() {
                self.provision(claim, &class).await?;
            } else {
                self.recorder.normal(
                    claim,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                );
            }
            return self.set_claim_status(claim, "Pending", None).await;
        };
        let Some(volume) = self.volumes.get(None, &volume_name) else {
            // The named volume does not exist (yet).
            return self.set_claim_status(claim, "Pending", None).await;
        };
        let claimed = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claimed.is_none() {
            if let Err(why) = check_satisfies(&volume, claim) {
                self.recorder.warning(claim, "VolumeMismatch", why);
                return self.set_claim_status(claim, "Pending", None).await;
            }
            return self.bind(&volume, claim).await;
        }
        if bound_to_claim(&volume, claim) {
            return self.bind(&volume, claim).await;
        }
        if !has_annotation(&claim.metadata, BOUND_BY_CONTROLLER) {
            // The user asked for a volume another claim holds: wait.
            return self.set_claim_status(claim, "Pending", None).await;
        }
        let holder = claimed
            .map(|r| crate::pod_util::key(r.namespace.as_deref(), r.name.as_deref()))
            .unwrap_or_default();
        Err(BinderError::Misbound(
            object_key(claim),
            volume_name,
            holder,
        ))
    }

    /// Nothing fits: the class's provisioner is to make a volume.
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class: &str,
    ) -> Result<(), BinderError> {
        let Some(sc) = self.class(class) else {
            self.recorder.warning(
                claim,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class:?} not found"),
            );
            return Ok(());
        };
        let provisioner = sc.provisioner.clone();
        if provisioner == NO_PROVISIONER {
            self.recorder.warning(
                claim,
                "ProvisioningFailed",
                format!("no volume plugin matched name: {NO_PROVISIONER}"),
            );
            return Ok(());
        }
        let annotations = claim.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(STORAGE_PROVISIONER) != Some(&provisioner) {
            let mut c = claim.clone();
            let a = c.metadata.annotations.get_or_insert_with(Default::default);
            a.insert(STORAGE_PROVISIONER.into(), provisioner.clone());
            a.insert(BETA_STORAGE_PROVISIONER.into(), provisioner.clone());
            let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
            let name = claim.metadata.name.as_deref().unwrap_or_default();
            self.claims_api(ns)
                .replace(name, &PostParams::default(), &c)
                .await?;
        }
        self.recorder.normal(
            claim,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
            ),
        );
        Ok(())
    }

    async fn sync_bound_claim(&self, claim: &PersistentVolumeClaim) -> Result<(), BinderError> {
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if volume_name.is_empty() {
            return self
                .lost(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
                )
                .await;
        }
        let Some(volume) = self.volumes.get(None, &volume_name) else {
            return self
                .lost(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
        };
        let r = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        match r {
            // Bound, but the volume lost the claim (or the cache is behind): bind again.
            None => self.bind(&volume, claim).await,
            Some(r) if r.uid == claim.metadata.uid => self.bind(&volume, claim).await,
            Some(_) => {
                self.lost(
                    claim,
                    "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                )
                .await
            }
        }
    }

    async fn lost(
        &self,
        claim: &PersistentVolumeClaim,
        reason: &str,
        message: &str,
    ) -> Result<(), BinderError> {
        if claim_phase(claim) != "Lost" {
            self.recorder.warning(claim, reason, message);
        }
        self.set_claim_status(claim, "Lost", None).await
    }

    /// Binds both ways; each step is skipped when already done.
    async fn bind(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), BinderError> {
        let vapi = self.volumes_api();
        let vname = volume.metadata.name.clone().unwrap_or_default();
        let mut v = volume.clone();
        let ref_ok = bound_to_claim(volume, claim)
            && volume
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.uid.as_deref())
                == claim.metadata.uid.as_deref();
        if !ref_ok {
            let by_controller = !bound_to_claim(volume, claim);
            let spec = v.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            });
            if by_controller {
                v.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            v = vapi.replace(&vname, &PostParams::default(), &v).await?;
        }
        self.set_volume_phase(&v, "Bound", None).await?;
        let mut c = claim.clone();
        let spec = c.spec.get_or_insert_with(Default::default);
        let mut changed = false;
        if spec.volume_name.as_deref() != Some(vname.as_str()) {
            spec.volume_name = Some(vname.clone());
            c.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            changed = true;
        }
        if !has_annotation(&c.metadata, BIND_COMPLETED) {
            c.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BIND_COMPLETED.into(), "yes".into());
            changed = true;
        }
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        if changed {
            c = self
                .claims_api(ns)
                .replace(name, &PostParams::default(), &c)
                .await?;
        }
        self.set_claim_status(&c, "Bound", Some(&v)).await
    }

    async fn set_claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<(), BinderError> {
        let old = claim.status.clone().unwrap_or_default();
        let mut status = PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..old.clone()
        };
        match volume.and_then(|v| v.spec.as_ref()) {
            Some(spec) => {
                status.access_modes = spec.access_modes.clone();
                status.capacity = spec.capacity.clone();
            }
            None if phase != "Lost" => {
                status.access_modes = None;
                status.capacity = None;
            }
            None => {}
        }
        if status == old {
            return Ok(());
        }
        let mut c = claim.clone();
        c.status = Some(status);
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        match self
            .claims_api(ns)
            .replace_status(name, &PostParams::default(), &c)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_volume_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
    ) -> Result<(), BinderError> {
        let old = volume.status.clone().unwrap_or_default();
        if old.phase.as_deref() == Some(phase) && old.message.as_deref() == message {
            return Ok(());
        }
        let mut v = volume.clone();
        let status = v.status.get_or_insert_with(Default::default);
        status.phase = Some(phase.into());
        status.message = message.map(str::to_string);
        status.last_phase_transition_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.clock.now()),
        );
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        match self
            .volumes_api()
            .replace_status(name, &PostParams::default(), &v)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::api_error::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_volume(&self, name: &str) -> Result<(), BinderError> {
        let Some(volume) = self.volumes.get(None, name) else {
            return Ok(());
        };
        let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            return self.set_volume_phase(&volume, "Available", None).await;
        };
        if r.uid.as_deref().is_none_or(str::is_empty) {
            // Reserved for a claim by name; the claim's sync binds it.
            return self.set_volume_phase(&volume, "Available", None).await;
        }
        let ns = r.namespace.clone().unwrap_or_default();
        let cname = r.name.clone().unwrap_or_default();
        let mut claim = self.claims.get(Some(&ns), &cname);
        if claim.as_ref().is_none_or(|c| c.metadata.uid != r.uid) {
            // The cache may be behind: ask the API.
            claim = self.claims_api(&ns).get_opt(&cname).await?.map(Arc::new);
        }
        let claim = claim.filter(|c| c.metadata.uid == r.uid);
        let Some(claim) = claim else {
            // Its claim is gone: released, then reclaimed as the policy says.
            if !matches!(volume_phase(&volume), "Released" | "Failed") {
                self.set_volume_phase(&volume, "Released", None).await?;
            }
            return self.reclaim(&volume).await;
        };
        let claim_volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if claim_volume.is_empty() {
            if volume_mode_mismatch(&volume, &claim) {
                self.recorder.warning(
                    volume.as_ref(),
                    "VolumeMismatch",
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim due to incompatible volumeMode.",
                );
                return Ok(());
            }
            // Half bound: the claim's sync finishes it.
            self.claim_queue.add(object_key(claim.as_ref()));
            return Ok(());
        }
        if claim_volume == name {
            return self.set_volume_phase(&volume, "Bound", None).await;
        }
        // The claim went to another volume.
        if has_annotation(&volume.metadata, PROVISIONED_BY)
            && volume
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                == Some("Delete")
        {
            if !matches!(volume_phase(&volume), "Released" | "Failed") {
                self.set_volume_phase(&volume, "Released", None).await?;
            }
            return self.reclaim(&volume).await;
        }
        if has_annotation(&volume.metadata, BOUND_BY_CONTROLLER) {
            // The binder reserved it and used another: let it go.
            let mut v = (*volume).clone();
            if let Some(spec) = v.spec.as_mut() {
                spec.claim_ref = None;
            }
            if let Some(a) = v.metadata.annotations.as_mut() {
                a.remove(BOUND_BY_CONTROLLER);
            }
            let v = self
                .volumes_api()
                .replace(name, &PostParams::default(), &v)
                .await?;
            return self.set_volume_phase(&v, "Available", None).await;
        }
        Ok(())
    }

    /// A released volume: Retain keeps it, Delete removes it (a provisioner's
    /// volume is left for its provisioner to delete), Recycle is not supported.
    async fn reclaim(&self, volume: &PersistentVolume) -> Result<(), BinderError> {
        let policy = volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_else(|| "Retain".into());
        match policy.as_str() {
            "Delete" if !has_annotation(&volume.metadata, PROVISIONED_BY) => {
                let name = volume.metadata.name.as_deref().unwrap_or_default();
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: volume.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self.volumes_api().delete(name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if matches!(crate::api_error::code(&e), Some(404 | 409)) => Ok(()),
                    Err(e) => {
                        self.recorder.warning(
                            volume,
                            "VolumeFailedDelete",
                            crate::api_error::message(&e),
                        );
                        Err(e.into())
                    }
                }
            }
            "Recycle" => {
                if volume_phase(volume) != "Failed" {
                    self.recorder.warning(
                        volume,
                        "VolumeFailedRecycle",
                        "No recycler plugin found for the volume!",
                    );
                }
                self.set_volume_phase(
                    volume,
                    "Failed",
                    Some("No recycler plugin found for the volume!"),
                )
                .await
            }
            _ => Ok(()),
        }
    }
}
