//! Errors of the sandbox and container services.

use std::path::PathBuf;

/// Errors of [`crate::OciRuntime`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image service failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The container's configuration cannot become an OCI spec.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// No sandbox or container with that ID.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `sandbox` or `container`.
        kind: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// The operation does not fit the container's state (start twice, exec into an
    /// exited container, ...).
    #[error("container {id}: {message}")]
    InvalidState {
        /// The container.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The shim could not create or start the container.
    #[error("starting container {id}: {message}")]
    Shim {
        /// The container.
        id: String,
        /// The shim's report.
        message: String,
    },
    /// An exec did not finish in time.
    #[error("exec in {id} timed out")]
    Timeout {
        /// The container.
        id: String,
    },
    /// libcontainer failed (removing a container's cgroup and state).
    #[error("libcontainer: {0}")]
    Container(#[from] libcontainer::error::LibcontainerError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io { path, source }
}

pub(crate) fn sys_err(what: impl ToString) -> impl FnOnce(nix::Error) -> RuntimeError {
    move |source| RuntimeError::Sys {
        what: what.to_string(),
        source,
    }
}
