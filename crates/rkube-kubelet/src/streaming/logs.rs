//! Container logs (`/containerLogs/{ns}/{pod}/{container}`): reading the CRI log
//! files the runtime writes (`<RFC3339Nano> stdout|stderr F|P <text>`), with
//! tail, since, timestamps, limitBytes and follow (across rotation) as the kubelet
//! does.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

use super::query::Query;

/// How often a followed log is checked for growth, rotation and its container.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Output is sent in pieces of about this size.
const CHUNK: usize = 32 * 1024;

/// Which stream to show (`stream=` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFilter {
    All,
    Stdout,
    Stderr,
}

/// The options of a logs request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// Last lines to show.
    pub tail: Option<u64>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    pub stream: StreamFilter,
}

fn number(q: &Query, key: &str) -> Result<Option<i64>, String> {
    q.get(key)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| format!("invalid value {v:?} for {key}: must be an integer"))
        })
        .transpose()
}

impl LogOptions {
    /// Reads the query; `now` anchors `sinceSeconds`.
    pub fn from_query(q: &Query, now: Timestamp) -> Result<LogOptions, String> {
        let tail = number(q, "tailLines")?;
        if tail.is_some_and(|t| t < 0) {
            return Err("tailLines: Invalid value: must be greater than or equal to 0".into());
        }
        let limit = number(q, "limitBytes")?;
        if limit.is_some_and(|l| l < 1) {
            return Err("limitBytes: Invalid value: must be greater than 0".into());
        }
        let since_seconds = number(q, "sinceSeconds")?;
        if since_seconds.is_some_and(|s| s < 1) {
            return Err("sinceSeconds: Invalid value: must be greater than 0".into());
        }
        let since_time = q
            .get("sinceTime")
            .map(|v| {
                v.parse::<Timestamp>()
                    .map_err(|e| format!("sinceTime: invalid RFC 3339 time {v:?}: {e}"))
            })
            .transpose()?;
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
        }
        let since = match (since_seconds, since_time) {
            (Some(s), _) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(s))
                    .unwrap_or(Timestamp::MIN),
            ),
            (_, t) => t,
        };
        let stream = match q.get("stream") {
            None | Some("" | "All") => StreamFilter::All,
            Some("Stdout") => StreamFilter::Stdout,
            Some("Stderr") => StreamFilter::Stderr,
            Some(other) => return Err(format!("stream: Unsupported value: {other:?}")),
        };
        if stream != StreamFilter::All && tail.is_some() {
            return Err("tailLines and specific stream are mutually exclusive for now".into());
        }
        Ok(LogOptions {
            follow: q.flag("follow"),
            previous: q.flag("previous"),
            timestamps: q.flag("timestamps"),
            tail: tail.map(|t| t as u64),
            since,
            limit_bytes: limit.map(|l| l as u64),
            stream,
        })
    }
}

/// One CRI log record.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: Timestamp,
    pub stream: &'a str,
    /// `P`: a piece of a longer line (no newline follows).
    pub partial: bool,
    /// The text, with its newline for full records.
    pub text: &'a [u8],
}

/// Parses a line read with its trailing newline (if any).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let tag = parts.next()?;
    let partial = tag.split(|&b| b == b':').next() == Some(b"P");
    let mut text = parts.next().unwrap_or_default();
    if partial && text.last() == Some(&b'\n') {
        text = &text[..text.len() - 1];
    }
    Some(Record {
        time,
        stream,
        partial,
        text,
    })
}

/// A timestamp as the kubelet prints it: nanoseconds always with nine digits.
pub fn format_time(t: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond()
    )
}

/// Where to start reading to show the last `n` lines: after the `(total - n)`-th
/// newline, counting newlines from the end (as the kubelet's tail does).
pub fn tail_start(f: &mut std::fs::File, n: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 8 * 1024;
    let size = f.seek(SeekFrom::End(0))?;
    let mut count = 0u64;
    let mut right = size;
    let mut block = Vec::new();
    while right > 0 && count <= n {
        let left = right.saturating_sub(BLOCK);
        block.resize((right - left) as usize, 0);
        f.seek(SeekFrom::Start(left))?;
        f.read_exact(&mut block)?;
        let newlines: Vec<usize> = block
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        count += newlines.len() as u64;
        if count > n {
            // Skip the newlines beyond the last n, starting from the block's front.
            let skip = (count - n) as usize;
            return Ok(left + newlines[skip - 1] as u64 + 1);
        }
        right = left;
    }
    Ok(0)
}

