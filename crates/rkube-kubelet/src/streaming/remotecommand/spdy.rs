//! Exec and attach over SPDY: the client opens one stream per channel, named by
//! its `streamtype` header (`error`, `stdin`, `stdout`, `stderr`, `resize`).
//! Protocol versions: `channel.k8s.io` (v1), `v2`, `v3` (adds resize), `v4` (a
//! JSON `Status` on the error stream) and `v5` (the same as v4 on SPDY).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Channel, Io, Options, Outcome, Output, ResizeDecoder};
use crate::streaming::spdy::{Connection, Stream};

/// The protocols exec and attach accept over SPDY, best first.
pub const PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long a client has to open its streams.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

fn version_of(protocol: &str) -> u8 {
    match protocol {
        "v5.channel.k8s.io" => 5,
        "v4.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

/// Serves one session on an upgraded SPDY connection, then closes it.
pub async fn serve<F, Fut>(
    mut conn: Connection,
    protocol: &str,
    opts: Options,
    command: Vec<String>,
    session: F,
) where
    F: FnOnce(Io) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let version = version_of(protocol);
    let expected = 1
        + opts.stdin as usize
        + opts.stdout as usize
        + opts.stderr as usize
        + (opts.tty && version >= 3) as usize;
    let mut s = Streams::default();
    let collect = async {
        let mut got = 0;
        while got < expected {
            let incoming = conn.accept().await?;
            let kind = incoming.headers.get("streamtype").unwrap_or("").to_string();
            let stream = incoming.accept().await.ok()?;
            let slot = match kind.as_str() {
                "error" => &mut s.error,
                "stdin" => &mut s.stdin,
                "stdout" => &mut s.stdout,
                "stderr" => &mut s.stderr,
                "resize" => &mut s.resize,
                other => {
                    tracing::debug!("exec over SPDY: unexpected stream type {other:?}");
                    continue;
                }
            };
            *slot = Some(stream);
            got += 1;
        }
        Some(())
    };
    match tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect).await {
        Ok(Some(())) => {}
        _ => {
            tracing::debug!("exec over SPDY: the client did not open its streams");
            conn.close().await;
            return;
        }
    }

    let (out_tx, mut out_rx) = mpsc::channel(16);
    let (gone_tx, gone_rx) = watch::channel(false);
    let stdout_w = s.stdout.as_ref().map(|st| st.writer.clone());
    let stderr_w = s.stderr.as_ref().map(|st| st.writer.clone());
    let mut resize_rx = None;
    if let Some(mut rs) = s.resize.take() {
        let (tx, rx) = mpsc::channel(4);
        resize_rx = Some(rx);
        tokio::spawn(async move {
            let mut sizes = ResizeDecoder::default();
            while let Some(data) = rs.recv().await {
                for size in sizes.feed(&data) {
                    let _ = tx.try_send(size);
                }
            }
        });
    }
    let io = Io {
        stdin: s.stdin.take().map(|st| st.split().0),
        stdout: stdout_w
            .is_some()
            .then(|| Output::new(Channel::Stdout, out_tx.clone())),
        stderr: stderr_w
            .is_some()
            .then(|| Output::new(Channel::Stderr, out_tx.clone())),
        resize: resize_rx,
        client_gone: gone_rx,
    };
    drop(out_tx);
    let closer = conn.closer();
    // The client opens no more streams; the end of `accept` is the end of the link.
    tokio::spawn(async move {
        while let Some(extra) = conn.accept().await {
            extra.refuse().await;
        }
        let _ = gone_tx.send(true);
    });

    let session = tokio::spawn(session(io));
    while let Some((channel, data)) = out_rx.recv().await {
        let w = match channel {
            Channel::Stdout => &stdout_w,
            Channel::Stderr => &stderr_w,
        };
        if let Some(w) = w {
            let _ = w.send(&data).await;
        }
    }
    let outcome = session
        .await
        .unwrap_or_else(|e| Outcome::Error(format!("session failed: {e}")));
    if let Some(error) = &s.error {
        let status = if version >= 4 {
            Some(outcome.status_json(&command))
        } else {
            outcome.status_text(&command)
        };
        if let Some(status) = status {
            let _ = error.writer.send(&status).await;
        }
        error.writer.close().await;
    }
    for w in [&stdout_w, &stderr_w].into_iter().flatten() {
        w.close().await;
    }
    closer.close().await;
}
