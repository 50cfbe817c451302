//! Unpacks one layer tarball into its own directory in overlayfs' format: whiteouts
//! become 0/0 character devices, opaque directories get `trusted.overlay.opaque=y`.
//! Every path is checked so that a hostile tarball never writes outside the target:
//! `..` components are refused, and no entry is written through a symlink.

use super::digest::{Digest, Hashing};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Errors of layer unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry's path leaves the target (absolute after normalisation or with `..`).
    #[error("layer entry {0:?} escapes the root: refused")]
    PathEscapes(String),
    /// An entry would be written through a symbolic link.
    #[error("layer entry {0:?} would be written through a symlink: refused")]
    ThroughSymlink(String),
    /// A hard link points at something the layer does not contain.
    #[error("hard link {entry:?} points at missing {target:?}")]
    BadHardLink {
        /// The link entry.
        entry: String,
        /// Its target.
        target: String,
    },
    /// The uncompressed layer does not hash to its diff ID.
    #[error("layer content hashes to {actual}, image config says {expected}")]
    DiffIdMismatch {
        /// The diff ID from the image config.
        expected: Digest,
        /// The digest of the uncompressed tar.
        actual: Digest,
    },
    /// Reading the tarball or writing the tree failed.
    #[error("unpacking {path:?}: {source}")]
    Io {
        /// Path concerned (entry or file).
        path: String,
        /// The cause.
        source: io::Error,
    },
}

fn io_at(path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> UnpackError {
    let path = path.as_ref().display().to_string();
    move |source| UnpackError::Io { path, source }
}

/// Chooses the decompressor from the stream's magic bytes (so docker and OCI media
/// types, and even mislabelled layers, all work): gzip, zstd or plain tar.
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let head = io::BufRead::fill_buf(&mut r)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(r)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(r))
    }
}

/// Normalises an entry path to components below the root; refuses `..` and anything
/// that is not a plain name.
fn clean(raw: &Path) -> Result<Vec<String>, UnpackError> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::PathEscapes(raw.display().to_string()));
            }
        }
    }
    Ok(out)
}

/// Creates the parents of `parts` below `root` as real directories, refusing to pass
/// through a symlink or a non-directory. Returns the full path of the entry.
fn prepare_parents(root: &Path, parts: &[String], display: &str) -> Result<PathBuf, UnpackError> {
    let mut p = root.to_path_buf();
    for name in &parts[..parts.len() - 1] {
        p.push(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::ThroughSymlink(display.to_string()));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::ThroughSymlink(display.to_string()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p).map_err(io_at(&p))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(io_at(&p))?;
            }
            Err(e) => return Err(io_at(&p)(e)),
        }
    }
    p.push(&parts[parts.len() - 1]);
    Ok(p)
}

/// Removes whatever is at `p` unless it is a directory and `keep_dir` is set.
fn clear(p: &Path, keep_dir: bool) -> Result<(), UnpackError> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(io_at(p)),
        Ok(_) => fs::remove_file(p).map_err(io_at(p)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(p)(e)),
    }
}

/// What unpacking one layer found.
#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Entries written.
    pub entries: u64,
    /// Device nodes skipped (containers get their /dev from the runtime).
    pub skipped_devices: u64,
    /// Uncompressed size.
    pub size: u64,
}

