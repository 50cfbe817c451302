//! rkube's node runtime: OCI images, overlay snapshots and containers run through
//! youki's `libcontainer` under a per-container shim process.
//!
//! It knows nothing of Kubernetes objects: callers (the kubelet) pass plain structs.
//! The entry points are [`image::ImageStore`] (pull, import, list, remove, gc) and,
//! for sandboxes and containers, [`OciRuntime`] behind the CRI-shaped [`Runtime`]
//! trait.

pub mod image;

#[cfg(test)]
mod testutil;
