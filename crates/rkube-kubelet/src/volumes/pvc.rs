//! persistentVolumeClaim volumes backed by `local` or `hostPath` PersistentVolumes:
//! the claim must be bound to a volume (its `volumeName`, which the volume's
//! `claimRef` must point back at); the volume's path is what containers bind.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
};
use kube::Client;
use kube::api::Api;

use super::{MountedVolume, VolumeError, host_path};

fn api_error(e: kube::Error) -> VolumeError {
    VolumeError::Source(match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    })
}

/// The host path of the volume a claim is bound to.
pub async fn setup(
    client: &Client,
    ns: &str,
    src: &PersistentVolumeClaimVolumeSource,
) -> Result<MountedVolume, VolumeError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = claims
        .get_opt(&src.claim_name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| {
            VolumeError::Source(format!(
                "persistentvolumeclaim \"{}\" not found",
                src.claim_name
            ))
        })?;
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            VolumeError::Source(format!(
                "persistentvolumeclaim \"{}\" is not bound",
                src.claim_name
            ))
        })?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get_opt(&pv_name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| VolumeError::Source(format!("persistentvolume \"{pv_name}\" not found")))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(r) = &spec.claim_ref {
        let same_uid = match (&r.uid, &claim.metadata.uid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if r.name.as_deref() != Some(src.claim_name.as_str())
            || r.namespace.as_deref().is_some_and(|n| n != ns)
            || !same_uid
        {
            return Err(VolumeError::Source(format!(
                "persistentvolume \"{pv_name}\" is bound to another claim"
            )));
        }
    }
    let read_only = src.read_only.unwrap_or(false);
    let host = if let Some(h) = &spec.host_path {
        host_path::setup(h)?
    } else if let Some(l) = &spec.local {
        let p = std::path::PathBuf::from(&l.path);
        if !p.exists() {
            return Err(VolumeError::Source(format!(
                "local volume path {} does not exist",
                l.path
            )));
        }
        p
    } else {
        return Err(VolumeError::Source(format!(
            "persistentvolume \"{pv_name}\" is neither local nor hostPath, which this node cannot mount"
        )));
    };
    Ok(MountedVolume {
        host_path: host,
        read_only,
        projected: false,
    })
}
