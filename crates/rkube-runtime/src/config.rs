//! The plain structs callers describe sandboxes, containers and execs with (the
//! kubelet fills them from Pod specs; this crate never sees a Pod).

use crate::image::registries::RegistriesConfig;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// Where the runtime keeps its state and how it starts shims.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Images, snapshots, sandboxes and containers (`<data-dir>/runtime`).
    pub root: PathBuf,
    /// libcontainer's state (tmpfs, gone at reboot like the containers): `/run/rkube`.
    pub run_root: PathBuf,
    /// Program and leading arguments that run the shim: `[/proc/self/exe, "shim"]`
    /// for the `rkube` binary.
    pub shim: Vec<OsString>,
    /// Mirrors, credentials and insecure registries.
    pub registries: RegistriesConfig,
    /// Parent of every container's cgroup (cgroupfs path), `/rkube`.
    pub cgroup_parent: String,
}

impl RuntimeConfig {
    /// The defaults for a node whose data directory is `data_dir`, with the shim being
    /// this very binary's `shim` subcommand.
    pub fn new(data_dir: impl Into<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            root: data_dir.into().join("runtime"),
            run_root: PathBuf::from("/run/rkube"),
            shim: vec!["/proc/self/exe".into(), "shim".into()],
            registries: RegistriesConfig::default(),
            cgroup_parent: "/rkube".into(),
        }
    }
}

/// DNS settings written to a sandbox's `/etc/resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line.
    pub options: Vec<String>,
}

/// A pod sandbox: the namespaces (network, IPC, UTS) and files its containers share.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SandboxConfig {
    /// A name for people (the kubelet uses `<pod>_<namespace>_<uid>_<attempt>`).
    pub name: String,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// resolv.conf contents; `None` copies the host's.
    pub dns: Option<DnsConfig>,
    /// Extra `/etc/hosts` lines: IP → names.
    pub hosts: Vec<(String, Vec<String>)>,
    /// Share the host's network namespace (hostNetwork pods) instead of a new one.
    pub host_network: bool,
    /// Size of the shared `/dev/shm` in bytes (64 MiB when zero).
    pub shm_size: u64,
    /// Labels, kept for listing.
    pub labels: BTreeMap<String, String>,
}

/// A bind mount from the host into a container.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Host path (file or directory).
    pub host_path: PathBuf,
    /// Path inside the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Capabilities to add to and drop from the default set (names with or without
/// `CAP_`, any case; `ALL` means every capability).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// Added.
    pub add: Vec<String>,
    /// Dropped.
    pub drop: Vec<String>,
}

/// cgroup limits of a container.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// CPU shares (cgroup v1 `cpu.shares`; v2 weight is derived).
    pub cpu_shares: Option<u64>,
    /// CPU quota in microseconds per period (`cpu.cfs_quota_us`).
    pub cpu_quota: Option<i64>,
    /// CPU period in microseconds (default 100000).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
    /// `oom_score_adj` of the container's processes.
    pub oom_score_adj: Option<i32>,
}

/// Who the container's processes run as.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserConfig {
    /// `runAsUser`; `None` takes the image's USER (or root).
    pub uid: Option<u32>,
    /// `runAsGroup`; `None` takes the user's primary group.
    pub gid: Option<u32>,
    /// `supplementalGroups`, added to the user's groups from `/etc/group`.
    pub supplemental_groups: Vec<u32>,
}

/// A container to create in a sandbox.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// Container name within its sandbox.
    pub name: String,
    /// Image reference or ID; the image must already be pulled.
    pub image: String,
    /// Kubernetes `command`: replaces the image's ENTRYPOINT (and drops its CMD).
    pub command: Vec<String>,
    /// Kubernetes `args`: replaces the image's CMD.
    pub args: Vec<String>,
    /// Environment, added over the image's (later entries win).
    pub env: Vec<(String, String)>,
    /// Working directory; `None` takes the image's, else `/`.
    pub working_dir: Option<String>,
    /// User and groups.
    pub user: UserConfig,
    /// Bind mounts (volumes).
    pub mounts: Vec<Mount>,
    /// Host file bound at `termination_message_path` (created empty if missing).
    pub termination_log: Option<PathBuf>,
    /// Where the termination log appears inside (default `/dev/termination-log`).
    pub termination_message_path: Option<String>,
    /// Mount the root filesystem read-only.
    pub read_only_rootfs: bool,
    /// Every capability, every device, no masked paths.
    pub privileged: bool,
    /// Capability changes against the default set.
    pub capabilities: Capabilities,
    /// Set `no_new_privs` (Kubernetes `allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
    /// cgroup limits.
    pub resources: Resources,
    /// Keep a stdin pipe open (attach can write to it).
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Run on a terminal (logs then carry the terminal's output as stdout).
    pub tty: bool,
    /// CRI log file (default `<container dir>/container.log`).
    pub log_path: Option<PathBuf>,
    /// Labels, kept for listing.
    pub labels: BTreeMap<String, String>,
}

/// A command to run in a running container.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecConfig {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Give the process a stdin.
    pub stdin: bool,
    /// The terminal's size when it opens (with `tty`), so that the process never
    /// sees a terminal without a size.
    pub size: Option<TermSize>,
}

/// A terminal size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TermSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}
