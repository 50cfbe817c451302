//! Containers on the caller's side: preparing the bundle (overlay rootfs, OCI spec),
//! starting the shim, and reading, signalling and removing what the shim runs. All
//! state is on disk, so a new caller (a restarted kubelet) finds every container.

use crate::config::ContainerConfig;
use crate::error::{RuntimeError, io_err, sys_err};
use crate::image::Image;
use crate::image::digest::Digest;
use crate::rootfs_path::resolve_in_root;
use crate::state::{self, ExitState, ShimRunSpec, ShimState};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::Signal;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state of a container (CRI's `ContainerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process exited.
    Exited,
    /// Started, but neither running nor with a recorded exit (its shim was killed).
    Unknown,
}

/// What the runtime remembers of a container (`container.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    /// Container ID.
    pub id: String,
    /// Sandbox it belongs to.
    pub sandbox_id: Option<String>,
    /// What it was created with.
    pub config: ContainerConfig,
    /// The image's ID.
    pub image_id: Digest,
    /// The image's first name (or its ID).
    pub image_ref: String,
    /// The layers under its rootfs (kept from garbage collection).
    pub layers: Vec<Digest>,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// The image's STOPSIGNAL, if it has one.
    pub stop_signal: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// A container's status (CRI's `ContainerStatus`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ContainerStatus {
    /// Container ID.
    pub id: String,
    /// Name from its config.
    pub name: String,
    /// Sandbox it belongs to.
    pub sandbox_id: Option<String>,
    /// State.
    pub state: ContainerState,
    /// Image name and ID.
    pub image_ref: String,
    /// See `image_ref`.
    pub image_id: Digest,
    /// Host PID of its init, while running.
    pub pid: Option<i32>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Start time.
    pub started_at: Option<String>,
    /// Exit time.
    pub finished_at: Option<String>,
    /// Exit code (128+signal when killed by one).
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, or empty.
    pub reason: String,
    /// CRI log file.
    pub log_path: PathBuf,
    /// Labels from its config.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A container's directory and the files in it.
#[derive(Clone, Debug)]
pub(crate) struct ContainerDir(pub PathBuf);

impl ContainerDir {
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    fn record_path(&self) -> PathBuf {
        self.0.join("container.json")
    }

    pub(crate) fn record(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        state::read_json(&self.record_path())
            .map_err(io_err(self.record_path()))?
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "container",
                id: id.to_string(),
            })
    }

    pub(crate) fn shim_state(&self) -> Option<ShimState> {
        state::read_json(&self.0.join("shim.json")).ok().flatten()
    }

    pub(crate) fn exit_state(&self) -> Option<ExitState> {
        state::read_json(&self.0.join("exit.json")).ok().flatten()
    }

    pub(crate) fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let rec = self.record(id)?;
        let shim = self.shim_state();
        let exit = self.exit_state();
        let (state, pid) = match (&shim, &exit) {
            (None, _) => (ContainerState::Created, None),
            (Some(_), Some(_)) => (ContainerState::Exited, None),
            (Some(s), None) if state::pid_alive(s.pid, s.pid_start) => {
                (ContainerState::Running, Some(s.pid))
            }
            // Init is gone but its shim is still draining output and about to
            // record the exit: not exited until that is on disk.
            (Some(s), None) if state::pid_alive(s.shim_pid, s.shim_start) => {
                (ContainerState::Running, None)
            }
            // The shim may have just written exit.json: look once more.
            (Some(_), None) if self.exit_state().is_some() => (ContainerState::Exited, None),
            (Some(_), None) => (ContainerState::Unknown, None),
        };
        let exit = if state == ContainerState::Exited {
            self.exit_state()
        } else {
            None
        };
        let reason = match &exit {
            Some(e) if e.oom_killed => "OOMKilled",
            Some(e) if e.exit_code == 0 => "Completed",
            Some(_) => "Error",
            None => "",
        };
        Ok(ContainerStatus {
            id: id.to_string(),
            name: rec.config.name.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            state,
            image_ref: rec.image_ref.clone(),
            image_id: rec.image_id.clone(),
            pid,
            created_at: rec.created_at.clone(),
            started_at: shim.map(|s| s.started_at),
            finished_at: exit.as_ref().map(|e| e.finished_at.clone()),
            exit_code: exit.as_ref().map(|e| e.exit_code),
            reason: reason.to_string(),
            log_path: rec.log_path.clone(),
            labels: rec.config.labels.clone(),
        })
    }
}

