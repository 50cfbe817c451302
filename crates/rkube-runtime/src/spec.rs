//! Builds the OCI runtime spec (`config.json`) of a container from its
//! [`ContainerConfig`], its image's config and its sandbox, the way containerd's CRI
//! plugin does: default capabilities, masked paths, standard mounts, cgroup limits.

use crate::config::{ContainerConfig, Resources};
use crate::image::manifest::ImageConfig;
use crate::rootfs_path::resolve_in_root;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Errors building a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the container nor the image says what to run.
    #[error("no command: the container has no command/args and the image no ENTRYPOINT/CMD")]
    NoCommand,
    /// The image's USER names a user or group that `/etc/passwd` / `/etc/group` lack.
    #[error("unable to find user {0:?} in the image")]
    UnknownUser(String),
    /// A capability name is not known.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A mount destination is not absolute.
    #[error("mount destination {0:?} is not an absolute path")]
    RelativeMount(String),
}

/// Capabilities a container gets by default (Docker's and containerd's set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command line as Kubernetes defines it: `command` replaces ENTRYPOINT (and
/// drops CMD), `args` replaces CMD.
pub fn process_args(cfg: &ContainerConfig, img: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = if !cfg.command.is_empty() {
        cfg.command.iter().chain(&cfg.args).cloned().collect()
    } else if !cfg.args.is_empty() {
        img.entrypoint.iter().chain(&cfg.args).cloned().collect()
    } else {
        img.entrypoint.iter().chain(&img.cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// The image's environment with the container's over it (same key: container wins,
/// keeping the first position), PATH defaulted.
pub fn environment(
    cfg: &ContainerConfig,
    img: &ImageConfig,
    hostname: Option<&str>,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    if let Some(h) = hostname {
        set("HOSTNAME", h);
    }
    for e in &img.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    for (k, v) in &cfg.env {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Who runs the process: (uid, gid, additional gids), looked up in the image's
/// `/etc/passwd` and `/etc/group` where names are used.
pub fn resolve_user(
    cfg: &ContainerConfig,
    img: &ImageConfig,
    rootfs: &Path,
) -> Result<(u32, u32, Vec<u32>), SpecError> {
    let passwd = read_db(rootfs, "/etc/passwd");
    let group = read_db(rootfs, "/etc/group");
    let by_uid = |uid: u32| {
        passwd
            .iter()
            .find(|f| f.get(2).and_then(|s| s.parse().ok()) == Some(uid))
    };
    let (uid, user_gid, name) = match cfg.user.uid {
        Some(uid) => {
            let entry = by_uid(uid);
            (
                uid,
                entry.and_then(|f| f.get(3)?.parse().ok()),
                entry.map(|f| f[0].clone()),
            )
        }
        None => {
            let spec = img.user.split(':').next().unwrap_or("");
            if spec.is_empty() {
                (0, Some(0), Some("root".to_string()))
            } else if let Ok(uid) = spec.parse::<u32>() {
                let entry = by_uid(uid);
                (
                    uid,
                    entry.and_then(|f| f.get(3)?.parse().ok()),
                    entry.map(|f| f[0].clone()),
                )
            } else {
                let f = passwd
                    .iter()
                    .find(|f| f[0] == spec)
                    .ok_or_else(|| SpecError::UnknownUser(spec.to_string()))?;
                let uid = f
                    .get(2)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| SpecError::UnknownUser(spec.into()))?;
                (
                    uid,
                    f.get(3).and_then(|s| s.parse().ok()),
                    Some(spec.to_string()),
                )
            }
        }
    };
    let image_group = img
        .user
        .split_once(':')
        .map(|(_, g)| g)
        .filter(|_| cfg.user.uid.is_none());
    let gid = match (cfg.user.gid, image_group) {
        (Some(g), _) => g,
        (None, Some(g)) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f.get(2)?.parse().ok())
                .ok_or_else(|| SpecError::UnknownUser(format!("group {g}")))?,
        },
        (None, None) => user_gid.unwrap_or(0),
    };
    let mut extra: Vec<u32> = Vec::new();
    if let Some(n) = &name {
        for f in &group {
            if f.get(3).is_some_and(|m| m.split(',').any(|u| u == n))
                && let Some(g) = f.get(2).and_then(|s| s.parse().ok())
                && g != gid
                && !extra.contains(&g)
            {
                extra.push(g);
            }
        }
    }
    for g in &cfg.user.supplemental_groups {
        if !extra.contains(g) {
            extra.push(*g);
        }
    }
    Ok((uid, gid, extra))
}

fn read_db(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    let Ok(p) = resolve_in_root(rootfs, Path::new(file)) else {
        return Vec::new();
    };
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

fn cap_name(n: &str) -> Result<String, SpecError> {
    let up = n.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability(n.to_string()))
    }
}

/// The capability set: defaults (or all when privileged), plus `add`, minus `drop`.
pub fn capabilities(cfg: &ContainerConfig) -> Result<Vec<String>, SpecError> {
    let is_all = |v: &Vec<String>| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: Vec<String> = if cfg.privileged || is_all(&cfg.capabilities.add) {
        ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    if !cfg.privileged {
        for a in cfg
            .capabilities
            .add
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case("ALL"))
        {
            let n = cap_name(a)?;
            if !caps.contains(&n) {
                caps.push(n);
            }
        }
        if is_all(&cfg.capabilities.drop) {
            caps.clear();
        }
        for d in cfg
            .capabilities
            .drop
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case("ALL"))
        {
            let n = cap_name(d)?;
            caps.retain(|c| *c != n);
        }
    }
    Ok(caps)
}

