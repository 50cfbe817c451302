//! Exec and attach ("remote command"): the options of a request, the session that
//! bridges a container process to the client's channels, and the status that ends
//! it. The transports (WebSocket channels, SPDY streams) live in the submodules and
//! only move bytes.

use bytes::Bytes;
use rkube_runtime::TermSize;
use tokio::sync::{mpsc, watch};

use super::query::Query;

mod session;
pub mod spdy;
mod status;
pub mod websocket;

pub use session::{Command, run};
pub use status::Outcome;

/// Which streams a request wants (`stdin`, `stdout`, `stderr`, `tty` parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// Reads the options as the kubelet does: a TTY merges stderr into stdout, and
    /// at least one stream is needed.
    pub fn from_query(q: &Query) -> Result<Options, String> {
        let tty = q.flag("tty");
        let o = Options {
            stdin: q.flag("stdin"),
            stdout: q.flag("stdout"),
            stderr: q.flag("stderr") && !tty,
            tty,
        };
        if !o.stdin && !o.stdout && !o.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(o)
    }
}

/// An output channel of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Stdout = 1,
    Stderr = 2,
}

/// Where the session writes one output channel; the transport reads every output
/// from one queue, in order.
pub struct Output {
    channel: Channel,
    tx: mpsc::Sender<(Channel, Bytes)>,
}

impl Output {
    pub fn new(channel: Channel, tx: mpsc::Sender<(Channel, Bytes)>) -> Output {
        Output { channel, tx }
    }

    /// Sends data; false once the client is gone.
    pub async fn send(&self, data: Bytes) -> bool {
        self.tx.send((self.channel, data)).await.is_ok()
    }
}

/// The client's side of a session, as the transport presents it.
pub struct Io {
    /// Bytes for the process's stdin; `None` from the queue is end of input.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    /// Terminal sizes (TTY sessions).
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Becomes true when the client's connection ends.
    pub client_gone: watch::Receiver<bool>,
}

/// A terminal size as clients send it: `{"Width":80,"Height":24}`.
#[derive(serde::Deserialize)]
struct WireSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Splits a byte stream of concatenated JSON terminal sizes into sizes.
#[derive(Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feeds bytes; the complete sizes they finish.
    pub fn feed(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<WireSize>();
        let mut used = 0;
        loop {
            match stream.next() {
                Some(Ok(s)) => {
                    used = stream.byte_offset();
                    sizes.push(TermSize {
                        cols: s.width,
                        rows: s.height,
                    });
                }
                // Incomplete: keep the rest for the next chunk.
                Some(Err(e)) if e.is_eof() => break,
                // Garbage: drop everything buffered.
                Some(Err(_)) => {
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_kubelet() {
        let o =
            Options::from_query(&Query::parse(Some("stdin=1&stdout=1&stderr=1&tty=1"))).unwrap();
        assert_eq!(
            o,
            Options {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        assert_eq!(
            Options::from_query(&Query::parse(Some("tty=1"))).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }

    #[test]
    fn resize_stream_is_split_into_sizes() {
        let mut d = ResizeDecoder::default();
        assert!(d.feed(br#"{"Width":80,"He"#).is_empty());
        let got = d.feed(br#"ight":24}{"Width":100,"Height":30}"#);
        assert_eq!(
            got,
            [
                TermSize { cols: 80, rows: 24 },
                TermSize {
                    cols: 100,
                    rows: 30
                }
            ]
        );
        assert!(d.feed(b"not json").is_empty());
        assert_eq!(d.feed(br#"{"Width":1,"Height":2}"#).len(), 1);
    }
}
