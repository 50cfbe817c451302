//! A session: a container process (a new one for exec, the main one for attach)
//! bridged to the client's channels until its output ends or the client goes.

use std::sync::Arc;

use bytes::Bytes;
use rkube_runtime::{AttachOptions, ExecConfig, Runtime, TermSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::{Io, Options, Outcome, Output};

/// What a session runs.
#[derive(Clone, Debug)]
pub enum Command {
    /// A new process in the container.
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    /// The container's main process.
    Attach { container_id: String },
}

/// How long a terminal session waits for the client's first size before its
/// process starts without one.
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs a session to its end.
pub async fn run(runtime: Arc<dyn Runtime>, command: Command, opts: Options, io: Io) -> Outcome {
    match command {
        Command::Exec { container_id, cmd } => exec(runtime, &container_id, cmd, opts, io).await,
        Command::Attach { container_id } => attach(runtime, &container_id, opts, io).await,
    }
}

/// Copies the client's input to the process; dropping the writer is EOF.
async fn pump_in<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Bytes>, mut w: W) {
    while let Some(data) = rx.recv().await {
        if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Copies a process output to the client until EOF; a gone client does not stop
/// the draining (the process must not block on a full pipe).
async fn pump_out<R: AsyncRead + Unpin>(r: Option<R>, mut out: Option<Output>) {
    let Some(mut r) = r else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(o) = &out
                    && !o.send(Bytes::copy_from_slice(&buf[..n])).await
                {
                    out = None;
                }
            }
        }
    }
}

async fn next_size(rx: &mut Option<mpsc::Receiver<TermSize>>) -> Option<TermSize> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn gone(rx: &mut watch::Receiver<bool>) {
    // A dropped sender means the transport ended: the client is gone too.
    let _ = rx.wait_for(|g| *g).await;
}

async fn exec(
    runtime: Arc<dyn Runtime>,
    id: &str,
    cmd: Vec<String>,
    opts: Options,
    mut io: Io,
) -> Outcome {
    // Clients send the terminal's size as soon as the streams are up: the process
    // starts with it rather than getting it a moment later.
    let size = match &mut io.resize {
        Some(rx) if opts.tty => tokio::time::timeout(FIRST_SIZE_WAIT, rx.recv())
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    let config = ExecConfig {
        cmd,
        env: Vec::new(),
        tty: opts.tty,
        stdin: opts.stdin,
        size,
    };
    let mut s = match runtime.exec(id, config).await {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("error executing command in container: {e}")),
    };
    let stdin = match (s.stdin.take(), io.stdin.take()) {
        (Some(w), Some(rx)) => Some(tokio::spawn(pump_in(rx, w))),
        _ => None,
    };
    let outputs = futures::future::join(
        pump_out(s.stdout.take(), io.stdout.take()),
        pump_out(s.stderr.take(), io.stderr.take()),
    );
    tokio::pin!(outputs);
    let mut killed = false;
    loop {
        tokio::select! {
            _ = &mut outputs => break,
            size = next_size(&mut io.resize) => match size {
                Some(size) => {
                    let _ = s.resize(size).await;
                }
                None => io.resize = None,
            },
            // A process left behind by a vanished client would run forever.
            _ = gone(&mut io.client_gone), if !killed => {
                s.kill().await;
                killed = true;
            }
        }
    }
    if let Some(t) = stdin {
        t.abort();
    }
    match s.wait().await {
        Ok(0) => Outcome::Success,
        Ok(code) => Outcome::ExitCode(code),
        Err(e) => Outcome::Error(format!("error executing command in container: {e}")),
    }
}

async fn attach(runtime: Arc<dyn Runtime>, id: &str, opts: Options, mut io: Io) -> Outcome {
    let wanted = AttachOptions {
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
    };
    let mut a = match runtime.attach(id, wanted).await {
        Ok(a) => a,
        Err(e) => return Outcome::Error(format!("error attaching to container: {e}")),
    };
    let stdin = match (a.stdin.take(), io.stdin.take()) {
        (Some(w), Some(rx)) => Some(tokio::spawn(pump_in(rx, w))),
        _ => None,
    };
    let has_output = opts.stdout || opts.stderr;
    let outputs = futures::future::join(
        pump_out(a.stdout.take(), io.stdout.take()),
        pump_out(a.stderr.take(), io.stderr.take()),
    );
    tokio::pin!(outputs);
    loop {
        tokio::select! {
            // Output ends when the container exits.
            _ = &mut outputs, if has_output => break,
            size = next_size(&mut io.resize) => match size {
                Some(size) => a.resize(size).await,
                None => io.resize = None,
            },
            // Leaving detaches; the container carries on.
            _ = gone(&mut io.client_gone) => break,
        }
    }
    if let Some(t) = stdin {
        // Let queued input reach the container before detaching.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), t).await;
    }
    Outcome::Success
}
