//! Pulls from OCI distribution registries (through `oci-client`): mirrors first, plain
//! HTTP for loopback and configured registries, anonymous / basic / token auth,
//! linux/amd64 chosen from indexes, every blob verified, missing layers unpacked.

use super::content::io_err as content_io;
use super::digest::Digest;
use super::manifest::{self, Document, ImageConfig};
use super::reference::ImageRef;
use super::registries::Endpoint;
use super::{Image, ImageError, ImageStore, Layer};
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::io::Write;

/// Credentials for one pull (what an imagePullSecret carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullAuth {
    /// No credentials (a token is still fetched when the registry asks, as Docker Hub does).
    Anonymous,
    /// User and password: HTTP basic, or exchanged for a token when the registry asks.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token used as is.
    Bearer(String),
}

/// Progress of a pull, for display.
#[derive(Clone, Debug)]
pub enum PullEvent {
    /// The manifest was found: how many layers, and the manifest digest.
    Resolved {
        /// Platform manifest digest.
        manifest: Digest,
        /// Layers in the image.
        layers: usize,
    },
    /// A layer download begins.
    LayerStarted {
        /// Blob digest.
        digest: Digest,
        /// Announced size.
        size: u64,
    },
    /// A layer is stored (downloaded now, or already there).
    LayerStored {
        /// Blob digest.
        digest: Digest,
        /// Whether it was already in the store.
        cached: bool,
    },
    /// A layer is unpacked into its snapshot.
    LayerUnpacked {
        /// Diff ID.
        diff_id: Digest,
    },
}

/// Observer of pull progress.
pub type Progress<'a> = Option<&'a (dyn Fn(PullEvent) + Send + Sync)>;

fn emit(p: Progress<'_>, e: PullEvent) {
    if let Some(f) = p {
        f(e)
    }
}

fn registry_err(r: &ImageRef, message: impl ToString) -> ImageError {
    ImageError::Registry {
        reference: r.to_string(),
        message: message.to_string(),
    }
}

