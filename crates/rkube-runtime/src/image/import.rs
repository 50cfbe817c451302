//! Imports image archives: `docker save` tarballs (`manifest.json`) and OCI image
//! layouts packed as tar (`index.json`, as `skopeo copy ... oci-archive:` writes).
//! Every file is stored by the digest of its content, so a blob whose name and
//! content disagree is never found by the name.

use super::digest::Digest;
use super::manifest::{self, Descriptor, Document, ImageConfig};
use super::reference::ImageRef;
use super::{Image, ImageError, ImageStore, Layer, io_err};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

const SMALL: u64 = 4 << 20;

fn bad(path: &Path, message: impl ToString) -> ImageError {
    ImageError::Import {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of the archive at `path`. `name` names images the archive
    /// leaves unnamed (an OCI layout whose ref names are bare tags, or none).
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let _use = self.use_lock()?;
        let f = File::open(path).map_err(io_err(path))?;
        let mut files: HashMap<String, Digest> = HashMap::new();
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        let mut ar = tar::Archive::new(super::unpack::decompress(f).map_err(io_err(path))?);
        for e in ar.entries().map_err(io_err(path))? {
            let mut e = e.map_err(io_err(path))?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let p = e.path().map_err(io_err(path))?;
            let key = p.to_string_lossy().trim_start_matches("./").to_string();
            let size = e.size();
            let digest = if size <= SMALL {
                let mut buf = Vec::with_capacity(size as usize);
                e.read_to_end(&mut buf).map_err(io_err(path))?;
                let d = self.content().put(&buf, None)?;
                small.insert(key.clone(), buf);
                d
            } else {
                self.content().put_reader(&mut e, None, Some(size))?
            };
            files.insert(key, digest);
        }
        let images = if let Some(index) = small.get("index.json") {
            self.import_oci(path, index, name)?
        } else if let Some(m) = small.get("manifest.json") {
            self.import_docker(path, m, &files, name)?
        } else {
            return Err(bad(
                path,
                "neither an OCI layout (index.json) nor a docker save archive (manifest.json)",
            ));
        };
        let mut saved = Vec::new();
        for img in images {
            self.unpack_layers(&img.layers)?;
            saved.push(self.save(img)?);
        }
        Ok(saved)
    }

    fn blob(&self, path: &Path, d: &Digest) -> Result<Vec<u8>, ImageError> {
        if !self.content().contains(d) {
            return Err(bad(
                path,
                format!("blob {d} is missing or its content does not match"),
            ));
        }
        Ok(self.content().read(d)?)
    }

    fn image_from_manifest(
        &self,
        path: &Path,
        manifest_digest: Digest,
        index: Option<Digest>,
        config: &Descriptor,
        layers: &[Descriptor],
    ) -> Result<Image, ImageError> {
        let cfg = ImageConfig::parse(&self.blob(path, &config.digest)?)?;
        if cfg.diff_ids.len() != layers.len() {
            return Err(manifest::ManifestError::LayerCount {
                layers: layers.len(),
                diff_ids: cfg.diff_ids.len(),
            }
            .into());
        }
        let layers: Vec<Layer> = layers
            .iter()
            .zip(&cfg.diff_ids)
            .map(|(d, diff_id)| {
                self.blob_present(path, &d.digest).map(|_| Layer {
                    digest: d.digest.clone(),
                    diff_id: diff_id.clone(),
                    media_type: d.media_type.clone(),
                    size: self.content().size(&d.digest),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Image {
            id: config.digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            manifest: manifest_digest,
            index,
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            config: cfg,
        })
    }

    fn blob_present(&self, path: &Path, d: &Digest) -> Result<(), ImageError> {
        if self.content().contains(d) {
            Ok(())
        } else {
            Err(bad(
                path,
                format!("blob {d} is missing or its content does not match"),
            ))
        }
    }

    fn import_oci(
        &self,
        path: &Path,
        index: &[u8],
        name: Option<&str>,
    ) -> Result<Vec<Image>, ImageError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            digest: Digest,
            #[serde(default)]
            annotations: HashMap<String, String>,
        }
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<Entry>,
        }
        let idx: Index =
            serde_json::from_slice(index).map_err(|e| bad(path, format!("index.json: {e}")))?;
        let mut out = Vec::new();
        for entry in idx.manifests {
            let data = self.blob(path, &entry.digest)?;
            let (index, mdigest, config, layers) = match Document::parse(&data, None)? {
                Document::Manifest { config, layers } => {
                    (None, entry.digest.clone(), config, layers)
                }
                Document::Index(entries) => {
                    let d = manifest::select_platform(&entries)?.digest.clone();
                    match Document::parse(&self.blob(path, &d)?, None)? {
                        Document::Manifest { config, layers } => {
                            (Some(entry.digest.clone()), d, config, layers)
                        }
                        Document::Index(_) => return Err(bad(path, "index inside an index")),
                    }
                }
            };
            let mut img = self.image_from_manifest(path, mdigest, index, &config, &layers)?;
            let ann = entry
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| entry.annotations.get("org.opencontainers.image.ref.name"));
            let full = ann.filter(|a| a.contains('/') || a.contains(':'));
            let named = match (full, name, ann) {
                (Some(a), _, _) => a.parse::<ImageRef>()?,
                (None, Some(n), Some(tag)) if !n.contains(':') => format!("{n}:{tag}").parse()?,
                (None, Some(n), _) => n.parse()?,
                (None, None, _) => {
                    return Err(bad(path, "the layout names no image: give one with --name"));
                }
            };
            img.repo_tags.push(named.to_string());
            img.repo_digests
                .push(named.with_digest(entry.digest.clone()).to_string());
            out.push(img);
        }
        Ok(out)
    }

    fn import_docker(
        &self,
        path: &Path,
        manifest: &[u8],
        files: &HashMap<String, Digest>,
        name: Option<&str>,
    ) -> Result<Vec<Image>, ImageError> {
        let entries: Vec<DockerSaveEntry> = serde_json::from_slice(manifest)
            .map_err(|e| bad(path, format!("manifest.json: {e}")))?;
        let find = |p: &str| {
            files
                .get(p.trim_start_matches("./"))
                .cloned()
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("{p} named in manifest.json is not in the archive"),
                    )
                })
        };
        let mut out = Vec::new();
        for e in entries {
            let config_digest = find(&e.config)?;
            let layers: Vec<Descriptor> = e
                .layers
                .iter()
                .map(|l| {
                    find(l).map(|digest| Descriptor {
                        media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                        size: self.content().size(&digest),
                        digest,
                        platform: None,
                    })
                })
                .collect::<Result<_, _>>()?;
            let config = Descriptor {
                media_type: "application/vnd.docker.container.image.v1+json".into(),
                size: self.content().size(&config_digest),
                digest: config_digest,
                platform: None,
            };
            // A docker save archive carries no registry manifest: write the one a
            // registry would serve, so every image has one.
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::DOCKER_MANIFEST,
                "config": config,
                "layers": layers,
            });
            let mdigest = self
                .content()
                .put(&serde_json::to_vec(&m).expect("json"), None)?;
            let mut img = self.image_from_manifest(path, mdigest, None, &config, &layers)?;
            for t in e.repo_tags.unwrap_or_default() {
                img.repo_tags.push(t.parse::<ImageRef>()?.to_string());
            }
            if img.repo_tags.is_empty() {
                match name {
                    Some(n) => img.repo_tags.push(n.parse::<ImageRef>()?.to_string()),
                    None => {
                        return Err(bad(
                            path,
                            "the archive names no image: give one with --name",
                        ));
                    }
                }
            }
            out.push(img);
        }
        Ok(out)
    }
}
