//! emptyDir volumes: a directory on the node's disk, or a tmpfs for `medium: Memory`
//! (sized by `sizeLimit`, else the pod's memory limit, else the node's memory).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};
use nix::mount::{MsFlags, mount};

use super::{VolumeError, io, is_mount_point};
use rkube_api::quantity;

/// Creates `dir` if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), VolumeError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    Ok(())
}

/// Creates `dir` and mounts a tmpfs on it, unless one is mounted already.
pub fn ensure_tmpfs(dir: &Path, size: Option<i64>) -> Result<(), VolumeError> {
    ensure_dir(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut opts = String::from("mode=0755");
    if let Some(s) = size.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={s}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| VolumeError::Io {
        what: format!("mounting tmpfs at {}", dir.display()),
        source: e.into(),
    })
}

/// The memory limit of the whole pod, when every container has one.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let mut sum = 0i64;
    for c in &spec.containers {
        let l = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        sum += quantity::value(&l.0).ok()?;
    }
    Some(sum)
}

/// Sets up an emptyDir at `dir`.
pub fn setup(
    dir: &Path,
    src: &EmptyDirVolumeSource,
    pod: &Pod,
    node_memory: i64,
    gid: Option<u32>,
) -> Result<(), VolumeError> {
    let memory = src.medium.as_deref() == Some("Memory");
    let existed = dir.is_dir();
    if memory {
        let size = src
            .size_limit
            .as_ref()
            .and_then(|q| quantity::value(&q.0).ok())
            .filter(|s| *s > 0)
            .or_else(|| pod_memory_limit(pod))
            .unwrap_or(node_memory);
        ensure_tmpfs(dir, Some(size))?;
    } else {
        ensure_dir(dir)?;
    }
    if !existed {
        // Any user of any container may write an emptyDir, as upstream makes it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))
            .map_err(io(format!("chmod {}", dir.display())))?;
        if let Some(g) = gid {
            let _ = nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(g)));
        }
    }
    Ok(())
}

/// Bytes used under `dir` (for `sizeLimit` of disk-backed emptyDirs).
pub fn usage(dir: &Path) -> u64 {
    fn walk(p: &Path, total: &mut u64) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), total);
            } else {
                *total += m.len();
            }
        }
    }
    let mut total = 0;
    walk(dir, &mut total);
    total
}
