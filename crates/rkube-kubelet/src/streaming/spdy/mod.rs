//! SPDY/3.1, as Kubernetes streams over it: the framing, the header compression
//! with SPDY's fixed zlib dictionary, and a server-side connection multiplexing
//! the streams a client opens (one per exec channel, two per forwarded
//! connection).
//!
//! Written here because no maintained Rust crate implements SPDY; only what the
//! Kubernetes protocols use is implemented (no server push, no flow-control
//! enforcement, see `connection`).

pub mod compression;
pub mod connection;
pub mod frame;

pub use connection::{Closer, Connection, IncomingStream, Stream, StreamWriter};
pub use frame::Headers;

/// SPDY failures.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The byte stream failed.
    #[error("SPDY I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol (bad frame, bad header block).
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// A header block did not (de)compress.
    #[error("SPDY header compression: {0}")]
    Compression(String),
    /// The connection is closed.
    #[error("SPDY connection closed")]
    Closed,
    /// The peer reset the stream.
    #[error("SPDY stream reset by the peer")]
    Reset,
}

#[cfg(test)]
mod tests;
