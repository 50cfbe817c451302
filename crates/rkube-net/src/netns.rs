//! Running work inside a network namespace.
//!
//! A namespace is per thread, so work for another namespace runs on a short-lived
//! thread of its own that enters it first: no tokio worker ever changes namespace.
//! Sockets (netlink, DNS listeners) and child processes (`nft`) made on that thread
//! stay in that namespace after the thread ends.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// A network namespace: the one this process runs in, or one named by a path
/// (`/run/netns/NAME`, `/proc/PID/ns/net`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Netns {
    /// The namespace of the calling process (a node's own namespace in production).
    Current,
    /// The namespace bound at this path.
    Path(PathBuf),
}

/// Why work could not run in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened (the sandbox is gone?).
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `setns` failed.
    #[error("cannot enter network namespace {path}: {source}")]
    Enter {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: nix::Error,
    },
    /// The worker thread panicked or could not start.
    #[error("network namespace worker failed: {0}")]
    Worker(String),
}

impl Netns {
    /// A namespace by path.
    pub fn path(path: impl AsRef<Path>) -> Self {
        Netns::Path(path.as_ref().to_path_buf())
    }

    /// Whether the namespace still exists (always true for `Current`).
    pub fn exists(&self) -> bool {
        match self {
            Netns::Current => true,
            Netns::Path(p) => p.exists(),
        }
    }

    /// Opens the namespace file, so a link can be moved into it by fd.
    pub fn open(&self) -> Result<File, NetnsError> {
        let path = match self {
            Netns::Current => PathBuf::from("/proc/thread-self/ns/net"),
            Netns::Path(p) => p.clone(),
        };
        File::open(&path).map_err(|source| NetnsError::Open { path, source })
    }

    /// Runs `f` on a fresh thread inside this namespace and waits for it (blocking).
    pub fn run<R, F>(&self, f: F) -> Result<R, NetnsError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let target = match self {
            Netns::Current => None,
            Netns::Path(p) => Some((p.clone(), self.open()?)),
        };
        let worker = std::thread::Builder::new()
            .name("rkube-netns".into())
            .spawn(move || {
                if let Some((path, file)) = target {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(|source| NetnsError::Enter { path, source })?;
                }
                Ok(f())
            })
            .map_err(|e| NetnsError::Worker(e.to_string()))?;
        worker
            .join()
            .map_err(|_| NetnsError::Worker("panicked".into()))?
    }

    /// Runs `f` inside this namespace without blocking the async runtime.
    pub async fn run_async<R, F>(&self, f: F) -> Result<R, NetnsError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let ns = self.clone();
        tokio::task::spawn_blocking(move || ns.run(f))
            .await
            .map_err(|e| NetnsError::Worker(e.to_string()))?
    }

    /// Runs `f` inside this namespace with the current tokio runtime entered, for
    /// making tokio sockets there (they may then be used from any task).
    pub async fn run_in_runtime<R, F>(&self, f: F) -> Result<R, NetnsError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let handle = tokio::runtime::Handle::current();
        self.run_async(move || {
            let _guard = handle.enter();
            f()
        })
        .await
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Netns::Current => f.write_str("(current namespace)"),
            Netns::Path(p) => write!(f, "{}", p.display()),
        }
    }
}
