//! What the host has: CPUs, memory, disk, process IDs; the node's identity
//! (`nodeInfo`); and the pressure conditions derived from what is left free.

use std::path::Path;

/// The host's resources and what pods may use of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeResources {
    /// CPUs, in millicores.
    pub cpu_milli: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Size of the filesystem holding the kubelet's data, in bytes.
    pub ephemeral_storage: i64,
    /// Allocatable memory: capacity minus the eviction threshold.
    pub allocatable_memory: i64,
    /// Allocatable ephemeral storage: capacity minus the eviction threshold.
    pub allocatable_ephemeral_storage: i64,
}

/// Free resources right now, for the pressure conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `MemAvailable`, bytes.
    pub memory_available: u64,
    /// Free bytes (for unprivileged users) on the kubelet's filesystem.
    pub disk_available: u64,
    /// Size of that filesystem.
    pub disk_size: u64,
    /// Processes and threads running.
    pub pids_running: u64,
    /// The PID limit (`kernel.pid_max`).
    pub pid_max: u64,
}

/// The online CPUs this process may run on.
pub fn cpu_count() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1)
}

fn meminfo(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

fn statvfs(path: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            (s.blocks() * frag, s.blocks_available() * frag)
        }
        Err(_) => (0, 0),
    }
}

/// The host's resources; allocatable keeps `memory_reserved` bytes and
/// `disk_reserved_percent` of the disk for the system.
pub fn resources(
    root_dir: &Path,
    memory_reserved: u64,
    disk_reserved_percent: u8,
) -> NodeResources {
    let memory = meminfo("MemTotal").unwrap_or(0) as i64;
    let (disk, _) = statvfs(root_dir);
    let disk = disk as i64;
    NodeResources {
        cpu_milli: cpu_count() * 1000,
        memory,
        ephemeral_storage: disk,
        allocatable_memory: (memory - memory_reserved as i64).max(0),
        allocatable_ephemeral_storage: disk - disk * i64::from(disk_reserved_percent) / 100,
    }
}

/// Free memory, disk and PIDs now.
pub fn usage(root_dir: &Path) -> Usage {
    let (disk_size, disk_available) = statvfs(root_dir);
    let pids_running = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let field = s.split_whitespace().nth(3)?;
            field.split_once('/')?.1.parse().ok()
        })
        .unwrap_or(0);
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    Usage {
        memory_available: meminfo("MemAvailable").unwrap_or(0),
        disk_available,
        disk_size,
        pids_running,
        pid_max,
    }
}

/// The pressure conditions: (memory, disk, pid).
pub fn pressure(u: &Usage, memory_threshold: u64, disk_percent: u8) -> (bool, bool, bool) {
    let memory = u.memory_available < memory_threshold;
    let disk = u.disk_size > 0 && u.disk_available * 100 < u.disk_size * u64::from(disk_percent);
    // Upstream's default: PID pressure when fewer than 10% of PIDs are left.
    let pid = u.pid_max > 0 && u.pids_running * 10 > u.pid_max * 9;
    (memory, disk, pid)
}

/// The node's identity, as `status.nodeInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The DMI product UUID (or the machine ID where there is no DMI).
    pub system_uuid: String,
    /// This boot's ID.
    pub boot_id: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os_image: String,
    /// `amd64`, `arm64`...
    pub architecture: String,
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Reads the node's identity from the host.
pub fn identity() -> NodeIdentity {
    let machine_id = read_trim("/etc/machine-id");
    let system_uuid = Some(read_trim("/sys/class/dmi/id/product_uuid"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| machine_id.clone());
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
    .to_string();
    NodeIdentity {
        machine_id,
        system_uuid,
        boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        kernel_version: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        os_image,
        architecture,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host() {
        let r = resources(Path::new("/"), 100 << 20, 10);
        assert!(r.cpu_milli >= 1000);
        assert!(r.memory > r.allocatable_memory);
        assert!(r.ephemeral_storage > r.allocatable_ephemeral_storage);
        let u = usage(Path::new("/"));
        assert!(u.pids_running > 0 && u.pid_max > 0);
        assert!(!identity().kernel_version.is_empty());
    }

    #[test]
    fn pressure_thresholds() {
        let u = Usage {
            memory_available: 50 << 20,
            disk_available: 5,
            disk_size: 100,
            pids_running: 10,
            pid_max: 100,
        };
        assert_eq!(pressure(&u, 100 << 20, 10), (true, true, false));
        let u = Usage {
            memory_available: 1 << 30,
            disk_available: 50,
            disk_size: 100,
            pids_running: 95,
            pid_max: 100,
        };
        assert_eq!(pressure(&u, 100 << 20, 10), (false, false, true));
    }
}
