//! The CRI-shaped [`Runtime`] trait (image, sandbox and container services) and
//! [`OciRuntime`], its implementation on this node.

use crate::config::{ContainerConfig, ExecConfig, RuntimeConfig, SandboxConfig};
use crate::container::{self, ContainerDir, ContainerState, ContainerStatus};
use crate::error::{RuntimeError, io_err};
use crate::image::{Image, ImageStore, PullAuth};
use crate::sandbox::{Sandbox, SandboxDir, SandboxState};
use crate::spec::{self, SandboxParts};
use crate::state;
use crate::streams::{AttachOptions, AttachSession, ExecOutput, ExecSession};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// What a kubelet needs from a container runtime, in the shape of CRI's image and
/// runtime services. Every method is safe to call from a multi-threaded async
/// runtime: nothing forks in the caller's process.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Pulls an image (CRI `PullImage`); `auth` overrides registries.yaml.
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&PullAuth>,
    ) -> Result<Image, RuntimeError>;
    /// The image a reference or ID names, if present (CRI `ImageStatus`).
    async fn image_status(&self, reference: &str) -> Result<Option<Image>, RuntimeError>;
    /// Every image (CRI `ListImages`).
    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError>;
    /// Removes an image name, or the image (CRI `RemoveImage`).
    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError>;
    /// Frees blobs and snapshots no image or container uses.
    async fn garbage_collect(&self) -> Result<crate::image::GcStats, RuntimeError>;

    /// Creates a pod sandbox (CRI `RunPodSandbox`); its `netns_path` goes to the network.
    async fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, RuntimeError>;
    /// Stops every container of the sandbox (CRI `StopPodSandbox`).
    async fn stop_pod_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes the sandbox and its containers (CRI `RemovePodSandbox`).
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    /// One sandbox (CRI `PodSandboxStatus`).
    async fn pod_sandbox_status(&self, id: &str) -> Result<Sandbox, RuntimeError>;
    /// Every sandbox (CRI `ListPodSandbox`).
    async fn list_pod_sandboxes(&self) -> Result<Vec<Sandbox>, RuntimeError>;

    /// Creates a container in a sandbox, or alone with `None` (CRI `CreateContainer`).
    async fn create_container(
        &self,
        sandbox_id: Option<&str>,
        config: ContainerConfig,
    ) -> Result<String, RuntimeError>;
    /// Starts it: a shim is started and the process runs (CRI `StartContainer`).
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends the stop signal, waits `grace`, then SIGKILL (CRI `StopContainer`).
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Sends a signal to the container's init.
    async fn kill_container(&self, id: &str, signal: Signal) -> Result<(), RuntimeError>;
    /// Removes the container, killing it if it runs (CRI `RemoveContainer`).
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// One container (CRI `ContainerStatus`).
    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    /// Every container (CRI `ListContainers`).
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError>;
    /// Waits until the container is not running; its status.
    async fn wait_container(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    /// Starts a process in a running container (CRI `Exec`).
    async fn exec(&self, id: &str, config: ExecConfig) -> Result<ExecSession, RuntimeError>;
    /// Runs a command to completion (CRI `ExecSync`, used by probes).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut s = self
            .exec(
                id,
                ExecConfig {
                    cmd,
                    ..Default::default()
                },
            )
            .await?;
        let mut out = s.stdout.take().expect("piped");
        let mut err = s.stderr.take().expect("piped");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let read = async { tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e)) };
        match tokio::time::timeout(timeout, read).await {
            Ok((a, b)) => a.and(b).map_err(io_err("exec output"))?,
            Err(_) => {
                // A probe that hangs must not leave its process behind.
                s.kill().await;
                return Err(RuntimeError::Timeout { id: id.to_string() });
            }
        };
        let code = s.wait().await?;
        Ok(ExecOutput {
            stdout: o,
            stderr: e,
            exit_code: code,
        })
    }

    async fn attach(&self, id: &str, opts: AttachOptions) -> Result<AttachSession, RuntimeError>;
}

/// The runtime of this node: images in an [`ImageStore`], containers run by
/// libcontainer under `rkube shim`.
#[derive(Clone, Debug)]
pub struct OciRuntime {
    cfg: RuntimeConfig,
    images: ImageStore,
}

fn new_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

