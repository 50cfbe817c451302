//! The CRI log format: one record per line, `<RFC3339Nano> <stream> <P|F> <text>`,
//! with `P` marking a piece of a line longer than the buffer and `F` its end.

use std::io::{self, Write};
use std::sync::Mutex;

/// Longest piece written as one record (containerd's default).
pub const MAX_RECORD: usize = 16 * 1024;

/// A CRI log file shared by the stdout and stderr copiers.
pub struct CriLog<W: Write> {
    out: Mutex<W>,
}

impl<W: Write> CriLog<W> {
    /// Logs to `out`.
    pub fn new(out: W) -> Self {
        CriLog {
            out: Mutex::new(out),
        }
    }

    /// Writes one record.
    pub fn record(&self, stream: &str, full: bool, text: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 48);
        line.extend_from_slice(crate::state::now_rfc3339().as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_bytes());
        line.extend_from_slice(if full { b" F " } else { b" P " });
        line.extend_from_slice(text);
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(&line)?;
        out.flush()
    }
}

/// Splits a byte stream into CRI records.
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        LineSplitter {
            pending: Vec::new(),
        }
    }

    /// Feeds bytes; calls `emit(full, text)` for each record they complete.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(bool, &[u8])) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&data[..i]);
                    self.flush_pieces(emit);
                    emit(true, &self.pending);
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(data);
                    self.flush_pieces(emit);
                    data = &[];
                }
            }
        }
    }

    fn flush_pieces(&mut self, emit: &mut dyn FnMut(bool, &[u8])) {
        while self.pending.len() > MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            emit(false, &self.pending);
            self.pending = rest;
        }
    }

    /// At end of stream: a last line without newline is still a full record.
    pub fn finish(&mut self, emit: &mut dyn FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            emit(true, &self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_pieces() {
        let mut s = LineSplitter::new();
        let mut got: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut emit = |f: bool, t: &[u8]| got.push((f, t.to_vec()));
        s.feed(b"a\nb", &mut emit);
        s.feed(b"c\n", &mut emit);
        s.feed(&vec![b'x'; MAX_RECORD + 3], &mut emit);
        s.finish(&mut emit);
        assert_eq!(got[0], (true, b"a".to_vec()));
        assert_eq!(got[1], (true, b"bc".to_vec()));
        assert!(!got[2].0);
        assert_eq!(got[2].1.len(), MAX_RECORD);
        assert_eq!(got[3], (true, b"xxx".to_vec()));
    }

    #[test]
    fn record_format() {
        let log = CriLog::new(Vec::new());
        log.record("stdout", true, b"hello").unwrap();
        let out = String::from_utf8(log.out.into_inner().unwrap()).unwrap();
        let parts: Vec<&str> = out.trim_end().splitn(4, ' ').collect();
        assert!(parts[0].parse::<jiff::Timestamp>().is_ok(), "{out}");
        assert_eq!(&parts[1..], ["stdout", "F", "hello"]);
    }
}