/// Mounts the overlay rootfs: `lowers` top first.
pub(crate) fn mount_rootfs(dir: &ContainerDir, lowers: &[PathBuf]) -> Result<(), RuntimeError> {
    let (upper, work, rootfs) = (dir.0.join("upper"), dir.0.join("work"), dir.rootfs());
    for d in [&upper, &work, &rootfs] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(sys_err(format!(
        "mounting overlay rootfs at {}",
        rootfs.display()
    )))
}

/// Unmounts the rootfs (if mounted) and deletes the directory.
pub(crate) fn destroy_dir(dir: &ContainerDir) {
    let _ = umount2(&dir.rootfs(), MntFlags::MNT_DETACH);
    let _ = fs::remove_dir_all(&dir.0);
}

/// Creates the working directory (as the image sees paths) when the image lacks it,
/// as runc does, and the termination-log file on the host.
pub(crate) fn prepare_paths(
    dir: &ContainerDir,
    spec: &serde_json::Value,
    cfg: &ContainerConfig,
) -> Result<(), RuntimeError> {
    let cwd = spec["process"]["cwd"].as_str().unwrap_or("/");
    let host = resolve_in_root(&dir.rootfs(), Path::new(cwd)).map_err(io_err(cwd))?;
    if !host.exists() {
        fs::create_dir_all(&host).map_err(io_err(&host))?;
    }
    if let Some(tl) = &cfg.termination_log
        && !tl.exists()
    {
        if let Some(p) = tl.parent() {
            fs::create_dir_all(p).map_err(io_err(p))?;
        }
        fs::write(tl, b"").map_err(io_err(tl))?;
    }
    Ok(())
}

/// The shim's run spec for a container.
pub(crate) fn shim_spec(
    id: &str,
    rec: &ContainerRecord,
    lc_root: &Path,
    socket_dir: &Path,
    cgroup: &str,
) -> ShimRunSpec {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let oom_file = if v2 {
        PathBuf::from(format!("/sys/fs/cgroup{cgroup}/memory.events"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/memory{cgroup}/memory.oom_control"))
    };
    ShimRunSpec {
        id: id.to_string(),
        libcontainer_root: lc_root.to_path_buf(),
        log_path: rec.log_path.clone(),
        socket_dir: socket_dir.to_path_buf(),
        stdin: rec.config.stdin,
        stdin_once: rec.config.stdin_once,
        tty: rec.config.tty,
        oom_file: Some(oom_file),
    }
}

/// Builds the record of a new container.
pub(crate) fn new_record(
    id: &str,
    sandbox_id: Option<&str>,
    config: ContainerConfig,
    image: &Image,
    dir: &ContainerDir,
) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        sandbox_id: sandbox_id.map(str::to_string),
        log_path: config
            .log_path
            .clone()
            .unwrap_or_else(|| dir.0.join("container.log")),
        image_ref: image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.to_string()),
        image_id: image.id.clone(),
        layers: image.layers.iter().map(|l| l.diff_id.clone()).collect(),
        stop_signal: image.config.stop_signal.clone(),
        created_at: state::now_rfc3339(),
        config,
    }
}

/// Parses a signal name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

/// Sends `sig` to the container's init if it still is the process the shim started.
pub(crate) fn signal(dir: &ContainerDir, id: &str, sig: Signal) -> Result<bool, RuntimeError> {
    let Some(s) = dir.shim_state() else {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            message: "not started".into(),
        });
    };
    if dir.exit_state().is_some() || !state::pid_alive(s.pid, s.pid_start) {
        return Ok(false);
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), sig) {
        Ok(()) => Ok(true),
        Err(nix::Error::ESRCH) => Ok(false),
        Err(e) => Err(sys_err(format!("kill {id}"))(e)),
    }
}

/// Waits until the container is no longer running, up to `timeout`; returns whether it stopped.
pub(crate) async fn wait_stopped(
    dir: &ContainerDir,
    id: &str,
    timeout: Option<Duration>,
) -> Result<bool, RuntimeError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut delay = Duration::from_millis(2);
    loop {
        let st = dir.status(id)?;
        if matches!(
            st.state,
            ContainerState::Exited | ContainerState::Unknown | ContainerState::Created
        ) {
            return Ok(true);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