/// Whether the container whose log is read still runs (a followed log ends when
/// it does not and the file is read to its end).
pub type RunningCheck = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Reads `path` by `opts`, sending the output until done or the receiver goes.
pub async fn stream(
    path: PathBuf,
    opts: LogOptions,
    running: Option<RunningCheck>,
    tx: mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut reader = LogReader::open(&path, &opts).await?;
    let mut out = Vec::with_capacity(CHUNK);
    let mut remaining = opts.limit_bytes.unwrap_or(u64::MAX);
    // Without follow, tail also caps how many lines are shown.
    let mut lines_left = if opts.follow { None } else { opts.tail };
    let mut line = Vec::new();
    let mut draining = false;
    loop {
        if lines_left == Some(0) {
            break;
        }
        let n = reader.file.read_until(b'\n', &mut line).await?;
        reader.pos += n as u64;
        if line.last() == Some(&b'\n') || (n == 0 && !opts.follow && !line.is_empty()) {
            let done = emit(&line, &opts, &mut remaining, &mut out);
            line.clear();
            if let Some(l) = lines_left.as_mut() {
                *l -= 1;
            }
            if done {
                break;
            }
            if out.len() >= CHUNK
                && tx
                    .send(Bytes::from(std::mem::take(&mut out)))
                    .await
                    .is_err()
            {
                return Ok(());
            }
            continue;
        }
        if n > 0 {
            continue;
        }
        // End of the file for now.
        if !opts.follow {
            break;
        }
        if !out.is_empty()
            && tx
                .send(Bytes::from(std::mem::take(&mut out)))
                .await
                .is_err()
        {
            return Ok(());
        }
        if reader.rotated(&path) {
            // A new file at the path: the old one is read to its end; go on there.
            if !line.is_empty() {
                let _ = emit(&line, &opts, &mut remaining, &mut out);
                line.clear();
            }
            if let Ok(r) = LogReader::open_at(&path, 0).await {
                reader = r;
            }
            continue;
        }
        if draining {
            break;
        }
        let still_running = match &running {
            Some(check) => check().await,
            None => false,
        };
        if !still_running {
            // One more pass catches what was written before the container stopped.
            draining = true;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
    if !out.is_empty() {
        let _ = tx.send(Bytes::from(out)).await;
    }
    Ok(())
}

/// Appends one record's output; true once `limitBytes` is reached.
fn emit(line: &[u8], opts: &LogOptions, remaining: &mut u64, out: &mut Vec<u8>) -> bool {
    let Some(rec) = parse_record(line) else {
        return false;
    };
    let wanted = match opts.stream {
        StreamFilter::All => true,
        StreamFilter::Stdout => rec.stream == "stdout",
        StreamFilter::Stderr => rec.stream == "stderr",
    };
    if !wanted || opts.since.is_some_and(|s| rec.time < s) {
        return false;
    }
    let start = out.len();
    if opts.timestamps {
        out.extend_from_slice(format_time(rec.time).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(rec.text);
    let written = (out.len() - start) as u64;
    if written >= *remaining {
        out.truncate(start + *remaining as usize);
        *remaining = 0;
        return true;
    }
    *remaining -= written;
    false
}

struct LogReader {
    file: BufReader<tokio::fs::File>,
    inode: u64,
    pos: u64,
}

impl LogReader {
    async fn open(path: &Path, opts: &LogOptions) -> std::io::Result<LogReader> {
        let start = match opts.tail {
            Some(n) => {
                let p = path.to_path_buf();
                tokio::task::spawn_blocking(move || tail_start(&mut std::fs::File::open(p)?, n))
                    .await
                    .map_err(std::io::Error::other)??
            }
            None => 0,
        };
        LogReader::open_at(path, start).await
    }

    async fn open_at(path: &Path, start: u64) -> std::io::Result<LogReader> {
        let mut f = tokio::fs::File::open(path).await?;
        let inode = f.metadata().await?.ino();
        f.seek(SeekFrom::Start(start)).await?;
        Ok(LogReader {
            file: BufReader::new(f),
            inode,
            pos: start,
        })
    }

    /// Whether the path now names another file, or this one was truncated.
    fn rotated(&self, path: &Path) -> bool {
        match std::fs::metadata(path) {
            Ok(m) => m.ino() != self.inode || m.len() < self.pos,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests;
