//! Pod volumes: each volume of a pod gets a directory on the node (or a host path),
//! which containers bind-mount. One module per kind of source, as upstream's volume
//! plugins; [`VolumeManager`] sets a pod's volumes up (again and again: it is
//! idempotent, and is how ConfigMap, Secret and token updates reach running pods)
//! and tears them down.
//!
//! Layout (upstream's): `<root>/pods/<uid>/volumes/kubernetes.io~<kind>/<name>`.
//! Secret, projected and Memory emptyDir volumes are tmpfs mounts, so their contents
//! never reach the disk.

pub mod atomic_writer;
pub mod empty_dir;
pub mod host_path;
pub mod mounts;
pub mod projection;
pub mod pvc;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::fieldpath::PodFacts;
use crate::objects::ClusterObjects;
use atomic_writer::AtomicWriteError;
use token::TokenManager;

/// Why a volume could not be set up (upstream's FailedMount).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// What the volume refers to is missing or unusable (`configmap "x" not found`).
    #[error("{0}")]
    Source(String),
    /// Writing its files failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// A directory or mount operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The volume's kind is not supported on this node.
    #[error("unsupported volume type")]
    Unsupported,
}

/// A volume set up for a pod: where it is on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedVolume {
    /// The host directory (or file) containers bind.
    pub host_path: PathBuf,
    /// Read-only whatever the mount asks (PVCs with `readOnly`, ...).
    pub read_only: bool,
    /// Whether the volume's content is managed by the kubelet (ConfigMaps, Secrets...),
    /// so `subPath` mounts of it get a copy that is never updated, as upstream.
    pub projected: bool,
}

/// A failure of one volume, worded as upstream's FailedMount event.
#[derive(Debug)]
pub struct MountFailure {
    /// The volume's name.
    pub volume: String,
    /// The cause.
    pub error: VolumeError,
}

impl std::fmt::Display for MountFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MountVolume.SetUp failed for volume \"{}\" : {}",
            self.volume, self.error
        )
    }
}

/// Sets up and tears down the volumes of pods.
pub struct VolumeManager {
    root: PathBuf,
    objects: Arc<ClusterObjects>,
    tokens: TokenManager,
    node_memory: i64,
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Io { what, source }
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .map(|g| g as u32)
}

impl VolumeManager {
    /// Volumes live under `<root>/pods`.
    pub fn new(root: PathBuf, objects: Arc<ClusterObjects>, node_memory: i64) -> Self {
        let tokens = TokenManager::new(objects.client().clone());
        VolumeManager {
            root,
            objects,
            tokens,
            node_memory,
        }
    }

