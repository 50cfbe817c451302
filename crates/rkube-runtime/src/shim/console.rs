//! Terminals: the console socket through which libcontainer hands over the pty
//! master, sizing it, and proxying an exec's stdio to it.

use super::{ShimError, io_err};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use std::fs::File;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A bound console socket waiting for libcontainer to connect.
///
/// The pty master is received after the container's process was built, on the
/// same thread: libcontainer starts that process with a raw `clone`, which runs no
/// `atfork` handlers, so a clone taken while another thread of the shim held an
/// allocator or stdio lock would leave the child waiting on that lock for ever.
/// The shim therefore has no second thread while it builds. libcontainer's
/// connection and the master it sends wait in the socket's backlog meanwhile.
pub(super) struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

/// How long the shim waits for libcontainer's connection once the process is built.
const RECEIVE_TIMEOUT_MS: u16 = 10_000;

impl Listener {
    pub(super) fn bind(path: &Path) -> Result<Listener, ShimError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(io_err(path.display()))?;
        Ok(Listener {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Accepts libcontainer's connection and receives the pty master; gives up
    /// after `RECEIVE_TIMEOUT_MS`. The socket file goes with it.
    pub(super) fn receive_master(self) -> Result<OwnedFd, ShimError> {
        let err = |e: io::Error| io_err("console socket")(e);
        let mut ready = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut ready, PollTimeout::from(RECEIVE_TIMEOUT_MS)).map_err(|e| err(e.into()))? == 0
        {
            return Err(err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the container's process sent no terminal",
            )));
        }
        let (conn, _) = self.listener.accept().map_err(err)?;
        let timeout = Duration::from_millis(RECEIVE_TIMEOUT_MS.into());
        conn.set_read_timeout(Some(timeout)).map_err(err)?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .map_err(|e| err(e.into()))?;
        for c in msg.cmsgs().map_err(|e| err(e.into()))? {
            if let ControlMessageOwned::ScmRights(fds) = c
                && let Some(&fd) = fds.first()
            {
                return Ok(owned(fd));
            }
        }
        Err(err(io::Error::other("no pty master received")))
    }
}

/// The socket file goes with the listener, whatever became of the build.
impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[allow(unsafe_code)] // the fd was just received via SCM_RIGHTS and is owned by no one else
fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    unsafe { OwnedFd::from_raw_fd(fd) }
}

nix::ioctl_write_ptr_bad!(tiocswinsz, nix::libc::TIOCSWINSZ, nix::libc::winsize);

/// Sets a terminal's size.
pub(super) fn set_size(tty: &impl AsRawFd, cols: u16, rows: u16) {
    let ws = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    #[allow(unsafe_code)] // TIOCSWINSZ reads one winsize struct that lives on our stack
    let _ = unsafe { tiocswinsz(tty.as_raw_fd(), &ws) };
}

/// Copies our stdin to the terminal and the terminal to our stdout until the
/// terminal closes; applies `cols rows` lines from the `resize` FIFO.
pub(super) fn proxy(master: File, resize: Option<&Path>) -> Result<(), ShimError> {
    let mut to_term = master.try_clone().map_err(io_err("console"))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdin = io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_term.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    if let Some(fifo) = resize {
        let term = master.try_clone().map_err(io_err("console"))?;
        let fifo = fifo.to_path_buf();
        std::thread::spawn(move || {
            // Read-write so that the FIFO never reports EOF when a writer leaves.
            let Ok(f) = File::options().read(true).write(true).open(&fifo) else {
                return;
            };
            for line in io::BufRead::lines(io::BufReader::new(f)).map_while(Result::ok) {
                if let Some((c, r)) = line.split_once(' ')
                    && let (Ok(c), Ok(r)) = (c.trim().parse(), r.trim().parse())
                {
                    set_size(&term, c, r);
                }
            }
        });
    }
    let mut from_term = master;
    let mut out = io::stdout().lock();
    let mut buf = [0u8; 8192];
    loop {
        match from_term.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the last slave closes
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Sizes an exec'd process's terminal (`consoleSize` of the process file) before
/// the process starts: libcontainer creates the terminal inside the container but
/// leaves its size at zero. This runs in the container's process just before it
/// becomes the command, on the terminal it holds as stdin, so the command never
/// sees a terminal without a size and the shim need not race to size it first.
#[derive(Clone)]
pub(super) struct SizedTerminal;

impl libcontainer::workload::Executor for SizedTerminal {
    fn exec(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        if let Some(p) = spec.process()
            && p.terminal().unwrap_or(false)
            && let Some(size) = p.console_size()
        {
            let dim = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
            set_size(&io::stdin(), dim(size.width()), dim(size.height()));
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}
