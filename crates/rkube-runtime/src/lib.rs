//! rkube's node runtime: OCI images, overlay snapshots and containers run through
//! youki's `libcontainer` under a per-container shim process.
//!
//! It knows nothing of Kubernetes objects: callers (the kubelet) pass plain structs.
//!
//! * [`image::ImageStore`]: pull (registries, auth, mirrors), import, list, remove,
//!   garbage collection; blobs verified, layers unpacked once each.
//! * [`Runtime`]: the CRI-shaped service a kubelet calls — images, pod sandboxes
//!   (network/IPC/UTS namespaces; [`Sandbox::netns_path`] goes to the pod network),
//!   containers (create, start, stop, kill, remove, status, list, wait), exec
//!   (with or without TTY, stdin) and attach, as byte streams to bridge to a
//!   streaming server. [`OciRuntime`] implements it.
//! * [`shim::main`]: the `rkube shim` process that parents each container, writes its
//!   CRI log and records its exit; the binary's `shim` subcommand calls it.
//!
//! The caller never forks: each container is started by running the shim program
//! (`RuntimeConfig::shim`, by default this binary's `shim` subcommand), which
//! outlives the caller; a new caller finds every container from the files on disk.

pub mod config;
pub mod container;
pub mod error;
pub mod image;
pub mod rootfs_path;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod spec;
pub mod state;
pub mod streams;

pub use config::{
    Capabilities, ContainerConfig, DnsConfig, ExecConfig, Mount, Resources, RuntimeConfig,
    SandboxConfig, TermSize, UserConfig,
};
pub use container::{ContainerState, ContainerStatus};
pub use error::RuntimeError;
pub use runtime::{OciRuntime, Runtime};
pub use sandbox::{Sandbox, SandboxState};
pub use streams::{AttachOptions, AttachSession, ExecOutput, ExecSession};

#[cfg(test)]
mod testutil;
