//! Files a container's directory holds, shared by the caller and the shim: what the
//! shim is told, what it reports, and how the exit is recorded. Each is written to a
//! temporary file and renamed, so readers never see half of one.

use serde::{Serialize, de::DeserializeOwned};
use std::io;
use std::path::{Path, PathBuf};

/// Told to `rkube shim run` (file `shim-run.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShimRunSpec {
    /// Container ID (libcontainer's too).
    pub id: String,
    /// libcontainer's state root.
    pub libcontainer_root: PathBuf,
    /// CRI log file.
    pub log_path: PathBuf,
    /// Where the shim binds its sockets (`sun_path` holds 108 bytes, so not in the
    /// container directory, whose path may be long).
    pub socket_dir: PathBuf,
    /// Keep a stdin pipe.
    pub stdin: bool,
    /// Close stdin when the first attached writer leaves.
    pub stdin_once: bool,
    /// Run on a terminal.
    pub tty: bool,
    /// The memory cgroup file that counts OOM kills (`memory.oom_control` on v1,
    /// `memory.events` on v2), read when the container exits.
    pub oom_file: Option<PathBuf>,
}

impl ShimRunSpec {
    /// The attach socket of the container.
    pub fn attach_socket(&self) -> PathBuf {
        self.socket_dir.join(format!("{}.attach", self.id))
    }

    /// A fresh path for a console socket.
    pub fn console_socket(&self) -> PathBuf {
        self.socket_dir
            .join(format!("{}-{:08x}.console", self.id, rand::random::<u32>()))
    }
}

/// Written by the shim once the container runs (file `shim.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShimState {
    /// The shim's PID.
    pub shim_pid: i32,
    /// Start time of the shim (see `pid_start`).
    #[serde(default)]
    pub shim_start: u64,
    /// The container's init PID (as seen from the host).
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// so that a recycled PID is never mistaken for the container.
    pub pid_start: u64,
    /// When the process started (RFC 3339).
    pub started_at: String,
}

/// Written by the shim when the container's init exits (file `exit.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ExitState {
    /// Exit code; 128+signal when killed by a signal, as CRI reports it.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// When it exited (RFC 3339).
    pub finished_at: String,
    /// Whether the memory cgroup's OOM killer struck.
    pub oom_killed: bool,
}

/// Writes `value` as JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).map_err(io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Reads JSON from `path`; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Start time of a process in clock ticks since boot, `None` if it is gone.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether `pid` is still the process that started at `start` (and not a zombie).
pub fn pid_alive(pid: i32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(i) = stat.rfind(')') else {
        return false;
    };
    let rest = &stat[i + 2..];
    let state = rest.split(' ').next().unwrap_or("");
    state != "Z" && state != "X" && pid_start_time(pid) == Some(start)
}

/// Now, in RFC 3339 with nanoseconds (the form CRI log lines use).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let start = super::pid_start_time(me).unwrap();
        assert!(super::pid_alive(me, start));
        assert!(!super::pid_alive(me, start + 1));
    }
}
