//! A fixture for root tests: a runtime in its own directories, cgroup parent and
//! run root, torn down on drop (processes, mounts, namespaces, cgroups) even when
//! the test fails.

#![allow(dead_code)]

use rkube_runtime::{ContainerConfig, OciRuntime, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BUSYBOX: &str = "127.0.0.1:5000/rkube-test/busybox:1";
pub const HTTPD: &str = "127.0.0.1:5000/rkube-test/httpd:1";

pub fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

pub struct Fixture {
    pub rt: OciRuntime,
    pub cfg: RuntimeConfig,
    pub base: PathBuf,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let tag = unique();
        let base = std::env::temp_dir().join(format!("rkube-ct-{tag}"));
        let mut cfg = RuntimeConfig::new(&base);
        cfg.run_root = PathBuf::from(format!("/run/rkube-test-{tag}"));
        cfg.cgroup_parent = format!("/rkube-test-{tag}");
        cfg.shim = vec![
            env!("CARGO_BIN_EXE_rkube-runtime-dev").into(),
            "shim".into(),
        ];
        let rt = OciRuntime::new(cfg.clone()).unwrap();
        let f = Fixture { rt, cfg, base };
        f.rt.pull_image(BUSYBOX, None).await.unwrap();
        f
    }

    pub fn config(&self, cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: "test".into(),
            image: BUSYBOX.into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Creates and starts a container; its ID.
    pub async fn run(&self, cfg: ContainerConfig) -> String {
        let id = self.rt.create_container(None, cfg).await.unwrap();
        self.rt.start_container(&id).await.unwrap();
        id
    }

    /// Waits for the container to stop, failing the test after a minute rather
    /// than hanging it.
    pub async fn wait(&self, id: &str) -> rkube_runtime::ContainerStatus {
        tokio::time::timeout(Duration::from_secs(60), self.rt.wait_container(id))
            .await
            .expect("container did not stop within a minute")
            .unwrap()
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(
            self.base
                .join("runtime/containers")
                .join(id)
                .join("container.log"),
        )
        .unwrap_or_default()
    }

    /// The text of the log's stdout/stderr records, as `stream text` lines.
    pub fn log_lines(&self, id: &str) -> Vec<String> {
        self.log(id)
            .lines()
            .map(|l| {
                let parts: Vec<&str> = l.splitn(4, ' ').collect();
                format!("{} {}", parts[1], parts.get(3).unwrap_or(&""))
            })
            .collect()
    }

    pub async fn wait_log(&self, id: &str, needle: &str) {
        for _ in 0..500 {
            if self.log(id).contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{needle:?} never appeared in the log: {}", self.log(id));
    }

    pub fn cgroup_dir(&self, controller: &str, id: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(self.cfg.cgroup_parent.trim_start_matches('/'))
            .join(id)
    }
}

fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let containers = self.base.join("runtime/containers");
        for e in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = e.path();
            if let Ok(s) = std::fs::read(dir.join("shim.json")) {
                let v: serde_json::Value = serde_json::from_slice(&s).unwrap_or_default();
                for k in ["pid", "shim_pid"] {
                    if let Some(p) = v[k].as_i64() {
                        kill_pid(p as i32);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for e in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
        for e in std::fs::read_dir(self.base.join("runtime/sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in ["ns/net", "ns/ipc", "ns/uts", "shm"] {
                let _ = nix::mount::umount2(&e.path().join(f), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // Cgroups: kill what is left in them, then remove children and the parent.
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = ctrl
                .path()
                .join(self.cfg.cgroup_parent.trim_start_matches('/'));
            if !parent.is_dir() {
                continue;
            }
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    if let Ok(procs) = std::fs::read_to_string(child.path().join("cgroup.procs")) {
                        procs
                            .lines()
                            .filter_map(|l| l.parse().ok())
                            .for_each(kill_pid);
                    }
                    for _ in 0..50 {
                        if std::fs::remove_dir(child.path()).is_ok() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
        let _ = std::fs::remove_dir_all(&self.base);
        let _ = std::fs::remove_dir_all(&self.cfg.run_root);
    }
}
