//! `rkube shim`: the per-container parent process (the containerd-shim model).
//!
//! The caller never forks: it runs `rkube shim run <container-dir>`, a fresh
//! single-threaded process that starts its own session, creates and starts the
//! container with libcontainer (the container's init is its child), reports
//! `ok <pid>` on stdout, and then, detached from the caller, copies the container's
//! stdout/stderr into the CRI log and to attached clients, waits for the exit and
//! records it in `exit.json`. `rkube shim exec` runs one process in a running
//! container the same way, its stdio being the caller's pipes.

pub mod frame;
pub mod log;

mod attach;
mod console;

use crate::state::{self, ExitState, ShimRunSpec, ShimState};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors of the shim process.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The command line is not one the runtime writes.
    #[error(
        "usage: shim run <container-dir> | shim exec <container-dir> <process.json> [--tty] [--resize <fifo>]"
    )]
    Usage,
    /// libcontainer refused or failed.
    #[error("libcontainer: {0}")]
    Container(#[from] libcontainer::error::LibcontainerError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The errno.
        source: nix::Error,
    },
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ShimError {
    move |source| ShimError::Sys { what, source }
}
fn io_err(what: impl ToString) -> impl FnOnce(io::Error) -> ShimError {
    move |source| ShimError::Io {
        what: what.to_string(),
        source,
    }
}

/// Runs the shim with its arguments (after `shim`); returns the process exit code.
/// Must be called before any thread is started or async runtime built.
pub fn main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match args.first().map(String::as_str) {
        Some("run") if args.len() == 2 => match run(Path::new(&args[1])) {
            Ok(code) => code,
            Err(e) => {
                // Before `ok`, stdout goes to the caller: tell it why.
                println!("error: {e}");
                1
            }
        },
        Some("exec") if args.len() >= 3 => {
            let mut tty = false;
            let mut resize = None;
            let mut i = 3;
            while i < args.len() {
                match args[i].as_str() {
                    "--tty" => tty = true,
                    "--resize" if i + 1 < args.len() => {
                        i += 1;
                        resize = Some(PathBuf::from(&args[i]));
                    }
                    _ => {
                        eprintln!("{}", ShimError::Usage);
                        return 2;
                    }
                }
                i += 1;
            }
            let process = PathBuf::from(&args[2]);
            let result = exec(Path::new(&args[1]), &process, tty, resize.as_deref());
            let (code, report) = match result {
                Ok(code) => (code, serde_json::json!({ "exit_code": code })),
                Err(e) => (126, serde_json::json!({ "error": e.to_string() })),
            };
            let _ = state::write_json(&process.with_extension("result"), &report);
            code
        }
        _ => {
            eprintln!("{}", ShimError::Usage);
            2
        }
    }
}

fn wait_exit(pid: Pid) -> (i32, Option<i32>) {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return (code, None),
            Ok(WaitStatus::Signaled(_, sig, _)) => return (128 + sig as i32, Some(sig as i32)),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return (255, None),
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))
}

fn devnull() -> Result<File, ShimError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_err("/dev/null"))
}

