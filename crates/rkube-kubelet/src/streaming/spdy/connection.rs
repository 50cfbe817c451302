//! A SPDY/3.1 connection on the server side: streams opened by the peer, each with
//! its inbound data, and one writer task that owns the outbound byte stream.
//!
//! Flow control is not enforced in either direction: kubectl's SPDY library
//! (spdystream) neither sends nor honours WINDOW_UPDATE, so a sender that waited for
//! one would stall after 64 KiB. Backpressure comes from the bounded queues instead:
//! a stream whose reader lags holds up the connection's reader, as in spdystream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::SpdyError;
use super::frame::{FLAG_FIN, Frame, FrameReader, FrameWriter, Headers, rst};

/// Largest DATA frame this side sends.
const DATA_CHUNK: usize = 32 * 1024;
/// Inbound chunks queued per stream before the connection's reader waits.
const STREAM_QUEUE: usize = 16;

enum Out {
    Frame(Frame),
    /// Send GOAWAY, flush and close the byte stream.
    Close,
}

/// The sending side of a connection, shared by every stream writer.
#[derive(Clone)]
struct Outbound {
    tx: mpsc::Sender<Out>,
}

impl Outbound {
    async fn frame(&self, f: Frame) -> Result<(), SpdyError> {
        self.tx
            .send(Out::Frame(f))
            .await
            .map_err(|_| SpdyError::Closed)
    }
}

/// A stream the peer opened, not yet answered.
pub struct IncomingStream {
    /// Stream id (odd: opened by the client).
    pub id: u32,
    /// Its SYN_STREAM headers (`streamtype`, `port`, `requestid`, ...).
    pub headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    reset: Arc<AtomicBool>,
    out: Outbound,
}

impl IncomingStream {
    /// Accepts it (SYN_REPLY); the peer may then send data and read ours.
    pub async fn accept(self) -> Result<Stream, SpdyError> {
        self.out
            .frame(Frame::SynReply {
                stream_id: self.id,
                flags: 0,
                headers: Headers::default(),
            })
            .await?;
        Ok(Stream {
            id: self.id,
            headers: self.headers,
            rx: self.rx,
            writer: StreamWriter {
                id: self.id,
                reset: self.reset,
                out: self.out,
            },
        })
    }

    /// Refuses it (RST_STREAM).
    pub async fn refuse(self) {
        let _ = self
            .out
            .frame(Frame::RstStream {
                stream_id: self.id,
                status: rst::REFUSED_STREAM,
            })
            .await;
    }
}

/// An accepted stream.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    /// The next data the peer sent; `None` once it half-closed, reset, or the
    /// connection ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Splits into the inbound half and the writer.
    pub fn split(self) -> (mpsc::Receiver<Bytes>, StreamWriter) {
        (self.rx, self.writer)
    }
}

/// Writes to one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    reset: Arc<AtomicBool>,
    out: Outbound,
}

impl StreamWriter {
    /// Sends data (in frames of at most 32 KiB).
    pub async fn send(&self, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(DATA_CHUNK) {
            if self.reset.load(Ordering::Relaxed) {
                return Err(SpdyError::Reset);
            }
            self.out
                .frame(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: Bytes::copy_from_slice(chunk),
                })
                .await?;
        }
        Ok(())
    }

    /// Half-closes this side (an empty DATA frame with FIN).
    pub async fn close(&self) {
        let _ = self
            .out
            .frame(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
    }

    /// Whether the peer reset the stream.
    pub fn is_reset(&self) -> bool {
        self.reset.load(Ordering::Relaxed)
    }
}

/// The server end of a SPDY connection.
pub struct Connection {
    incoming: mpsc::Receiver<IncomingStream>,
    out: Outbound,
}

impl Connection {
    /// Starts reading frames from `reader` and writing to `writer` on two tasks.
    pub fn server<R, W>(reader: R, writer: W) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(16);
        let out = Outbound { tx: out_tx };
        tokio::spawn(write_loop(writer, out_rx));
        tokio::spawn(read_loop(FrameReader::new(reader), in_tx, out.clone()));
        Connection {
            incoming: in_rx,
            out,
        }
    }

    /// The next stream the peer opens; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<IncomingStream> {
        self.incoming.recv().await
    }

    /// A handle that can close the connection while streams are being accepted.
    pub fn closer(&self) -> Closer {
        Closer {
            out: self.out.clone(),
        }
    }

    /// Sends GOAWAY, flushes what is queued and closes the byte stream.
    pub async fn close(self) {
        self.closer().close().await;
    }
}

/// Closes a connection (GOAWAY, then end of stream).
#[derive(Clone)]
pub struct Closer {
    out: Outbound,
}

impl Closer {
    pub async fn close(&self) {
        let _ = self.out.tx.send(Out::Close).await;
    }
}

struct StreamEntry {
    tx: Option<mpsc::Sender<Bytes>>,
    reset: Arc<AtomicBool>,
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut frames: FrameReader<R>,
    incoming: mpsc::Sender<IncomingStream>,
    out: Outbound,
) {
    let mut streams: HashMap<u32, StreamEntry> = HashMap::new();
    let mut last_id = 0u32;
    let mut gone_away = false;
    loop {
        let frame = match frames.read().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("SPDY read: {e}");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // Client streams are odd and increasing.
                if stream_id % 2 == 0 || stream_id <= last_id || gone_away {
                    let _ = out
                        .frame(Frame::RstStream {
                            stream_id,
                            status: rst::PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_id = stream_id;
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                let reset = Arc::new(AtomicBool::new(false));
                let fin = flags & FLAG_FIN != 0;
                streams.insert(
                    stream_id,
                    StreamEntry {
                        tx: (!fin).then_some(tx),
                        reset: reset.clone(),
                    },
                );
                let s = IncomingStream {
                    id: stream_id,
                    headers,
                    rx,
                    reset,
                    out: out.clone(),
                };
                if let Err(mpsc::error::SendError(s)) = incoming.send(s).await {
                    s.refuse().await;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let Some(entry) = streams.get_mut(&stream_id) else {
                    continue;
                };
                if !data.is_empty()
                    && let Some(tx) = &entry.tx
                    && tx.send(data).await.is_err()
                {
                    // Nobody reads this stream any more: drop what comes.
                    entry.tx = None;
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(entry) = streams.remove(&stream_id) {
                    entry.reset.store(true, Ordering::Relaxed);
                }
            }
            // Pings from the client carry odd ids: echo them. Ours (even) need nothing.
            Frame::Ping(id) if id % 2 == 1 => {
                let _ = out.frame(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => gone_away = true,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings(_)
            | Frame::Ping(_)
            | Frame::WindowUpdate { .. } => {}
        }
    }
    // Dropping the senders ends every stream's inbound side, and `incoming`.
    for (_, e) in streams {
        e.reset.store(true, Ordering::Relaxed);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Out>) {
    let mut enc = FrameWriter::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut closing = false;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Batch what is already queued into one write.
        while let Some(msg) = next.take() {
            match msg {
                Out::Frame(f) => {
                    if let Err(e) = enc.encode(&f, &mut buf) {
                        tracing::debug!("SPDY encode: {e}");
                    }
                }
                Out::Close => {
                    let _ = enc.encode(
                        &Frame::GoAway {
                            last_good_stream_id: 0,
                            status: 0,
                        },
                        &mut buf,
                    );
                    closing = true;
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            return;
        }
        buf.clear();
        if closing {
            break;
        }
    }
    let _ = w.shutdown().await;
}