    /// The directory of a pod's kubelet files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    fn volume_dir(&self, uid: &str, kind: &str, name: &str) -> PathBuf {
        self.pod_dir(uid)
            .join("volumes")
            .join(format!("kubernetes.io~{kind}"))
            .join(name)
    }

    /// Sets up (or refreshes) every volume of `pod`. Volumes that fail are reported
    /// and the others still set up.
    pub async fn setup(
        &self,
        pod: &Pod,
        facts: &PodFacts,
    ) -> (HashMap<String, MountedVolume>, Vec<MountFailure>) {
        let mut ok = HashMap::new();
        let mut failed = Vec::new();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &volumes {
            match self.setup_one(pod, v, facts).await {
                Ok(m) => {
                    ok.insert(v.name.clone(), m);
                }
                Err(error) => failed.push(MountFailure {
                    volume: v.name.clone(),
                    error,
                }),
            }
        }
        (ok, failed)
    }

    async fn setup_one(
        &self,
        pod: &Pod,
        v: &Volume,
        facts: &PodFacts,
    ) -> Result<MountedVolume, VolumeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let gid = fs_group(pod);
        let managed = |host_path: PathBuf| MountedVolume {
            host_path,
            read_only: false,
            projected: true,
        };
        if let Some(e) = &v.empty_dir {
            let dir = self.volume_dir(uid, "empty-dir", &v.name);
            empty_dir::setup(&dir, e, pod, self.node_memory, gid)?;
            return Ok(MountedVolume {
                host_path: dir,
                read_only: false,
                projected: false,
            });
        }
        if let Some(h) = &v.host_path {
            return host_path::setup(h).map(|p| MountedVolume {
                host_path: p,
                read_only: false,
                projected: false,
            });
        }
        if let Some(c) = &v.persistent_volume_claim {
            return pvc::setup(self.objects.client(), ns, c).await;
        }
        if let Some(c) = &v.config_map {
            let dir = self.volume_dir(uid, "configmap", &v.name);
            empty_dir::ensure_dir(&dir)?;
            let payload = projection::configmap(
                &self.objects,
                ns,
                &c.name,
                c.items.as_ref(),
                c.optional.unwrap_or(false),
                c.default_mode.unwrap_or(projection::DEFAULT_MODE),
            )
            .await
            .map_err(VolumeError::Source)?;
            atomic_writer::write(&dir, &payload, gid)?;
            return Ok(managed(dir));
        }
        if let Some(s) = &v.secret {
            let dir = self.volume_dir(uid, "secret", &v.name);
            empty_dir::ensure_tmpfs(&dir, None)?;
            let payload = projection::secret(
                &self.objects,
                ns,
                s.secret_name.as_deref().unwrap_or_default(),
                s.items.as_ref(),
                s.optional.unwrap_or(false),
                s.default_mode.unwrap_or(projection::DEFAULT_MODE),
            )
            .await
            .map_err(VolumeError::Source)?;
            atomic_writer::write(&dir, &payload, gid)?;
            return Ok(managed(dir));
        }
        if let Some(d) = &v.downward_api {
            let dir = self.volume_dir(uid, "downward-api", &v.name);
            empty_dir::ensure_dir(&dir)?;
            let payload = projection::downward_api(
                pod,
                d.items.as_deref().unwrap_or_default(),
                facts,
                d.default_mode.unwrap_or(projection::DEFAULT_MODE),
            )
            .map_err(VolumeError::Source)?;
            atomic_writer::write(&dir, &payload, gid)?;
            return Ok(managed(dir));
        }
        if let Some(p) = &v.projected {
            let dir = self.volume_dir(uid, "projected", &v.name);
            empty_dir::ensure_tmpfs(&dir, None)?;
            let payload = projection::projected(pod, p, &self.objects, facts, &self.tokens).await?;
            atomic_writer::write(&dir, &payload, gid)?;
            return Ok(managed(dir));
        }
        Err(VolumeError::Unsupported)
    }

    /// Whether a ConfigMap or Secret is used by `pod`'s volumes (so a change to it
    /// must be written into them).
    pub fn uses(pod: &Pod, kind: crate::objects::ObjectKind, name: &str) -> bool {
        use crate::objects::ObjectKind::*;
        let vols = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        vols.into_iter().flatten().any(|v| match kind {
            ConfigMap => {
                v.config_map.as_ref().is_some_and(|c| c.name == name)
                    || v.projected.as_ref().is_some_and(|p| {
                        p.sources
                            .iter()
                            .flatten()
                            .any(|s| s.config_map.as_ref().is_some_and(|c| c.name == name))
                    })
            }
            Secret => {
                v.secret
                    .as_ref()
                    .is_some_and(|s| s.secret_name.as_deref() == Some(name))
                    || v.projected.as_ref().is_some_and(|p| {
                        p.sources
                            .iter()
                            .flatten()
                            .any(|s| s.secret.as_ref().is_some_and(|c| c.name == name))
                    })
            }
        })
    }

    /// Unmounts and deletes everything of a pod under its directory.
    pub fn teardown(&self, uid: &str) -> Result<(), VolumeError> {
        self.tokens.forget_pod(uid);
        let dir = self.pod_dir(uid);
        unmount_all_under(&dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", dir.display()))(e)),
        }
    }

    /// The pod directories on disk (uids), to find leftovers of pods that are gone.
    pub fn pods_on_disk(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// The kubelet-wide token manager.
    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }
}

/// Unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_all_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is the root of a mount of another filesystem than its parent's
/// (as every tmpfs the kubelet mounts is). Two stats instead of a read of
/// mountinfo, which grows with every container on the node and is read at every
/// volume sync. A bind mount within one filesystem is not seen.
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else {
        return true;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(p), Ok(up)) => p.dev() != up.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_told_by_their_device() {
        assert!(is_mount_point(Path::new("/proc")));
        let dir = std::env::temp_dir().join(format!("rkube-mp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!is_mount_point(&dir));
        assert!(!is_mount_point(&dir.join("missing")));
        std::fs::remove_dir(&dir).unwrap();
    }
}
