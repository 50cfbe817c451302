//! rkube's Kubernetes API server: a generic REST store over the `Store` trait, with
//! per-resource strategies, a watch cache, discovery, OpenAPI and TLS serving.

// `ApiError` carries a whole `metav1.Status` (message, details, causes); errors are
// the cold path of a request, so its size is not worth boxing everywhere.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod apply;
pub mod auth;
pub mod authz;
pub mod body;
pub mod bootstrap;
pub mod cache;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod impersonation;
pub mod kubelet;
pub mod metrics;
pub mod openapi;
pub mod output;
pub mod patching;
pub mod pki;
pub mod printing;
pub mod protobuf;
pub mod registry;
pub mod request;
mod rv_splice;
pub mod server;
pub mod serviceaccount;
pub mod storage;
pub mod strategy;
pub mod time;
pub mod validation;

pub use server::{ApiServer, Config};
pub mod serve;