/// Host files and namespaces a container takes from its sandbox.
#[derive(Clone, Debug, Default)]
pub struct SandboxParts {
    /// Network namespace to join (`None`: a new one, or the host's with `host_network`).
    pub netns: Option<PathBuf>,
    /// IPC namespace to join.
    pub ipcns: Option<PathBuf>,
    /// UTS namespace to join.
    pub utsns: Option<PathBuf>,
    /// Share the host's network namespace.
    pub host_network: bool,
    /// Files bound at /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub hosts: Option<PathBuf>,
    /// See `hosts`.
    pub hostname_file: Option<PathBuf>,
    /// See `hosts`.
    pub resolv_conf: Option<PathBuf>,
    /// The sandbox's shared /dev/shm.
    pub shm: Option<PathBuf>,
    /// Hostname (for the HOSTNAME variable, and set when the container has its own UTS namespace).
    pub hostname: Option<String>,
}

fn bind(dst: &str, src: &Path, ro: bool) -> Value {
    let mut opts = vec!["rbind", "rprivate"];
    opts.push(if ro { "ro" } else { "rw" });
    json!({"destination": dst, "type": "bind", "source": src, "options": opts})
}

/// Everything [`build`] needs.
pub struct SpecInput<'a> {
    /// Container ID (used for the cgroup path).
    pub id: &'a str,
    /// What the caller asked for.
    pub config: &'a ContainerConfig,
    /// What the image says.
    pub image: &'a ImageConfig,
    /// The mounted root filesystem (user lookup).
    pub rootfs: &'a Path,
    /// From the sandbox.
    pub sandbox: &'a SandboxParts,
    /// cgroup parent, e.g. `/rkube`.
    pub cgroup_parent: &'a str,
}

/// Builds the OCI runtime spec; `root.path` is `rootfs` relative to the bundle.
pub fn build(input: &SpecInput<'_>) -> Result<Value, SpecError> {
    let cfg = input.config;
    let sb = input.sandbox;
    let args = process_args(cfg, input.image)?;
    let env = environment(cfg, input.image, sb.hostname.as_deref());
    let (uid, gid, extra_gids) = resolve_user(cfg, input.image, input.rootfs)?;
    let caps = capabilities(cfg)?;
    let cwd = cfg
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(input.image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if cfg.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if cfg.privileged { "rw" } else { "ro" }]}),
    ];
    match &sb.shm {
        Some(shm) => mounts.push(bind("/dev/shm", shm, false)),
        None => mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]})),
    }
    // Volumes first, so that the sandbox files and the termination log, like
    // Kubernetes', are not hidden by a volume mounted over /etc or /dev.
    for m in &cfg.mounts {
        if !m.container_path.starts_with('/') {
            return Err(SpecError::RelativeMount(m.container_path.clone()));
        }
        mounts.push(bind(&m.container_path, &m.host_path, m.read_only));
    }
    let user_mounts: Vec<&str> = cfg
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for (dst, src) in [
        ("/etc/hosts", &sb.hosts),
        ("/etc/hostname", &sb.hostname_file),
        ("/etc/resolv.conf", &sb.resolv_conf),
    ] {
        if let Some(src) = src
            && !user_mounts.contains(&dst)
        {
            mounts.push(bind(dst, src, cfg.read_only_rootfs));
        }
    }
    if let Some(tl) = &cfg.termination_log {
        let dst = cfg
            .termination_message_path
            .as_deref()
            .unwrap_or("/dev/termination-log");
        mounts.push(bind(dst, tl, false));
    }

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    let ns = |kind: &str, path: &Option<PathBuf>| match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    };
    if !sb.host_network {
        namespaces.push(ns("network", &sb.netns));
    }
    namespaces.push(ns("ipc", &sb.ipcns));
    namespaces.push(ns("uts", &sb.utsns));

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": format!("{}/{}", input.cgroup_parent.trim_end_matches('/'), input.id),
        "resources": resources(&cfg.resources, cfg.privileged),
    });
    if !cfg.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    // As many open files as the node allows (raising the hard limit would need
    // CAP_SYS_RESOURCE, which a node inside a container may lack).
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1_048_576, |(_, hard)| hard.min(1_048_576));
    let mut process = json!({
        "terminal": cfg.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": cfg.no_new_privs,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
    });
    if let Some(adj) = cfg.resources.oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": cfg.read_only_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if sb.utsns.is_none()
        && let Some(h) = &sb.hostname
    {
        spec["hostname"] = json!(h);
    }
    Ok(spec)
}

fn resources(r: &Resources, privileged: bool) -> Value {
    let mut v = json!({
        "devices": [{"allow": privileged, "access": "rwm"}],
    });
    let mut cpu = serde_json::Map::new();
    if let Some(s) = r.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = r.cpu_quota {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(r.cpu_period.unwrap_or(100_000)));
    }
    if !cpu.is_empty() {
        v["cpu"] = Value::Object(cpu);
    }
    if let Some(m) = r.memory_limit {
        v["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(p) = r.pids_limit {
        v["pids"] = json!({"limit": p});
    }
    v
}

#[cfg(test)]
mod tests;
