//! Terminals: the console socket through which libcontainer hands over the pty
//! master, sizing it, and proxying an exec's stdio to it.

use super::{ShimError, io_err};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use std::fs::File;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A bound console socket waiting for libcontainer to connect.
pub(super) struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    pub(super) fn bind(path: &Path) -> Result<Listener, ShimError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(io_err(path.display()))?;
        Ok(Listener {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Accepts libcontainer's connection and receives the pty master.
    pub(super) fn receive_master(self) -> Result<OwnedFd, ShimError> {
        let (conn, _) = self.listener.accept().map_err(io_err("console socket"))?;
        let _ = std::fs::remove_file(&self.path);
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .map_err(|e| io_err("console socket")(e.into()))?;
        for c in msg
            .cmsgs()
            .map_err(|e| io_err("console socket")(e.into()))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c
                && let Some(&fd) = fds.first()
            {
                return Ok(owned(fd));
            }
        }
        Err(io_err("console socket")(io::Error::other(
            "no pty master received",
        )))
    }

    /// Unblocks a `receive_master` that will never get a connection.
    pub(super) fn abandon(path: &Path) {
        let _ = std::os::unix::net::UnixStream::connect(path);
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

/// Starts an exec'd process once its terminal has the size the process file asks
/// for (`consoleSize`). libcontainer creates the terminal inside the container and
/// hands it to the shim, which sizes it; this runs in the container's process just
/// before it becomes the command, so the command never sees a terminal without a
/// size. It waits at most a second: the shim may be gone.
#[derive(Clone)]
pub(super) struct SizedTerminal;

impl libcontainer::workload::Executor for SizedTerminal {
    fn exec(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        let process = spec.process().as_ref();
        if process.is_some_and(|p| p.terminal().unwrap_or(false) && p.console_size().is_some()) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while !has_size(&io::stdin()) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
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

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// Whether the terminal behind `tty` has a size.
fn has_size(tty: &impl AsRawFd) -> bool {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    #[allow(unsafe_code)] // TIOCGWINSZ writes one winsize struct that lives on our stack
    let ok = unsafe { tiocgwinsz(tty.as_raw_fd(), &mut ws) }.is_ok();
    ok && ws.ws_row > 0 && ws.ws_col > 0
}
