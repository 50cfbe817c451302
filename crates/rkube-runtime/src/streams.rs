//! Exec and attach sessions: the byte streams a kubelet bridges to its streaming
//! server (stdin, stdout, stderr, terminal resize), and how each ends.

use crate::config::TermSize;
use crate::error::{RuntimeError, io_err};
use crate::shim::frame;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};

/// A process started by exec. Take the streams you need, then [`ExecSession::wait`].
pub struct ExecSession {
    /// The process's stdin (when asked for).
    pub stdin: Option<tokio::process::ChildStdin>,
    /// Its stdout (the terminal's output with a TTY).
    pub stdout: Option<tokio::process::ChildStdout>,
    /// Its stderr (empty with a TTY).
    pub stderr: Option<tokio::process::ChildStderr>,
    pub(crate) child: tokio::process::Child,
    pub(crate) process_file: PathBuf,
    pub(crate) resize_fifo: Option<PathBuf>,
    /// The FIFO opened read-write: writes never block waiting for the shim to open it.
    pub(crate) resize_writer: Option<std::fs::File>,
    pub(crate) id: String,
}

impl ExecSession {
    /// Resizes the terminal (TTY execs only; otherwise nothing happens).
    pub async fn resize(&self, size: TermSize) -> Result<(), RuntimeError> {
        let (Some(fifo), Some(mut f)) = (&self.resize_fifo, self.resize_writer.as_ref()) else {
            return Ok(());
        };
        // A line is far below PIPE_BUF: the write is atomic and does not block.
        std::io::Write::write_all(&mut f, format!("{} {}\n", size.cols, size.rows).as_bytes())
            .map_err(io_err(fifo))
    }

    /// Kills the exec'd process (and its shim), e.g. when a probe times out.
    pub async fn kill(&mut self) {
        let pid_file = self.process_file.with_extension("pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file).map(|s| s.trim().parse::<i32>())
            && let Ok(pid) = pid
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill().await;
        for ext in ["pid", "result", "json"] {
            let _ = std::fs::remove_file(self.process_file.with_extension(ext));
        }
    }

    /// Waits for the process to exit; its exit code (128+signal when killed).
    pub async fn wait(mut self) -> Result<i32, RuntimeError> {
        drop(self.stdin.take());
        let status = self.child.wait().await.map_err(io_err("exec shim"))?;
        let result_file = self.process_file.with_extension("result");
        let report: Option<serde_json::Value> =
            crate::state::read_json(&result_file).ok().flatten();
        for p in [
            &self.process_file,
            &result_file,
            &self.process_file.with_extension("pid"),
        ] {
            let _ = std::fs::remove_file(p);
        }
        if let Some(f) = &self.resize_fifo {
            let _ = std::fs::remove_file(f);
        }
        match report {
            Some(r) if r.get("exit_code").is_some() => {
                Ok(r["exit_code"].as_i64().unwrap_or(255) as i32)
            }
            Some(r) => Err(RuntimeError::InvalidState {
                id: self.id.clone(),
                message: format!(
                    "exec failed: {}",
                    r["error"].as_str().unwrap_or("unknown error")
                ),
            }),
            None => Err(RuntimeError::InvalidState {
                id: self.id.clone(),
                message: format!("exec shim ended with {status} and no report"),
            }),
        }
    }
}

/// Output of [`crate::Runtime::exec_sync`].
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// The exit code.
    pub exit_code: i32,
}

/// Which streams an attach wants.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttachOptions {
    /// Write to the container's stdin (it must have been created with `stdin`).
    pub stdin: bool,
    /// Receive stdout.
    pub stdout: bool,
    /// Receive stderr.
    pub stderr: bool,
}

/// A connection to a running container's main process.
pub struct AttachSession {
    /// Write here to reach the container's stdin; drop it to send EOF.
    pub stdin: Option<DuplexStream>,
    /// The container's stdout from now on.
    pub stdout: Option<DuplexStream>,
    /// The container's stderr from now on.
    pub stderr: Option<DuplexStream>,
    resize: mpsc::Sender<TermSize>,
    exit: oneshot::Receiver<i32>,
}

impl AttachSession {
    pub(crate) async fn connect(
        socket: PathBuf,
        opts: AttachOptions,
    ) -> Result<AttachSession, RuntimeError> {
        let sock = tokio::net::UnixStream::connect(&socket)
            .await
            .map_err(io_err(&socket))?;
        let (mut rd, mut wr) = sock.into_split();
        let hello = [opts.stdin as u8, opts.stdout as u8, opts.stderr as u8];
        let mut buf = Vec::new();
        frame::write_frame(&mut buf, frame::HELLO, &hello).expect("vec write");
        wr.write_all(&buf).await.map_err(io_err(&socket))?;

        let (out_user, mut out_task) = tokio::io::duplex(64 * 1024);
        let (err_user, mut err_task) = tokio::io::duplex(64 * 1024);
        let (in_user, mut in_task) = tokio::io::duplex(64 * 1024);
        let (exit_tx, exit_rx) = oneshot::channel();
        let (resize_tx, mut resize_rx) = mpsc::channel::<TermSize>(4);
        tokio::spawn(async move {
            let mut exit_tx = Some(exit_tx);
            loop {
                let mut head = [0u8; 5];
                if rd.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    break;
                }
                match head[0] {
                    // A reader that went away is no reason to stop the others.
                    frame::STDOUT => drop(out_task.write_all(&payload).await),
                    frame::STDERR => drop(err_task.write_all(&payload).await),
                    frame::EXIT => {
                        if let (Some(tx), Ok(code)) =
                            (exit_tx.take(), String::from_utf8_lossy(&payload).parse())
                        {
                            let _ = tx.send(code);
                        }
                        break;
                    }
                    _ => {}
                }
            }
        });
        let want_stdin = opts.stdin;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin_open = want_stdin;
            let mut resize_open = true;
            while stdin_open || resize_open {
                let mut out = Vec::new();
                tokio::select! {
                    n = in_task.read(&mut buf), if stdin_open => match n {
                        Ok(0) | Err(_) => {
                            stdin_open = false;
                            frame::write_frame(&mut out, frame::STDIN_EOF, &[]).expect("vec write");
                        }
                        Ok(n) => frame::write_frame(&mut out, frame::STDIN, &buf[..n]).expect("vec write"),
                    },
                    size = resize_rx.recv(), if resize_open => match size {
                        Some(s) => frame::write_frame(&mut out, frame::RESIZE, format!("{} {}", s.cols, s.rows).as_bytes()).expect("vec write"),
                        None => resize_open = false,
                    },
                }
                if wr.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
        Ok(AttachSession {
            stdin: opts.stdin.then_some(in_user),
            stdout: opts.stdout.then_some(out_user),
            stderr: opts.stderr.then_some(err_user),
            resize: resize_tx,
            exit: exit_rx,
        })
    }

    /// Resizes the container's terminal.
    pub async fn resize(&self, size: TermSize) {
        let _ = self.resize.send(size).await;
    }

    /// Waits until the container exits (its exit code) or the shim goes away (`None`).
    pub async fn wait(self) -> Option<i32> {
        self.exit.await.ok()
    }
}
