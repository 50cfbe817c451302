//! The image service: a content store of blobs, image records that name them, and one
//! unpacked snapshot per layer. Pulls ([`pull`]), imports ([`import`]) and garbage
//! collection all go through [`ImageStore`].
//!
//! On disk, under the store's root:
//! ```text
//! blobs/sha256/<hex>      manifests, configs, layers (verified before they appear)
//! images/<config hex>.json image records (id = config digest, tags, digests, layers)
//! snapshots/<diff id hex>/ one unpacked layer each, in overlayfs' format
//! tmp/                    partial downloads and unpacks (removed by gc)
//! gc.lock, meta.lock      flock(2) files: the store may be used by several processes
//! ```

pub mod content;
pub mod digest;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod unpack;

use content::{ContentError, ContentStore};
use digest::Digest;
use manifest::ImageConfig;
use nix::fcntl::{Flock, FlockArg};
use reference::ImageRef;
use registries::RegistriesConfig;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

pub use pull::{PullAuth, PullEvent};

/// Errors of the image service.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The blob store failed or refused content.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// A layer could not be unpacked (or was hostile).
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    /// The reference is malformed.
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    /// A manifest, index or config is malformed or unsupported.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// Talking to the registry failed.
    #[error("pulling {reference}: {message}")]
    Registry {
        /// The image.
        reference: String,
        /// What went wrong, for each endpoint tried.
        message: String,
    },
    /// An archive to import is malformed.
    #[error("importing {path}: {message}")]
    Import {
        /// The archive.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// No image matches the reference.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// A short image ID matches several images.
    #[error("image ID prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// Filesystem trouble outside the blob store.
    #[error("image store {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the snapshot key).
    pub diff_id: Digest,
    /// Media type from the manifest.
    pub media_type: String,
    /// Size of the blob.
    pub size: u64,
}

/// An image as the node knows it (CRI's `Image`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// The image ID: the digest of its config, as Docker and CRI report it.
    pub id: Digest,
    /// Normalised `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:...` names (the digest of the manifest or index pulled).
    pub repo_digests: Vec<String>,
    /// Digest of the platform manifest.
    pub manifest: Digest,
    /// Digest of the index the manifest was chosen from, if any.
    #[serde(default)]
    pub index: Option<Digest>,
    /// Layers, base first.
    pub layers: Vec<Layer>,
    /// Sum of the layer blobs' sizes.
    pub size: u64,
    /// What the image says about running it.
    pub config: ImageConfig,
}

/// What garbage collection removed.
#[derive(Clone, Debug, Default)]
pub struct GcStats {
    /// Blobs deleted.
    pub blobs: usize,
    /// Snapshots deleted.
    pub snapshots: usize,
    /// Bytes of blobs freed.
    pub bytes: u64,
}

/// The image service over one directory.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    registries: RegistriesConfig,
}