fn run(dir: &Path) -> Result<i32, ShimError> {
    let spec: ShimRunSpec = state::read_json(&dir.join("shim-run.json"))
        .map_err(io_err("shim-run.json"))?
        .ok_or_else(|| io_err("shim-run.json")(io::ErrorKind::NotFound.into()))?;
    // Our own session: the caller's exit, its terminal or its process group's
    // signals never reach us.
    nix::unistd::setsid().map_err(sys("setsid"))?;

    if let Some(parent) = spec.log_path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent.display()))?;
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(io_err(spec.log_path.display()))?;
    let log = Arc::new(log::CriLog::new(log_file));
    let hub = attach::Hub::new(spec.stdin_once);

    let mut builder = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
        .with_root_path(&spec.libcontainer_root)?
        .validate_id()?;
    let mut outputs: Vec<(&'static str, File)> = Vec::new();
    let mut console = None;
    if spec.tty {
        let sock = spec.console_socket();
        console = Some(console::Listener::bind(&sock)?);
        builder = builder.with_console_socket(Some(&sock));
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        builder = builder.with_stdout(out_w).with_stderr(err_w);
        outputs.push(("stdout", File::from(out_r)));
        outputs.push(("stderr", File::from(err_r)));
        if spec.stdin {
            let (in_r, in_w) = pipe()?;
            builder = builder.with_stdin(in_r);
            hub.set_stdin(File::from(in_w));
        } else {
            builder = builder.with_stdin(devnull()?);
        }
    }
    // No thread may run while libcontainer clones (see `console::Listener`).
    let built = builder
        .as_init(dir)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let mut container = built?;
    if let Some(listener) = console {
        let master = File::from(listener.receive_master()?);
        hub.set_stdin(master.try_clone().map_err(io_err("console"))?);
        hub.set_tty(master.try_clone().map_err(io_err("console"))?);
        outputs.push(("stdout", master));
        if !spec.stdin {
            hub.close_stdin_after_start();
        }
    }
    container.start()?;
    let pid = container
        .pid()
        .ok_or_else(|| io_err("container")(io::Error::other("no pid after start")))?;
    let shim_state = ShimState {
        shim_pid: std::process::id() as i32,
        shim_start: state::pid_start_time(std::process::id() as i32).unwrap_or(0),
        pid: pid.as_raw(),
        pid_start: state::pid_start_time(pid.as_raw()).unwrap_or(0),
        started_at: state::now_rfc3339(),
    };
    state::write_json(&dir.join("shim.json"), &shim_state).map_err(io_err("shim.json"))?;

    attach::listen(&spec.attach_socket(), hub.clone())?;
    let mut copiers = Vec::new();
    for (stream, src) in outputs {
        let (log, hub) = (log.clone(), hub.clone());
        copiers.push(std::thread::spawn(move || {
            copy_output(src, stream, &log, &hub)
        }));
    }

    // Tell the caller, then let go of its pipe: from here on nobody reads our stdout.
    println!("ok {}", pid.as_raw());
    let _ = io::stdout().flush();
    let null = devnull()?;
    let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);

    let (exit_code, signal) = wait_exit(pid);
    // The container had its own PID namespace, so its other processes died with
    // init and the pipes reach EOF; a shared namespace may keep them open, hence the
    // bound on the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for c in copiers {
        while !c.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if c.is_finished() {
            let _ = c.join();
        }
    }
    let oom_killed = spec.oom_file.as_deref().is_some_and(oom_kills);
    let exit = ExitState {
        exit_code,
        signal,
        finished_at: state::now_rfc3339(),
        oom_killed,
    };
    state::write_json(&dir.join("exit.json"), &exit).map_err(io_err("exit.json"))?;
    hub.exited(exit_code);
    let _ = std::fs::remove_file(spec.attach_socket());
    Ok(0)
}

/// Whether the memory cgroup counted an OOM kill.
fn oom_kills(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| {
        t.lines().any(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
    })
}

fn copy_output(mut src: File, stream: &'static str, log: &log::CriLog<File>, hub: &attach::Hub) {
    let mut splitter = log::LineSplitter::new();
    let mut buf = vec![0u8; 32 * 1024];
    let kind = if stream == "stdout" {
        frame::STDOUT
    } else {
        frame::STDERR
    };
    let mut emit = |full: bool, text: &[u8]| {
        if let Err(e) = log.record(stream, full, text) {
            eprintln!("shim: writing log: {e}");
        }
    };
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hub.broadcast(kind, &buf[..n]);
                splitter.feed(&buf[..n], &mut emit);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EIO: a terminal whose last slave closed.
            Err(_) => break,
        }
    }
    splitter.finish(&mut emit);
}

fn exec(dir: &Path, process: &Path, tty: bool, resize: Option<&Path>) -> Result<i32, ShimError> {
    let spec: ShimRunSpec = state::read_json(&dir.join("shim-run.json"))
        .map_err(io_err("shim-run.json"))?
        .ok_or_else(|| io_err("shim-run.json")(io::ErrorKind::NotFound.into()))?;
    let mut builder = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
        .with_root_path(&spec.libcontainer_root)?
        .validate_id()?;
    let sock = spec.console_socket();
    let listener = if tty {
        let l = console::Listener::bind(&sock)?;
        builder = builder
            .with_console_socket(Some(&sock))
            .with_executor(console::SizedTerminal);
        Some(l)
    } else {
        None
    };
    // No thread may run while libcontainer clones (see `console::Listener`).
    let built = builder
        .as_tenant()
        .with_process(Some(process))
        .with_detach(true)
        .build();
    let pid = built?;
    // The caller kills the process by this PID when an exec times out.
    let _ = std::fs::write(process.with_extension("pid"), pid.as_raw().to_string());
    if let Some(l) = listener {
        let master = match l.receive_master() {
            Ok(m) => File::from(m),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = wait_exit(pid);
                return Err(e);
            }
        };
        console::proxy(master, resize)?;
    }
    Ok(wait_exit(pid).0)
}
