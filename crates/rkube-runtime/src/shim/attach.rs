//! The shim's attach socket: clients receive the container's output as frames and
//! may write to its stdin and resize its terminal.

use super::frame;
use super::{ShimError, io_err};
use std::fs::File;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

struct Client {
    id: u64,
    sock: UnixStream,
    stdout: bool,
    stderr: bool,
}

#[derive(Default)]
struct Inner {
    clients: Vec<Client>,
    stdin: Option<File>,
    tty: Option<File>,
    exit: Option<i32>,
    next_id: u64,
}

/// Who is attached, and the container's stdin and terminal.
#[derive(Clone)]
pub(super) struct Hub {
    inner: Arc<Mutex<Inner>>,
    stdin_once: bool,
}

impl Hub {
    pub(super) fn new(stdin_once: bool) -> Hub {
        Hub {
            inner: Arc::default(),
            stdin_once,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_stdin(&self, f: File) {
        self.lock().stdin = Some(f);
    }

    pub(super) fn set_tty(&self, f: File) {
        self.lock().tty = Some(f);
    }

    /// A terminal container without stdin: nobody may type into it.
    pub(super) fn close_stdin_after_start(&self) {
        self.lock().stdin = None;
    }

    pub(super) fn broadcast(&self, kind: u8, data: &[u8]) {
        let mut g = self.lock();
        g.clients.retain_mut(|c| {
            let wanted = if kind == frame::STDOUT {
                c.stdout
            } else {
                c.stderr
            };
            !wanted || frame::write_frame(&mut c.sock, kind, data).is_ok()
        });
    }

    pub(super) fn exited(&self, code: i32) {
        let mut g = self.lock();
        g.exit = Some(code);
        for c in g.clients.iter_mut() {
            let _ = frame::write_frame(&mut c.sock, frame::EXIT, code.to_string().as_bytes());
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
        g.clients.clear();
    }

    fn serve(&self, mut sock: UnixStream) {
        let Ok(Some((frame::HELLO, want))) = frame::read_frame(&mut sock) else {
            return;
        };
        let wants = |i: usize| want.get(i).is_some_and(|&b| b != 0);
        let id = {
            let mut g = self.lock();
            if let Some(code) = g.exit {
                let _ = frame::write_frame(&mut sock, frame::EXIT, code.to_string().as_bytes());
                return;
            }
            let Ok(w) = sock.try_clone() else { return };
            g.next_id += 1;
            let id = g.next_id;
            g.clients.push(Client {
                id,
                sock: w,
                stdout: wants(1),
                stderr: wants(2),
            });
            id
        };
        let writes_stdin = wants(0);
        while let Ok(Some((kind, data))) = frame::read_frame(&mut sock) {
            match kind {
                frame::STDIN if writes_stdin => {
                    let mut g = self.lock();
                    if let Some(f) = g.stdin.as_mut()
                        && f.write_all(&data).is_err()
                    {
                        g.stdin = None;
                    }
                }
                // stdin_once: the container's stdin closes with its first writer.
                frame::STDIN_EOF if writes_stdin && self.stdin_once => self.lock().stdin = None,
                frame::RESIZE => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    if let Some((c, r)) = text.split_once(' ')
                        && let (Ok(cols), Ok(rows)) = (c.parse(), r.parse())
                        && let Some(t) = self.lock().tty.as_ref()
                    {
                        super::console::set_size(t, cols, rows);
                    }
                }
                _ => {}
            }
        }
        let mut g = self.lock();
        // stdin_once: the container's stdin closes when its first writer leaves.
        if writes_stdin && self.stdin_once {
            g.stdin = None;
        }
        g.clients.retain(|c| c.id != id);
    }
}

/// Serves `path` in a background thread.
pub(super) fn listen(path: &Path, hub: Hub) -> Result<(), ShimError> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(io_err(path.display()))?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let hub = hub.clone();
            std::thread::spawn(move || hub.serve(s));
        }
    });
    Ok(())
}
