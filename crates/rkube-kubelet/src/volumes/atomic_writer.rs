//! Writes a set of files into a volume directory so that a reader inside the
//! container sees either the whole old set or the whole new set, never a mix — the
//! layout upstream's `AtomicWriter` uses and that applications watching ConfigMap
//! volumes rely on:
//!
//! ```text
//! <dir>/..2026_01_02_03_04_05.123456789/   the files of one version
//! <dir>/..data -> ..2026_01_02_03_04_05.123456789
//! <dir>/<key>  -> ..data/<key>              one link per top-level name
//! ```
//!
//! An update writes a new version directory, points `..data_tmp` at it and renames
//! that over `..data` (the atomic step), then fixes the top-level links and removes
//! the old version.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits (`defaultMode` or the item's `mode`).
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// A payload path is absolute, empty, has `..` or starts with `..`.
    #[error("invalid path {0:?}: must be relative, without '..', and not start with '..'")]
    InvalidPath(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError + '_ {
    move |source| AtomicWriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a payload path as upstream's `validatePath` does.
pub fn validate_path(p: &str) -> Result<(), AtomicWriteError> {
    let bad = || AtomicWriteError::InvalidPath(p.to_string());
    if p.is_empty() || p.starts_with("..") || p.len() > 4096 {
        return Err(bad());
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(bad());
    }
    for c in path.components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with("..") => {}
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Whether the current version already holds exactly `payload`.
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA);
    let Ok(target) = fs::read_link(&data) else {
        return false;
    };
    let version = dir.join(target);
    let mut on_disk = BTreeSet::new();
    if collect_files(&version, &version, &mut on_disk).is_err() {
        return false;
    }
    if on_disk.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(p, f)| {
        let path = version.join(p);
        on_disk.contains(p)
            && fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
            && fs::read(&path).is_ok_and(|d| d == f.data)
    })
}

fn collect_files(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            collect_files(base, &path, out)?;
        } else {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn first_component(p: &str) -> String {
    Path::new(p)
        .components()
        .find_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

fn version_name() -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    format!(
        "..{}.{:09}{:04x}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond(),
        rand::random::<u16>()
    )
}

/// Writes `payload` into `dir` (which must exist). Returns whether anything changed.
/// `gid`, when given, becomes the group of every file and directory (`fsGroup`).
pub fn write(dir: &Path, payload: &Payload, gid: Option<u32>) -> Result<bool, AtomicWriteError> {
    for p in payload.keys() {
        validate_path(p)?;
    }
    if unchanged(dir, payload) {
        return Ok(false);
    }
    let old = fs::read_link(dir.join(DATA)).ok();
    let name = version_name();
    let version = dir.join(&name);
    fs::create_dir(&version).map_err(io_err(&version))?;
    let chown = |p: &Path| {
        if let Some(g) = gid {
            let _ = nix::unistd::chown(p, None, Some(nix::unistd::Gid::from_raw(g)));
        }
    };
    chown(&version);
    fs::set_permissions(&version, fs::Permissions::from_mode(0o755)).map_err(io_err(&version))?;
    for (p, f) in payload {
        let path = version.join(p);
        if let Some(parent) = path.parent()
            && parent != version
        {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
            chown(parent);
        }
        fs::write(&path, &f.data).map_err(io_err(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode)).map_err(io_err(&path))?;
        chown(&path);
    }
    let tmp = dir.join(DATA_TMP);
    let _ = fs::remove_file(&tmp);
    symlink(&name, &tmp).map_err(io_err(&tmp))?;
    // The atomic step: readers now see the new version.
    fs::rename(&tmp, dir.join(DATA)).map_err(io_err(&tmp))?;

    let wanted: BTreeSet<String> = payload.keys().map(|p| first_component(p)).collect();
    for top in &wanted {
        let link = dir.join(top);
        let target = Path::new(DATA).join(top);
        match fs::read_link(&link) {
            Ok(t) if t == target => {}
            _ => {
                let _ = fs::remove_file(&link);
                symlink(&target, &link).map_err(io_err(&link))?;
            }
        }
    }
    for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("..") || wanted.contains(&n) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_symlink()) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&name)
    {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rkube-aw-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_swaps_and_prunes() {
        let d = tmpdir();
        assert!(write(&d, &payload(&[("a", "1"), ("sub/b", "2")]), None).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        assert_eq!(fs::read_link(d.join("a")).unwrap(), Path::new("..data/a"));
        let first = fs::read_link(d.join(DATA)).unwrap();
        // Same content: nothing happens.
        assert!(!write(&d, &payload(&[("a", "1"), ("sub/b", "2")]), None).unwrap());
        assert_eq!(fs::read_link(d.join(DATA)).unwrap(), first);
        // New content: a new version, the old one and the stale link gone.
        assert!(write(&d, &payload(&[("a", "changed"), ("c", "3")]), None).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "changed");
        assert_eq!(fs::read_to_string(d.join("c")).unwrap(), "3");
        assert!(fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&first).exists());
        // Modes count as content.
        let mut p = payload(&[("a", "changed"), ("c", "3")]);
        p.get_mut("c").unwrap().mode = 0o400;
        assert!(write(&d, &p, None).unwrap());
        let m = fs::metadata(d.join("c")).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o400);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rejects_escaping_paths() {
        for p in ["../x", "/etc/passwd", "a/../../b", "..data", ""] {
            assert!(validate_path(p).is_err(), "{p}");
        }
        assert!(validate_path("a/b.txt").is_ok());
    }
}