impl OciRuntime {
    /// Opens the runtime's directories (creating them).
    pub fn new(cfg: RuntimeConfig) -> Result<OciRuntime, RuntimeError> {
        let images = ImageStore::open(cfg.root.join("images"), cfg.registries.clone())?;
        for d in [
            cfg.root.join("containers"),
            cfg.root.join("sandboxes"),
            cfg.run_root.join("libcontainer"),
            cfg.run_root.join("sockets"),
        ] {
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(OciRuntime { cfg, images })
    }

    /// The image service.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The configuration in use.
    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    fn lc_root(&self) -> PathBuf {
        self.cfg.run_root.join("libcontainer")
    }

    fn socket_dir(&self) -> PathBuf {
        self.cfg.run_root.join("sockets")
    }

    fn container_dir(&self, id: &str) -> Result<ContainerDir, RuntimeError> {
        let d = self.cfg.root.join("containers").join(id);
        if !valid_id(id) || !d.join("container.json").exists() {
            return Err(RuntimeError::NotFound {
                kind: "container",
                id: id.to_string(),
            });
        }
        Ok(ContainerDir(d))
    }

    fn sandbox_dir(&self, id: &str) -> Result<SandboxDir, RuntimeError> {
        let d = self.cfg.root.join("sandboxes").join(id);
        if !valid_id(id) || !d.join("sandbox.json").exists() {
            return Err(RuntimeError::NotFound {
                kind: "sandbox",
                id: id.to_string(),
            });
        }
        Ok(SandboxDir(d))
    }

    fn cgroup_path(&self, id: &str) -> String {
        format!("{}/{}", self.cfg.cgroup_parent.trim_end_matches('/'), id)
    }

    fn list_ids(&self, kind: &str) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.cfg.root.join(kind))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    fn create_blocking(
        &self,
        sandbox_id: Option<&str>,
        config: ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let sandbox = match sandbox_id {
            Some(s) => {
                let dir = self.sandbox_dir(s)?;
                let sb = dir.load(s)?;
                if sb.state != SandboxState::Ready {
                    return Err(RuntimeError::InvalidState {
                        id: s.to_string(),
                        message: "sandbox is not ready".into(),
                    });
                }
                dir.parts(&sb)
            }
            None => SandboxParts::default(),
        };
        let image = self.images.get(&config.image)?;
        let id = new_id();
        let dir = ContainerDir(self.cfg.root.join("containers").join(&id));
        // Held while the container's layers are not yet on record, so that gc
        // does not take them away.
        let _use = self.images.use_lock()?;
        std::fs::create_dir_all(&dir.0).map_err(io_err(&dir.0))?;
        let result = (|| {
            let lowers = self.images.prepare_snapshots(&image)?;
            container::mount_rootfs(&dir, &lowers)?;
            let cgroup_parent = self.cfg.cgroup_parent.clone();
            let spec = spec::build(&spec::SpecInput {
                id: &id,
                config: &config,
                image: &image.config,
                rootfs: &dir.rootfs(),
                sandbox: &sandbox,
                cgroup_parent: &cgroup_parent,
            })?;
            container::prepare_paths(&dir, &spec, &config)?;
            state::write_json(&dir.0.join("config.json"), &spec)
                .map_err(io_err(dir.0.join("config.json")))?;
            let rec = container::new_record(&id, sandbox_id, config, &image, &dir);
            let shim = container::shim_spec(
                &id,
                &rec,
                &self.lc_root(),
                &self.socket_dir(),
                &self.cgroup_path(&id),
            );
            state::write_json(&dir.0.join("shim-run.json"), &shim).map_err(io_err(&dir.0))?;
            state::write_json(&dir.0.join("container.json"), &rec).map_err(io_err(&dir.0))?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(id),
            Err(e) => {
                container::destroy_dir(&dir);
                Err(e)
            }
        }
    }

    fn shim_command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.cfg.shim[0]);
        c.args(&self.cfg.shim[1..]);
        c
    }

    fn remove_blocking(&self, id: &str, dir: &ContainerDir) -> Result<(), RuntimeError> {
        // libcontainer removes the cgroup (killing what is left in it) and its state.
        let lc_dir = self.lc_root().join(id);
        if lc_dir.exists() {
            match libcontainer::container::Container::load(lc_dir.clone()) {
                Ok(mut c) => {
                    if let Err(e) = c.delete(true) {
                        tracing::warn!("deleting container {id} in libcontainer: {e}");
                        let _ = std::fs::remove_dir_all(&lc_dir);
                    }
                }
                Err(_) => {
                    let _ = std::fs::remove_dir_all(&lc_dir);
                }
            }
        }
        let _ = std::fs::remove_file(self.socket_dir().join(format!("{id}.attach")));
        container::destroy_dir(dir);
        Ok(())
    }

    async fn stop_all_in(
        &self,
        sandbox_id: &str,
        grace: Duration,
    ) -> Result<Vec<String>, RuntimeError> {
        let mut ids = Vec::new();
        for st in self.list_containers().await? {
            if st.sandbox_id.as_deref() == Some(sandbox_id) {
                if st.state == ContainerState::Running {
                    self.stop_container(&st.id, grace).await?;
                }
                ids.push(st.id);
            }
        }
        Ok(ids)
    }

    fn layers_in_use(&self) -> BTreeSet<crate::image::digest::Digest> {
        self.list_ids("containers")
            .iter()
            .filter_map(|id| {
                ContainerDir(self.cfg.root.join("containers").join(id))
                    .record(id)
                    .ok()
            })
            .flat_map(|r| r.layers)
            .collect()
    }
}

