//! rkube's Kubernetes object model: which resources exist and how objects are read.
//!
//! This crate has no I/O. It knows the built-in resources (group, version, kind,
//! plural, scope, verbs, short names), reads and matches label and field selectors,
//! and offers helpers over dynamic objects (`serde_json::Value`).

pub mod cidr;
pub mod cron;
pub mod meta;
pub mod protobuf;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod table;
pub mod taints;
pub mod unmanaged;

pub use resource::{GroupVersionKind, ResourceInfo, Scope, Subresource};
pub mod apply;
pub mod openapi;
pub mod patch;
pub mod schema;
pub mod validation;
