//! `rkube image`: pull, import, list and remove the node's images (like `k3s ctr
//! images`). Safe to use while `rkube server` runs on the same data directory.

use anyhow::Context;
use rkube_runtime::image::registries::RegistriesConfig;
use rkube_runtime::image::{PullAuth, PullEvent};
use rkube_runtime::{OciRuntime, Runtime, RuntimeConfig};
use std::path::PathBuf;

/// Flags of `rkube image`.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// Where the node keeps its state (as `rkube server --data-dir`).
    #[arg(long, global = true, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,
    /// Mirrors, credentials and insecure registries (k3s's registries.yaml shape).
    #[arg(long, global = true, default_value = "/etc/rkube/registries.yaml")]
    pub registries: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `rkube image` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from its registry (`nginx:alpine` means docker.io/library/nginx:alpine).
    Pull {
        /// Image reference.
        reference: String,
        /// Credentials as USER:PASSWORD (overrides registries.yaml).
        #[arg(long)]
        user: Option<String>,
    },
    /// Import a `docker save` tarball or an OCI image layout tarball.
    Import {
        /// The archive.
        file: PathBuf,
        /// Name for images the archive leaves unnamed.
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Remove images (by name or ID), then free what nothing uses any more.
    #[command(alias = "remove")]
    Rm {
        /// Image names or IDs.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Free blobs and snapshots no image or container uses.
    Prune,
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

fn short(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    &hex[..hex.len().min(12)]
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let mut cfg = RuntimeConfig::new(&args.data_dir);
    cfg.registries = RegistriesConfig::load(&args.registries)?;
    let rt = OciRuntime::new(cfg).context("opening the image store")?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command {
        ImageCommand::Pull { reference, user } => {
            let auth = match user {
                Some(u) => {
                    let (username, password) =
                        u.split_once(':').context("--user wants USER:PASSWORD")?;
                    Some(PullAuth::Basic {
                        username: username.into(),
                        password: password.into(),
                    })
                }
                None => None,
            };
            let progress = |e: PullEvent| match e {
                PullEvent::Resolved { manifest, layers } => {
                    eprintln!(
                        "resolved {} ({layers} layers)",
                        short(&manifest.to_string())
                    )
                }
                PullEvent::LayerStarted { digest, size } => {
                    eprintln!(
                        "  {}: downloading {}",
                        short(&digest.to_string()),
                        human(size)
                    )
                }
                PullEvent::LayerStored { digest, cached } => eprintln!(
                    "  {}: {}",
                    short(&digest.to_string()),
                    if cached {
                        "already present"
                    } else {
                        "downloaded, verified"
                    }
                ),
                PullEvent::LayerUnpacked { diff_id } => {
                    eprintln!("  {}: unpacked", short(&diff_id.to_string()))
                }
            };
            let img =
                tokio.block_on(rt.images().pull(&reference, auth.as_ref(), Some(&progress)))?;
            println!("{} {}", img.repo_tags.first().unwrap_or(&reference), img.id);
        }
        ImageCommand::Import { file, name } => {
            for img in rt.images().import(&file, name.as_deref())? {
                println!("{} {}", img.repo_tags.join(","), img.id);
            }
        }
        ImageCommand::Ls => {
            println!(
                "{:<60} {:<16} {:<14} {:>8}",
                "IMAGE", "TAG", "IMAGE ID", "SIZE"
            );
            for img in tokio.block_on(rt.list_images())? {
                let names: Vec<(String, String)> = if img.repo_tags.is_empty() {
                    img.repo_digests
                        .iter()
                        .map(|d| {
                            (
                                d.split('@').next().unwrap_or(d).to_string(),
                                "<none>".to_string(),
                            )
                        })
                        .take(1)
                        .collect()
                } else {
                    img.repo_tags
                        .iter()
                        .map(|t| match t.rsplit_once(':') {
                            Some((n, tag)) if !tag.contains('/') => {
                                (n.to_string(), tag.to_string())
                            }
                            _ => (t.clone(), "<none>".to_string()),
                        })
                        .collect()
                };
                for (name, tag) in names {
                    println!(
                        "{name:<60} {tag:<16} {:<14} {:>8}",
                        short(&img.id.to_string()),
                        human(img.size)
                    );
                }
            }
        }
        ImageCommand::Rm { images } => {
            for name in &images {
                let img = rt.images().remove(name)?;
                println!("deleted {name} ({})", short(&img.id.to_string()));
            }
            let stats = tokio.block_on(rt.garbage_collect())?;
            println!(
                "freed {} blobs, {} snapshots, {}",
                stats.blobs,
                stats.snapshots,
                human(stats.bytes)
            );
        }
        ImageCommand::Prune => {
            let stats = tokio.block_on(rt.garbage_collect())?;
            println!(
                "freed {} blobs, {} snapshots, {}",
                stats.blobs,
                stats.snapshots,
                human(stats.bytes)
            );
        }
    }
    Ok(())
}