#[async_trait::async_trait]
impl Runtime for OciRuntime {
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&PullAuth>,
    ) -> Result<Image, RuntimeError> {
        Ok(self.images.pull(reference, auth, None).await?)
    }

    async fn image_status(&self, reference: &str) -> Result<Option<Image>, RuntimeError> {
        match self.images.get(reference) {
            Ok(i) => Ok(Some(i)),
            Err(crate::image::ImageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        Ok(self.images.list()?)
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.images.remove(reference)?;
        Ok(())
    }

    async fn garbage_collect(&self) -> Result<crate::image::GcStats, RuntimeError> {
        let rt = self.clone();
        blocking(move || Ok(rt.images.gc(&rt.layers_in_use())?)).await
    }

    async fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let id = new_id();
        let dir = SandboxDir(self.cfg.root.join("sandboxes").join(&id));
        blocking(move || dir.create(&id, config)).await
    }

    async fn stop_pod_sandbox(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.sandbox_dir(id)?;
        self.stop_all_in(id, grace).await?;
        let mut sb = dir.load(id)?;
        sb.state = SandboxState::NotReady;
        dir.save(&sb)
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.sandbox_dir(id)?;
        for cid in self.stop_all_in(id, Duration::ZERO).await? {
            self.remove_container(&cid).await?;
        }
        blocking(move || {
            dir.destroy();
            Ok(())
        })
        .await
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<Sandbox, RuntimeError> {
        self.sandbox_dir(id)?.load(id)
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<Sandbox>, RuntimeError> {
        Ok(self
            .list_ids("sandboxes")
            .iter()
            .filter_map(|id| self.sandbox_dir(id).ok()?.load(id).ok())
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: Option<&str>,
        config: ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let rt = self.clone();
        let sandbox_id = sandbox_id.map(str::to_string);
        blocking(move || rt.create_blocking(sandbox_id.as_deref(), config)).await
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        if dir.shim_state().is_some() || dir.0.join("shim.log").exists() {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                message: "already started".into(),
            });
        }
        let shim_log = std::fs::File::create(dir.0.join("shim.log"))
            .map_err(io_err(dir.0.join("shim.log")))?;
        let mut child = self
            .shim_command()
            .arg("run")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .kill_on_drop(false)
            .spawn()
            .map_err(io_err(&self.cfg.shim[0]))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        let read = tokio::io::BufReader::new(stdout).read_line(&mut line).await;
        // The shim lives on; reap it whenever it ends so no zombie is left behind.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match read {
            Ok(_) if line.starts_with("ok ") => Ok(()),
            _ => {
                let log = std::fs::read_to_string(dir.0.join("shim.log")).unwrap_or_default();
                let msg = line
                    .trim()
                    .strip_prefix("error: ")
                    .unwrap_or(line.trim())
                    .to_string();
                let mut message = if msg.is_empty() {
                    "shim exited".to_string()
                } else {
                    msg
                };
                if let Some(last) = log.lines().rev().find(|l| !l.trim().is_empty()) {
                    message = format!("{message} ({})", last.trim());
                }
                Err(RuntimeError::Shim {
                    id: id.to_string(),
                    message,
                })
            }
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        let rec = dir.record(id)?;
        if dir.shim_state().is_none() {
            return Ok(());
        }
        let sig = rec
            .stop_signal
            .as_deref()
            .and_then(container::parse_signal)
            .unwrap_or(Signal::SIGTERM);
        if !grace.is_zero()
            && container::signal(&dir, id, sig)?
            && container::wait_stopped(&dir, id, Some(grace)).await?
        {
            return Ok(());
        }
        container::signal(&dir, id, Signal::SIGKILL)?;
        container::wait_stopped(&dir, id, Some(Duration::from_secs(30))).await?;
        Ok(())
    }

    async fn kill_container(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        if !container::signal(&dir, id, signal)? {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                message: "not running".into(),
            });
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        if dir.status(id)?.state == ContainerState::Running {
            container::signal(&dir, id, Signal::SIGKILL)?;
            container::wait_stopped(&dir, id, Some(Duration::from_secs(30))).await?;
        }
        let rt = self.clone();
        let id = id.to_string();
        blocking(move || rt.remove_blocking(&id, &dir)).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.container_dir(id)?.status(id)
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        Ok(self
            .list_ids("containers")
            .iter()
            .filter_map(|id| self.container_dir(id).ok()?.status(id).ok())
            .collect())
    }

    async fn wait_container(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let dir = self.container_dir(id)?;
        container::wait_stopped(&dir, id, None).await?;
        dir.status(id)
    }

    async fn exec(&self, id: &str, config: ExecConfig) -> Result<ExecSession, RuntimeError> {
        let dir = self.container_dir(id)?;
        if dir.status(id)?.state != ContainerState::Running {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                message: "exec needs a running container".into(),
            });
        }
        if config.cmd.is_empty() {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                message: "exec needs a command".into(),
            });
        }
        // The exec'd process runs as the container's own: same user, cwd,
        // capabilities, environment (plus the extra variables).
        let spec: serde_json::Value = state::read_json(&dir.0.join("config.json"))
            .map_err(io_err(dir.0.join("config.json")))?
            .unwrap_or_default();
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(config.cmd);
        process["terminal"] = serde_json::json!(config.tty);
        if let (true, Some(size)) = (config.tty, config.size) {
            // The shim sizes the terminal as soon as it holds it.
            process["consoleSize"] = serde_json::json!({"height": size.rows, "width": size.cols});
        }
        if let Some(env) = process["env"].as_array_mut() {
            for (k, v) in &config.env {
                env.retain(|e| e.as_str().is_none_or(|s| !s.starts_with(&format!("{k}="))));
                env.push(serde_json::json!(format!("{k}={v}")));
            }
        }
        let tag = format!("{:016x}", rand::random::<u64>());
        let process_file = dir.0.join(format!("exec-{tag}.json"));
        state::write_json(&process_file, &process).map_err(io_err(&process_file))?;
        let mut cmd = self.shim_command();
        cmd.arg("exec").arg(&dir.0).arg(&process_file);
        let mut resize_fifo = None;
        let mut resize_writer = None;
        if config.tty {
            let fifo = dir.0.join(format!("exec-{tag}.resize"));
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(crate::error::sys_err("mkfifo"))?;
            cmd.arg("--tty").arg("--resize").arg(&fifo);
            resize_writer = Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&fifo)
                    .map_err(io_err(&fifo))?,
            );
            resize_fifo = Some(fifo);
        }
        let mut child = cmd
            .stdin(if config.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err(&self.cfg.shim[0]))?;
        Ok(ExecSession {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            process_file,
            resize_fifo,
            resize_writer,
            id: id.to_string(),
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut s = self
            .exec(
                id,
                ExecConfig {
                    cmd,
                    ..Default::default()
                },
            )
            .await?;
        let mut out = s.stdout.take().expect("piped");
        let mut err = s.stderr.take().expect("piped");
        let run = async {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let (a, b) = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
            a.and(b).map_err(io_err("exec output"))?;
            let code = s.wait().await?;
            Ok::<_, RuntimeError>(ExecOutput {
                stdout: o,
                stderr: e,
                exit_code: code,
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout { id: id.to_string() }),
        }
    }

    async fn attach(&self, id: &str, opts: AttachOptions) -> Result<AttachSession, RuntimeError> {
        let dir = self.container_dir(id)?;
        if dir.status(id)?.state != ContainerState::Running {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                message: "attach needs a running container".into(),
            });
        }
        let spec: state::ShimRunSpec = state::read_json(&dir.0.join("shim-run.json"))
            .map_err(io_err(dir.0.join("shim-run.json")))?
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "container",
                id: id.to_string(),
            })?;
        AttachSession::connect(spec.attach_socket(), opts).await
    }
}

/// Whether `path` is a mount point (used by tests and cleanup).
pub fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            let p = path.display().to_string();
            m.lines().any(|l| l.split(' ').nth(4) == Some(p.as_str()))
        })
        .unwrap_or(false)
}