/// Unpacks the (possibly compressed) layer `blob` into the empty directory `target`,
/// and checks that the uncompressed stream hashes to `diff_id` when one is given.
/// Returns the uncompressed digest and statistics. On error `target` is left partial:
/// callers unpack into a temporary directory and rename it on success.
pub fn unpack_layer(
    blob: impl Read,
    target: &Path,
    diff_id: Option<&Digest>,
) -> Result<(Digest, UnpackStats), UnpackError> {
    let mut hashing = Hashing::new(decompress(blob).map_err(io_at(target))?);
    let mut stats = UnpackStats::default();
    {
        let mut ar = tar::Archive::new(&mut hashing);
        for entry in ar.entries().map_err(io_at(target))? {
            let mut entry = entry.map_err(io_at(target))?;
            apply_entry(&mut entry, target, &mut stats)?;
        }
    }
    // The tar end marker may be followed by padding: hash it too.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_at(target))?;
    stats.size = hashing.count();
    let (_, actual) = hashing.finish();
    if let Some(expected) = diff_id
        && *expected != actual
    {
        return Err(UnpackError::DiffIdMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok((actual, stats))
}

fn apply_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    stats: &mut UnpackStats,
) -> Result<(), UnpackError> {
    let raw = entry.path().map_err(io_at(root))?.into_owned();
    let display = raw.display().to_string();
    let parts = clean(&raw)?;
    if parts.is_empty() {
        return Ok(()); // the root itself: keep the snapshot directory as created
    }
    let name = parts[parts.len() - 1].as_str();
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(io_at(&display))? & 0o7777;
    let uid = header.uid().map_err(io_at(&display))? as u32;
    let gid = header.gid().map_err(io_at(&display))? as u32;

    if name == OPAQUE_MARKER {
        let dir_parts = &parts[..parts.len() - 1];
        let dir = if dir_parts.is_empty() {
            root.to_path_buf()
        } else {
            let mut with_child = dir_parts.to_vec();
            with_child.push(String::from("x"));
            let d = prepare_parents(root, &with_child, &display)?;
            d.parent().expect("has parent").to_path_buf()
        };
        rustix::fs::lsetxattr(
            &dir,
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|e| io_at(&dir)(e.into()))?;
        stats.entries += 1;
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.starts_with(".wh.") || hidden.is_empty() {
            return Ok(()); // aufs metadata (.wh..wh.plnk and friends)
        }
        let mut target_parts = parts.clone();
        *target_parts.last_mut().expect("non-empty") = hidden.to_string();
        let p = prepare_parents(root, &target_parts, &display)?;
        clear(&p, false)?;
        mknod(&p, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| io_at(&p)(e.into()))?;
        stats.entries += 1;
        return Ok(());
    }

    let p = prepare_parents(root, &parts, &display)?;
    match kind {
        tar::EntryType::Directory => {
            clear(&p, true)?;
            if !p.is_dir() {
                fs::create_dir(&p).map_err(io_at(&p))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            clear(&p, false)?;
            // O_EXCL|O_NOFOLLOW: never write through something another entry left here.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&p)
                .map_err(io_at(&p))?;
            io::copy(entry, &mut f).map_err(io_at(&p))?;
            if let Ok(Some(mtime)) = entry
                .header()
                .mtime()
                .map(|t| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(t)))
            {
                let _ = f.set_modified(mtime);
            }
        }
        tar::EntryType::Symlink => {
            clear(&p, false)?;
            let target = entry
                .link_name()
                .map_err(io_at(&p))?
                .ok_or_else(|| io_at(&p)(io::Error::other("symlink without target")))?;
            std::os::unix::fs::symlink(&target, &p).map_err(io_at(&p))?;
        }
        tar::EntryType::Link => {
            let target_raw = entry
                .link_name()
                .map_err(io_at(&p))?
                .ok_or_else(|| io_at(&p)(io::Error::other("hard link without target")))?
                .into_owned();
            let tparts = clean(&target_raw)?;
            if tparts.is_empty() {
                return Err(UnpackError::PathEscapes(target_raw.display().to_string()));
            }
            let tpath = prepare_parents(root, &tparts, &display)?;
            if fs::symlink_metadata(&tpath).is_err() {
                return Err(UnpackError::BadHardLink {
                    entry: display,
                    target: target_raw.display().to_string(),
                });
            }
            clear(&p, false)?;
            fs::hard_link(&tpath, &p).map_err(io_at(&p))?;
            stats.entries += 1;
            return Ok(()); // a link shares the target's inode: no metadata of its own
        }
        tar::EntryType::Fifo => {
            clear(&p, false)?;
            nix::unistd::mkfifo(&p, Mode::from_bits_truncate(mode))
                .map_err(|e| io_at(&p)(e.into()))?;
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            stats.skipped_devices += 1;
            return Ok(());
        }
        // PAX and GNU long-name headers are consumed by the tar reader; anything else
        // carries no file.
        _ => return Ok(()),
    }
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(io_at(&p))?;
    }
    if kind != tar::EntryType::Symlink {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_at(&p))?;
    }
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Ok(key) = ext.key()
                && let Some(attr) = key.strip_prefix("SCHILY.xattr.")
                && (attr.starts_with("security.") || attr.starts_with("user."))
            {
                let _ = rustix::fs::lsetxattr(
                    &p,
                    attr,
                    ext.value_bytes(),
                    rustix::fs::XattrFlags::empty(),
                );
            }
        }
    }
    stats.entries += 1;
    Ok(())
}

/// Opens a layer blob file and unpacks it; see [`unpack_layer`].
pub fn unpack_layer_file(
    blob: &Path,
    target: &Path,
    diff_id: Option<&Digest>,
) -> Result<(Digest, UnpackStats), UnpackError> {
    let f = File::open(blob).map_err(io_at(blob))?;
    unpack_layer(f, target, diff_id)
}

#[cfg(test)]
mod tests;
