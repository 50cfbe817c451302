//! Frames on a shim's attach socket: `[kind u8][length u32 BE][payload]`.

use std::io::{self, Read, Write};

/// Client → shim: bytes for the container's stdin.
pub const STDIN: u8 = 0;
/// Shim → client: bytes the container wrote to stdout.
pub const STDOUT: u8 = 1;
/// Shim → client: bytes the container wrote to stderr.
pub const STDERR: u8 = 2;
/// Client → shim: terminal size, payload `cols rows`.
pub const RESIZE: u8 = 3;
/// Client → shim: the client's stdin ended.
pub const STDIN_EOF: u8 = 4;
/// Shim → client: the container exited, payload the exit code.
pub const EXIT: u8 = 5;
/// Client → shim, first frame: which streams it wants, payload `[stdin, stdout, stderr]`.
pub const HELLO: u8 = 6;

const MAX_FRAME: usize = 1 << 20;

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 5);
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "attach frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}
