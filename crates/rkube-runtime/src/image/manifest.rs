//! The JSON documents of an image: image index / manifest list, manifest (OCI and
//! Docker schema 2 media types) and image config.

use super::digest::Digest;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media types a pull accepts for a manifest.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// Errors of manifest handling.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The document is not valid JSON of the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// The cause.
        source: serde_json::Error,
    },
    /// The media type is not one rkube runs (schema 1, artifacts, ...).
    #[error("unsupported manifest media type {0:?}")]
    Unsupported(String),
    /// An index has no entry for this node's platform.
    #[error("no manifest for linux/amd64 in the image index (has: {0})")]
    NoPlatform(String),
    /// The config lists a different number of layers than the manifest.
    #[error("manifest has {layers} layers but config lists {diff_ids} diff IDs")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// Diff IDs in the config.
        diff_ids: usize,
    },
}

/// A content descriptor.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target.
    #[serde(default)]
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// Platform of an index entry.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Platform {
    /// CPU architecture, `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// Operating system, `linux`.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default)]
    pub variant: Option<String>,
}

/// A manifest or an index, told apart by media type or shape.
#[derive(Clone, Debug)]
pub enum Document {
    /// Image index / manifest list.
    Index(Vec<Descriptor>),
    /// Image manifest: config and layers.
    Manifest {
        /// The config blob.
        config: Descriptor,
        /// Layers, base first.
        layers: Vec<Descriptor>,
    },
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

impl Document {
    /// Parses a manifest or index; `media_type` is the Content-Type the registry
    /// sent, if any (the document's own `mediaType` field wins).
    pub fn parse(data: &[u8], media_type: Option<&str>) -> Result<Document, ManifestError> {
        let raw: Raw = serde_json::from_slice(data).map_err(|source| ManifestError::Malformed {
            what: "manifest",
            source,
        })?;
        let mt = raw.media_type.as_deref().or(media_type).unwrap_or("");
        if raw.schema_version == 1 || mt.contains("manifest.v1+") {
            return Err(ManifestError::Unsupported(if mt.is_empty() {
                "docker schema 1".into()
            } else {
                mt.into()
            }));
        }
        match (raw.manifests, raw.config, raw.layers) {
            (Some(m), _, _) if mt.is_empty() || mt == OCI_INDEX || mt == DOCKER_LIST => {
                Ok(Document::Index(m))
            }
            (None, Some(config), Some(layers))
                if mt.is_empty() || mt == OCI_MANIFEST || mt == DOCKER_MANIFEST =>
            {
                Ok(Document::Manifest { config, layers })
            }
            _ => Err(ManifestError::Unsupported(mt.to_string())),
        }
    }
}

/// Picks the linux/amd64 manifest of an index.
pub fn select_platform(entries: &[Descriptor]) -> Result<&Descriptor, ManifestError> {
    entries
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .ok_or_else(|| {
            ManifestError::NoPlatform(
                entries
                    .iter()
                    .filter_map(|d| {
                        d.platform
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// What an image config says about running the image (Docker and OCI share it).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ImageConfig {
    /// `ENTRYPOINT`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `CMD`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `ENV`, `KEY=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WORKDIR`.
    #[serde(default)]
    pub working_dir: String,
    /// `USER`: `uid`, `name`, `uid:gid` or `name:group`.
    #[serde(default)]
    pub user: String,
    /// `STOPSIGNAL`.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Uncompressed layer digests, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
    /// Architecture the image is built for.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RawRunConfig>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// Parses an image config blob.
    pub fn parse(data: &[u8]) -> Result<ImageConfig, ManifestError> {
        let raw: RawConfig =
            serde_json::from_slice(data).map_err(|source| ManifestError::Malformed {
                what: "image config",
                source,
            })?;
        let c = raw.config.unwrap_or_default();
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
            architecture: raw.architecture,
            os: raw.os,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_index_from_manifest() {
        let d = Digest::of(b"x");
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},{{"digest":"{d}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let Document::Index(e) = Document::parse(idx.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(
            select_platform(&e)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .architecture,
            "amd64"
        );
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"{d}"}},"layers":[{{"digest":"{d}","size":3}}]}}"#
        );
        assert!(matches!(
            Document::parse(m.as_bytes(), None).unwrap(),
            Document::Manifest { .. }
        ));
        assert!(Document::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).is_err());
    }

    #[test]
    fn reads_config() {
        let c = ImageConfig::parse(br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/e"],"Cmd":["a"],"Env":["A=1"],"WorkingDir":"/w","User":"1:2"},"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        assert_eq!(c.entrypoint, vec!["/e"]);
        assert_eq!(c.user, "1:2");
    }
}