/// A held flock(2); released on drop.
pub(crate) struct StoreLock(#[allow(dead_code)] Flock<File>);

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(
        root: impl Into<PathBuf>,
        registries: RegistriesConfig,
    ) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for d in ["blobs/sha256", "images", "snapshots", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(ImageStore {
            content: ContentStore::new(root.join("blobs"), root.join("tmp")),
            root,
            registries,
        })
    }

    /// The blob store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Registry settings in use.
    pub fn registries(&self) -> &RegistriesConfig {
        &self.registries
    }

    fn lock(&self, name: &str, arg: FlockArg) -> Result<StoreLock, ImageError> {
        let p = self.root.join(name);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        Flock::lock(f, arg)
            .map(StoreLock)
            .map_err(|(_, e)| io_err(&p)(e.into()))
    }

    /// Held (shared) by anything that adds content, so that GC (exclusive) never
    /// deletes a blob between its download and the record that names it.
    pub(crate) fn use_lock(&self) -> Result<StoreLock, ImageError> {
        self.lock("gc.lock", FlockArg::LockShared)
    }

    fn meta_lock(&self) -> Result<StoreLock, ImageError> {
        self.lock("meta.lock", FlockArg::LockExclusive)
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    /// Directory holding the unpacked layer with `diff_id`.
    pub fn snapshot_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(diff_id.hex())
    }

    /// Every image, sorted by first tag (untagged last).
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                match fs::read(&p).map(|b| serde_json::from_slice::<Image>(&b)) {
                    Ok(Ok(img)) => out.push(img),
                    Ok(Err(e)) => tracing::warn!("ignoring unreadable image record {p:?}: {e}"),
                    Err(e) => tracing::warn!("ignoring image record {p:?}: {e}"),
                }
            }
        }
        out.sort_by(|a, b| {
            (a.repo_tags.is_empty(), a.repo_tags.first())
                .cmp(&(b.repo_tags.is_empty(), b.repo_tags.first()))
        });
        Ok(out)
    }

    /// Finds an image by tag (`nginx:alpine`, normalised), digest reference
    /// (`repo@sha256:...`), or image ID (full, or a prefix of at least 4 hex digits).
    pub fn get(&self, name: &str) -> Result<Image, ImageError> {
        let images = self.list()?;
        if let Ok(r) = name.parse::<ImageRef>() {
            let full = r.to_string();
            if let Some(img) = images
                .iter()
                .find(|i| i.repo_tags.contains(&full) || i.repo_digests.contains(&full))
            {
                return Ok(img.clone());
            }
            // `repo:tag@digest` is found by its digest.
            if let (Some(_), Some(d)) = (&r.tag, &r.digest) {
                let by_digest = r.with_digest(d.clone()).to_string();
                if let Some(img) = images.iter().find(|i| i.repo_digests.contains(&by_digest)) {
                    return Ok(img.clone());
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<_> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(hex))
                .collect();
            match found.len() {
                1 => return Ok(found[0].clone()),
                0 => {}
                _ => return Err(ImageError::Ambiguous(name.to_string())),
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// Records `img` (merging names into an existing record of the same ID) and moves
    /// its tags off any other image, as a registry tag names one image at a time.
    pub(crate) fn save(&self, mut img: Image) -> Result<Image, ImageError> {
        let _meta = self.meta_lock()?;
        for mut other in self.list()? {
            if other.id == img.id {
                for t in other.repo_tags.drain(..) {
                    if !img.repo_tags.contains(&t) {
                        img.repo_tags.push(t);
                    }
                }
                for d in other.repo_digests.drain(..) {
                    if !img.repo_digests.contains(&d) {
                        img.repo_digests.push(d);
                    }
                }
                continue;
            }
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !img.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                self.write_record(&other)?;
            }
        }
        self.write_record(&img)?;
        Ok(img)
    }

    fn write_record(&self, img: &Image) -> Result<(), ImageError> {
        let p = self.record_path(&img.id);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("record-{:016x}", rand::random::<u64>()));
        let data = serde_json::to_vec_pretty(img).expect("image record serialises");
        fs::write(&tmp, data).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    /// Removes a name from its image, or the whole image when `name` is its ID or its
    /// last name. Content is freed by the next [`ImageStore::gc`].
    pub fn remove(&self, name: &str) -> Result<Image, ImageError> {
        let img = self.get(name)?;
        let _meta = self.meta_lock()?;
        let full = name.parse::<ImageRef>().ok().map(|r| r.to_string());
        let mut rest = img.clone();
        if let Some(f) = &full {
            rest.repo_tags.retain(|t| t != f);
            rest.repo_digests.retain(|t| t != f);
        }
        let by_name = rest.repo_tags.len() + rest.repo_digests.len()
            < img.repo_tags.len() + img.repo_digests.len();
        if by_name && !rest.repo_tags.is_empty() {
            self.write_record(&rest)?;
        } else {
            let p = self.record_path(&img.id);
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
        Ok(img)
    }

    /// Makes sure every layer of `img` is unpacked, each once, and returns their
    /// directories top layer first (the order overlayfs' `lowerdir` wants).
    pub fn prepare_snapshots(&self, img: &Image) -> Result<Vec<PathBuf>, ImageError> {
        self.unpack_layers(&img.layers)?;
        Ok(img
            .layers
            .iter()
            .rev()
            .map(|l| self.snapshot_dir(&l.diff_id))
            .collect())
    }

    /// Unpacks the layers that have no snapshot yet; see [`ImageStore::unpack_tmp`].
    pub(crate) fn unpack_layers(&self, layers: &[Layer]) -> Result<(), ImageError> {
        let mut done = Vec::new();
        for l in layers {
            match self.unpack_tmp(l) {
                Ok(Some(tmp)) => done.push((tmp, l.diff_id.clone())),
                Ok(None) => {}
                Err(e) => {
                    for (tmp, _) in done {
                        let _ = fs::remove_dir_all(tmp);
                    }
                    return Err(e);
                }
            }
        }
        self.commit_snapshots(done)
    }

    /// Unpacks one layer into a temporary directory, unless its snapshot exists
    /// (`None`). [`ImageStore::commit_snapshots`] then moves it into place.
    pub(crate) fn unpack_tmp(&self, l: &Layer) -> Result<Option<PathBuf>, ImageError> {
        if self.snapshot_dir(&l.diff_id).is_dir() {
            return Ok(None);
        }
        let tmp = self
            .root
            .join("snapshots")
            .join(format!("tmp-{:016x}", rand::random::<u64>()));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err(&tmp))?;
        let blob = self.content.path(&l.digest);
        match unpack::unpack_layer_file(&blob, &tmp, Some(&l.diff_id)) {
            Ok(_) => Ok(Some(tmp)),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e.into())
            }
        }
    }

    /// Makes unpacked layers durable (one `syncfs` for all of them) and then renames
    /// each into place, so that a snapshot that exists is always whole, even after a
    /// power loss.
    pub(crate) fn commit_snapshots(&self, done: Vec<(PathBuf, Digest)>) -> Result<(), ImageError> {
        if done.is_empty() {
            return Ok(());
        }
        if let Ok(f) = File::open(&self.root) {
            let _ = rustix::fs::syncfs(&f);
        }
        for (tmp, diff_id) in done {
            let dst = self.snapshot_dir(&diff_id);
            if let Err(e) = fs::rename(&tmp, &dst) {
                let _ = fs::remove_dir_all(&tmp);
                // Someone else unpacked the same layer meanwhile: theirs is as good.
                if !dst.is_dir() {
                    return Err(io_err(&dst)(e));
                }
            }
        }
        Ok(())
    }

    /// Deletes blobs and snapshots that no image record names and that are not in
    /// `snapshots_in_use` (the layers of existing containers), plus leftovers of
    /// interrupted pulls. Waits for running pulls and imports to finish.
    pub fn gc(&self, snapshots_in_use: &BTreeSet<Digest>) -> Result<GcStats, ImageError> {
        let _gc = self.lock("gc.lock", FlockArg::LockExclusive)?;
        let _meta = self.meta_lock()?;
        let mut blobs = BTreeSet::new();
        let mut snaps = snapshots_in_use.clone();
        for img in self.list()? {
            blobs.insert(img.id.clone());
            blobs.insert(img.manifest.clone());
            blobs.extend(img.index.clone());
            for l in &img.layers {
                blobs.insert(l.digest.clone());
                snaps.insert(l.diff_id.clone());
            }
        }
        let mut stats = GcStats::default();
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                stats.bytes += self.content.size(&d);
                self.content.remove(&d)?;
                stats.blobs += 1;
            }
        }
        let sdir = self.root.join("snapshots");
        for e in fs::read_dir(&sdir).map_err(io_err(&sdir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| snaps.contains(&d));
            if !keep {
                fs::remove_dir_all(e.path()).map_err(io_err(&e.path()))?;
                stats.snapshots += 1;
            }
        }
        let tdir = self.root.join("tmp");
        for e in fs::read_dir(&tdir).map_err(io_err(&tdir))?.flatten() {
            let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
        }
        Ok(stats)
    }
}
