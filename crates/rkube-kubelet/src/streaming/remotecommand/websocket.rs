//! Exec and attach over a WebSocket channel protocol: channel 0 stdin, 1 stdout,
//! 2 stderr, 3 the closing status, 4 terminal sizes, and in v5 channel 255 to
//! half-close a channel (`[255, 0]`: no more stdin).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;

use super::{Channel, Io, Options, Outcome, Output, ResizeDecoder};
use crate::streaming::websocket::{ChannelProtocol, Incoming, close_message};

const STDIN: u8 = 0;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Serves one session on an upgraded WebSocket, then closes it.
pub async fn serve<S, F, Fut>(
    ws: WebSocketStream<S>,
    proto: ChannelProtocol,
    opts: Options,
    command: Vec<String>,
    session: F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(Io) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let (gone_tx, gone_rx) = watch::channel(false);
    let io = Io {
        stdin: opts.stdin.then_some(stdin_rx),
        stdout: opts
            .stdout
            .then(|| Output::new(Channel::Stdout, out_tx.clone())),
        stderr: opts
            .stderr
            .then(|| Output::new(Channel::Stderr, out_tx.clone())),
        resize: opts.tty.then_some(resize_rx),
        client_gone: gone_rx,
    };
    drop(out_tx);

    // An empty message on the lowest channel we write tells the client we are ready.
    let first = if opts.stdout {
        1
    } else if opts.stderr {
        2
    } else {
        ERROR
    };
    if sink.send(proto.encode(first, &[])).await.is_err() {
        return;
    }

    let reader = tokio::spawn(async move {
        let mut stdin = opts.stdin.then_some(stdin_tx);
        let mut sizes = ResizeDecoder::default();
        while let Some(Ok(msg)) = stream.next().await {
            match proto.decode(msg) {
                Ok(Incoming::Data(STDIN, data)) => {
                    if let Some(tx) = &stdin
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Ok(Incoming::Data(RESIZE, data)) => {
                    for size in sizes.feed(&data) {
                        let _ = resize_tx.try_send(size);
                    }
                }
                Ok(Incoming::Data(CLOSE, data)) if proto.version >= 5 => {
                    if data.first() == Some(&STDIN) {
                        stdin = None;
                    }
                }
                Ok(Incoming::Data(..) | Incoming::Skip) => {}
                Ok(Incoming::Close) => break,
                Err(e) => {
                    tracing::debug!("exec WebSocket: {e}");
                    break;
                }
            }
        }
        drop(stdin);
        let _ = gone_tx.send(true);
    });

    let session = tokio::spawn(session(io));
    let mut client_ok = true;
    while let Some((channel, data)) = out_rx.recv().await {
        if client_ok && sink.send(proto.encode(channel as u8, &data)).await.is_err() {
            // Keep draining so the session is never stuck on a full queue.
            client_ok = false;
        }
    }
    let outcome = session
        .await
        .unwrap_or_else(|e| Outcome::Error(format!("session failed: {e}")));
    if client_ok {
        let status = if proto.version >= 4 {
            Some(outcome.status_json(&command))
        } else {
            outcome.status_text(&command)
        };
        if let Some(status) = status {
            let _ = sink.send(proto.encode(ERROR, &status)).await;
        }
        let _ = sink.send(close_message()).await;
        // The client answers the close; give it a moment before dropping the link.
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    } else {
        reader.abort();
    }
}
