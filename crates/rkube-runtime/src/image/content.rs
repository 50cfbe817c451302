//! The content-addressed blob store: `blobs/sha256/<hex>`, each blob verified against
//! its digest before it is renamed into place, so a crash mid-write leaves only a
//! temporary file (removed by garbage collection) and never a half-written blob.

use super::digest::{Digest, Hashing};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Reading or writing the store failed.
    #[error("blob store {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The content does not hash to the digest it was announced with.
    #[error("content of {expected} hashes to {actual}: refused")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The content is longer or shorter than announced.
    #[error("content of {digest} is {actual} bytes, {expected} announced")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// The size that arrived.
        actual: u64,
    },
    /// No blob with that digest is stored.
    #[error("blob {0} not found")]
    NotFound(Digest),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The blob store under one directory.
#[derive(Clone, Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    tmp: PathBuf,
}

/// A blob being written: bytes go to a temporary file and are hashed; `commit` checks
/// the digest and renames the file into the store.
pub struct BlobWriter {
    file: Option<Hashing<File>>,
    tmp_path: PathBuf,
    store: ContentStore,
}

impl ContentStore {
    /// A store keeping blobs in `blobs` and partial writes in `tmp` (same filesystem).
    pub fn new(blobs: PathBuf, tmp: PathBuf) -> ContentStore {
        ContentStore { blobs, tmp }
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join("sha256").join(digest.hex())
    }

    /// Whether the blob is stored (a stored blob is always complete and verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Opens a stored blob.
    pub fn open(&self, digest: &Digest) -> Result<File, ContentError> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(digest.clone()),
            _ => ContentError::Io { path: p, source: e },
        })
    }

    /// Reads a whole stored blob (for manifests and configs).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut buf = Vec::new();
        let p = self.path(digest);
        self.open(digest)?
            .read_to_end(&mut buf)
            .map_err(io_err(&p))?;
        Ok(buf)
    }

    /// Starts writing a new blob.
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        fs::create_dir_all(&self.tmp).map_err(io_err(&self.tmp))?;
        let tmp_path = self
            .tmp
            .join(format!("blob-{:016x}", rand::random::<u64>()));
        let file = File::create(&tmp_path).map_err(io_err(&tmp_path))?;
        Ok(BlobWriter {
            file: Some(Hashing::new(file)),
            tmp_path,
            store: self.clone(),
        })
    }

    /// Stores `data`, which must hash to `expected` when one is given.
    pub fn put(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, ContentError> {
        let digest = Digest::of(data);
        if let Some(e) = expected
            && *e != digest
        {
            return Err(ContentError::DigestMismatch {
                expected: e.clone(),
                actual: digest,
            });
        }
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut w = self.writer()?;
        w.write_all(data).map_err(io_err(&w.tmp_path.clone()))?;
        w.commit(Some(&digest), None)
    }

    /// Stores what `r` yields; see [`ContentStore::put`].
    pub fn put_reader(
        &self,
        r: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let mut w = self.writer()?;
        let tmp = w.tmp_path.clone();
        io::copy(r, &mut w).map_err(io_err(&tmp))?;
        w.commit(expected, size)
    }

    /// Every stored digest.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.blobs.join("sha256");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    /// Deletes a blob (garbage collection).
    pub fn remove(&self, digest: &Digest) -> Result<(), ContentError> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&p)(e)),
            _ => Ok(()),
        }
    }

    /// Size of a stored blob.
    pub fn size(&self, digest: &Digest) -> u64 {
        fs::metadata(self.path(digest)).map_or(0, |m| m.len())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.count())
    }

    /// Verifies and moves the blob into the store, or deletes it when it does not
    /// match `expected` digest or `size`. Returns the blob's digest.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let hashing = self.file.take().expect("commit once");
        let count = hashing.count();
        let (file, digest) = hashing.finish();
        let tmp = self.tmp_path.clone();
        let fail = |err| {
            let _ = fs::remove_file(&tmp);
            Err(err)
        };
        if let Some(e) = expected
            && *e != digest
        {
            return fail(ContentError::DigestMismatch {
                expected: e.clone(),
                actual: digest,
            });
        }
        if let (Some(s), Some(d)) = (size, expected)
            && s != count
        {
            return fail(ContentError::SizeMismatch {
                digest: d.clone(),
                expected: s,
                actual: count,
            });
        }
        // Durable before visible: a crash after the rename must not expose a blob
        // whose bytes never reached the disk.
        if let Err(e) = file.sync_all() {
            return fail(io_err(&tmp)(e));
        }
        drop(file);
        let dst = self.store.path(&digest);
        let dir = dst.parent().expect("blob path has a parent");
        if let Err(e) = fs::create_dir_all(dir) {
            return fail(io_err(dir)(e));
        }
        if let Err(e) = fs::rename(&tmp, &dst) {
            return fail(io_err(&dst)(e));
        }
        Ok(digest)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After commit the file was renamed away and this finds nothing.
        let _ = fs::remove_file(&self.tmp_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (crate::testutil::TempDir, ContentStore) {
        let d = crate::testutil::TempDir::new();
        let s = ContentStore::new(d.0.join("blobs"), d.0.join("tmp"));
        (d, s)
    }

    #[test]
    fn verified_blobs_only() {
        let (_d, s) = store();
        let good = Digest::of(b"abc");
        assert_eq!(s.put(b"abc", Some(&good)).unwrap(), good);
        assert_eq!(s.read(&good).unwrap(), b"abc");
        let wrong = Digest::of(b"xyz");
        assert!(matches!(
            s.put(b"abc-tampered", Some(&wrong)),
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(!s.contains(&wrong));
        let mut w = s.writer().unwrap();
        w.write_all(b"half").unwrap();
        drop(w); // a crash-like abandon leaves nothing visible
        assert_eq!(s.list().unwrap(), vec![good]);
    }
}