impl ImageStore {
    /// Pulls `reference` (normalised: `nginx` means `docker.io/library/nginx:latest`),
    /// stores and unpacks what is missing, and records the image. `auth` overrides
    /// credentials from registries.yaml.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&PullAuth>,
        progress: Progress<'_>,
    ) -> Result<Image, ImageError> {
        let r: ImageRef = reference.parse()?;
        let store = self.clone();
        let _use = tokio::task::spawn_blocking(move || store.use_lock())
            .await
            .expect("lock task")?;
        let mut failures = Vec::new();
        for ep in self.registries().endpoints(&r.registry) {
            match self.pull_from(&r, &ep, auth, progress).await {
                Ok(img) => return Ok(img),
                // Content that fails verification is not retried elsewhere: say so.
                Err(
                    e @ (ImageError::Content(_) | ImageError::Unpack(_) | ImageError::Manifest(_)),
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!("pull of {r} from {}: {e}", ep.host);
                    failures.push(format!("{}: {}", ep.host, e));
                }
            }
        }
        Err(registry_err(&r, failures.join("; ")))
    }

    fn auth_for(&self, ep: &Endpoint, r: &ImageRef, explicit: Option<&PullAuth>) -> RegistryAuth {
        let from_config = || {
            let c = self
                .registries()
                .config(&ep.host)
                .or_else(|| self.registries().config(&r.registry))?;
            let a = c.auth.as_ref()?;
            if let Some(t) = &a.identity_token {
                return Some(PullAuth::Bearer(t.clone()));
            }
            if let (Some(u), Some(p)) = (&a.username, &a.password) {
                return Some(PullAuth::Basic {
                    username: u.clone(),
                    password: p.clone(),
                });
            }
            let decoded = a.auth.as_ref().and_then(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })?;
            let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
            Some(PullAuth::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        match explicit.cloned().or_else(from_config) {
            None | Some(PullAuth::Anonymous) => RegistryAuth::Anonymous,
            Some(PullAuth::Basic { username, password }) => RegistryAuth::Basic(username, password),
            Some(PullAuth::Bearer(t)) => RegistryAuth::Bearer(t),
        }
    }

    async fn pull_from(
        &self,
        r: &ImageRef,
        ep: &Endpoint,
        auth: Option<&PullAuth>,
        progress: Progress<'_>,
    ) -> Result<Image, ImageError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let insecure_tls = self
            .registries()
            .config(&ep.host)
            .and_then(|c| c.tls.as_ref())
            .is_some_and(|t| t.insecure_skip_verify);
        let client = Client::new(ClientConfig {
            protocol: if ep.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: insecure_tls,
            ..Default::default()
        });
        let mut oref = match (&r.tag, &r.digest) {
            (_, Some(d)) => {
                Reference::with_digest(r.registry.clone(), r.repository.clone(), d.to_string())
            }
            (Some(t), None) => {
                Reference::with_tag(r.registry.clone(), r.repository.clone(), t.clone())
            }
            (None, None) => unreachable!("normalised references have a tag or digest"),
        };
        if ep.is_mirror {
            oref.set_mirror_registry(ep.host.clone());
        }
        let ra = self.auth_for(ep, r, auth);

        let (top, top_digest) = self
            .fetch_manifest(&client, &oref, &ra, r.digest.as_ref(), r)
            .await?;
        let (index, manifest_digest, config_desc, layer_descs) = match Document::parse(&top, None)?
        {
            Document::Manifest { config, layers } => (None, top_digest.clone(), config, layers),
            Document::Index(entries) => {
                let chosen = manifest::select_platform(&entries)?.digest.clone();
                let mref = oref.clone_with_digest(chosen.to_string());
                let (m, d) = self
                    .fetch_manifest(&client, &mref, &ra, Some(&chosen), r)
                    .await?;
                match Document::parse(&m, None)? {
                    Document::Manifest { config, layers } => {
                        (Some(top_digest.clone()), d, config, layers)
                    }
                    Document::Index(_) => {
                        return Err(manifest::ManifestError::Unsupported(
                            "index inside an index".into(),
                        )
                        .into());
                    }
                }
            }
        };
        emit(
            progress,
            PullEvent::Resolved {
                manifest: manifest_digest.clone(),
                layers: layer_descs.len(),
            },
        );

        if !self.content().contains(&config_desc.digest) {
            let mut buf = Vec::new();
            client
                .pull_blob(&oref, config_desc.digest.to_string().as_str(), &mut buf)
                .await
                .map_err(|e| registry_err(r, e))?;
            self.content().put(&buf, Some(&config_desc.digest))?;
        }
        let config = ImageConfig::parse(&self.content().read(&config_desc.digest)?)?;
        if config.diff_ids.len() != layer_descs.len() {
            return Err(manifest::ManifestError::LayerCount {
                layers: layer_descs.len(),
                diff_ids: config.diff_ids.len(),
            }
            .into());
        }

        // Downloads run a few at a time; each is verified before it is stored.
        let downloads: Vec<_> = layer_descs
            .iter()
            .map(|d| {
                let client = &client;
                let oref = &oref;
                async move {
                    if self.content().contains(&d.digest) {
                        emit(
                            progress,
                            PullEvent::LayerStored {
                                digest: d.digest.clone(),
                                cached: true,
                            },
                        );
                        return Ok(());
                    }
                    emit(
                        progress,
                        PullEvent::LayerStarted {
                            digest: d.digest.clone(),
                            size: d.size,
                        },
                    );
                    self.download_blob(client, oref, d, r).await?;
                    emit(
                        progress,
                        PullEvent::LayerStored {
                            digest: d.digest.clone(),
                            cached: false,
                        },
                    );
                    Ok::<(), ImageError>(())
                }
            })
            .collect();
        futures::stream::iter(downloads)
            .buffer_unordered(3)
            .try_collect::<Vec<()>>()
            .await?;

        let layers: Vec<Layer> = layer_descs
            .iter()
            .zip(&config.diff_ids)
            .map(|(d, diff_id)| Layer {
                digest: d.digest.clone(),
                diff_id: diff_id.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
            })
            .collect();
        self.unpack_all(&layers, progress).await?;

        let img = Image {
            id: config_desc.digest.clone(),
            repo_tags: r.tag.as_ref().map(|_| r.to_string()).into_iter().collect(),
            repo_digests: vec![r.with_digest(top_digest).to_string()],
            manifest: manifest_digest,
            index,
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            config,
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.save(img))
            .await
            .expect("save task")
    }

    /// Unpacks the layers that have no snapshot yet, two at a time (one per core
    /// here), then commits them together.
    pub(crate) async fn unpack_all(
        &self,
        layers: &[Layer],
        progress: Progress<'_>,
    ) -> Result<(), ImageError> {
        let unpacks: Vec<_> = layers
            .iter()
            .cloned()
            .map(|l| {
                let store = self.clone();
                async move {
                    let diff_id = l.diff_id.clone();
                    let tmp = tokio::task::spawn_blocking(move || store.unpack_tmp(&l))
                        .await
                        .expect("unpack task");
                    emit(
                        progress,
                        PullEvent::LayerUnpacked {
                            diff_id: diff_id.clone(),
                        },
                    );
                    tmp.map(|t| t.map(|t| (t, diff_id)))
                }
            })
            .collect();
        let results: Vec<Result<Option<(std::path::PathBuf, Digest)>, ImageError>> =
            futures::stream::iter(unpacks)
                .buffer_unordered(2)
                .collect()
                .await;
        let mut done = Vec::new();
        let mut failure = None;
        for r in results {
            match r {
                Ok(Some(d)) => done.push(d),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            for (tmp, _) in done {
                let _ = std::fs::remove_dir_all(tmp);
            }
            return Err(e);
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.commit_snapshots(done))
            .await
            .expect("commit task")
    }

    async fn fetch_manifest(
        &self,
        client: &Client,
        oref: &Reference,
        auth: &RegistryAuth,
        expected: Option<&Digest>,
        r: &ImageRef,
    ) -> Result<(Vec<u8>, Digest), ImageError> {
        let (bytes, _) = client
            .pull_manifest_raw(oref, auth, manifest::ACCEPTED)
            .await
            .map_err(|e| registry_err(r, e))?;
        let digest = self.content().put(&bytes, expected)?;
        Ok((bytes.to_vec(), digest))
    }

    async fn download_blob(
        &self,
        client: &Client,
        oref: &Reference,
        d: &manifest::Descriptor,
        r: &ImageRef,
    ) -> Result<(), ImageError> {
        let mut stream = client
            .pull_blob_stream(oref, d.digest.to_string().as_str())
            .await
            .map_err(|e| registry_err(r, e))?;
        let mut w = self.content().writer()?;
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| registry_err(r, e))?;
            w.write_all(&chunk)
                .map_err(content_io(&self.content().path(&d.digest)))?;
        }
        let digest = d.digest.clone();
        let size = (d.size > 0).then_some(d.size);
        tokio::task::spawn_blocking(move || w.commit(Some(&digest), size))
            .await
            .expect("commit task")?;
        Ok(())
    }
}
