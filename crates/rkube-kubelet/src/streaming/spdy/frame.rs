//! SPDY/3.1 frames: their layout on the wire, and the header blocks inside
//! SYN_STREAM, SYN_REPLY and HEADERS.
//!
//! A control frame is `1 | version(15) | type(16) | flags(8) | length(24) | payload`;
//! a data frame is `0 | stream-id(31) | flags(8) | length(24) | data`.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::SpdyError;
use super::compression::{HeaderCompressor, HeaderDecompressor};

/// The protocol version this module speaks.
pub const VERSION: u16 = 3;
/// FIN: the sender's half of the stream ends with this frame.
pub const FLAG_FIN: u8 = 0x01;
/// Largest payload of one frame (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
}

/// A header block: lowercase names, each value of a repeated name its own entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a value (names are sent lowercase, as SPDY/3 requires).
    pub fn add(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// The uncompressed block: a count, then length-prefixed names and values,
    /// the values of one name joined by NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut names: Vec<&str> = Vec::new();
        for (n, _) in &self.0 {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(names.len() as u32).to_be_bytes());
        for name in names {
            let values: Vec<&str> = self
                .0
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            let value = values.join("\0");
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Parses an uncompressed block.
    pub fn decode(block: &[u8]) -> Result<Headers, SpdyError> {
        let mut r = Cursor(block);
        let count = r.u32()?;
        let mut headers = Headers::default();
        for _ in 0..count {
            let name = r.string()?.to_ascii_lowercase();
            let value = r.string()?;
            for v in value.split('\0') {
                headers.0.push((name.clone(), v.to_string()));
            }
        }
        Ok(headers)
    }
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SpdyError> {
        if self.0.len() < n {
            return Err(SpdyError::Protocol("short header block".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, SpdyError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, SpdyError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| SpdyError::Protocol("header is not UTF-8".into()))
    }
}

/// One frame, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// Settings (flags, id, value); kept only to be skipped.
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn need(payload: &[u8], n: usize, what: &str) -> Result<(), SpdyError> {
    if payload.len() < n {
        return Err(SpdyError::Protocol(format!("{what} frame too short")));
    }
    Ok(())
}

/// Reads frames from a byte stream, decompressing header blocks.
pub struct FrameReader<R> {
    r: R,
    headers: HeaderDecompressor,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R) -> Self {
        FrameReader {
            r,
            headers: HeaderDecompressor::new(),
        }
    }

    /// The next frame; `None` at a clean end of stream between frames.
    pub async fn read(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.r.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.r.read_exact(&mut head[1..]).await?;
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        self.r.read_exact(&mut payload).await?;
        if head[0] & 0x80 == 0 {
            let stream_id = be32(&head[..4]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: Bytes::from(payload),
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Protocol(format!(
                "unsupported SPDY version {version}"
            )));
        }
        self.control(u16::from_be_bytes([head[2], head[3]]), flags, &payload)
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Option<Frame>, SpdyError> {
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(p, 10, "SYN_STREAM")?;
                Frame::SynStream {
                    stream_id: be32(p) & 0x7fff_ffff,
                    associated_to: be32(&p[4..]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: Headers::decode(&self.headers.decompress(&p[10..])?)?,
                }
            }
            TYPE_SYN_REPLY => {
                need(p, 4, "SYN_REPLY")?;
                Frame::SynReply {
                    stream_id: be32(p) & 0x7fff_ffff,
                    flags,
                    headers: Headers::decode(&self.headers.decompress(&p[4..])?)?,
                }
            }
            TYPE_HEADERS => {
                need(p, 4, "HEADERS")?;
                Frame::Headers {
                    stream_id: be32(p) & 0x7fff_ffff,
                    flags,
                    headers: Headers::decode(&self.headers.decompress(&p[4..])?)?,
                }
            }
            TYPE_RST_STREAM => {
                need(p, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: be32(p) & 0x7fff_ffff,
                    status: be32(&p[4..]),
                }
            }
            TYPE_SETTINGS => {
                need(p, 4, "SETTINGS")?;
                let n = be32(p) as usize;
                need(p, 4 + n.saturating_mul(8), "SETTINGS")?;
                Frame::Settings(
                    (0..n)
                        .map(|i| {
                            let e = &p[4 + i * 8..];
                            (e[0], be32(e) & 0xff_ffff, be32(&e[4..]))
                        })
                        .collect(),
                )
            }
            TYPE_PING => {
                need(p, 4, "PING")?;
                Frame::Ping(be32(p))
            }
            TYPE_GOAWAY => {
                need(p, 4, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: be32(p) & 0x7fff_ffff,
                    status: if p.len() >= 8 { be32(&p[4..]) } else { 0 },
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(p, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: be32(p) & 0x7fff_ffff,
                    delta: be32(&p[4..]) & 0x7fff_ffff,
                }
            }
            // Unknown control frames are ignored, as the specification says.
            _ => Frame::Settings(Vec::new()),
        };
        Ok(Some(frame))
    }
}

/// Encodes frames, compressing header blocks.
#[derive(Default)]
pub struct FrameWriter {
    headers: HeaderCompressor,
}

fn control_head(out: &mut Vec<u8>, kind: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

impl FrameWriter {
    pub fn new() -> Self {
        FrameWriter::default()
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(SpdyError::Protocol("data frame too large".into()));
                }
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.headers.compress(&headers.encode())?;
                control_head(out, TYPE_SYN_STREAM, *flags, 10 + block.len());
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&associated_to.to_be_bytes());
                out.push(priority << 5);
                out.push(0);
                out.extend_from_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.headers.compress(&headers.encode())?;
                control_head(out, TYPE_SYN_REPLY, *flags, 4 + block.len());
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.headers.compress(&headers.encode())?;
                control_head(out, TYPE_HEADERS, *flags, 4 + block.len());
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_head(out, TYPE_RST_STREAM, 0, 8);
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Settings(entries) => {
                control_head(out, TYPE_SETTINGS, 0, 4 + 8 * entries.len());
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for (flags, id, value) in entries {
                    out.extend_from_slice(
                        &(((*flags as u32) << 24) | (id & 0xff_ffff)).to_be_bytes(),
                    );
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            Frame::Ping(id) => {
                control_head(out, TYPE_PING, 0, 4);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_head(out, TYPE_GOAWAY, 0, 8);
                out.extend_from_slice(&last_good_stream_id.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_head(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&delta.to_be_bytes());
            }
        }
        Ok(())
    }
}
