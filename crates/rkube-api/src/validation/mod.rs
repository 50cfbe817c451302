//! Strict decoding of request bodies against a kind's schema: unknown and duplicate
//! fields, and values of the wrong type, reported as upstream's API server does.
//!
//! [`decode`] reads the raw body once, in document order (so the messages come in
//! the order upstream prints them); [`decode_value`] checks an object already in
//! memory, such as the result of a patch, visiting keys in sorted order as upstream
//! does after re-encoding a patched object. Both drop unknown fields from the
//! returned object, as decoding into a typed object (or CRD pruning) does.

mod decode;
mod scalar;
mod walk;

use std::fmt;

use serde_json::Value;

use crate::resource::GroupVersionKind;

pub use decode::{decode, find_duplicate_fields};
pub use walk::decode_value;

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown and duplicate fields are dropped silently.
    Ignore,
    /// They are dropped and reported as warnings (upstream's default).
    #[default]
    Warn,
    /// They fail the request with 400 BadRequest.
    Strict,
}

impl FieldValidation {
    /// Parses the query value; an empty value is the default (`Warn`).
    pub fn parse(s: &str) -> Result<FieldValidation, String> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )),
        }
    }
}

/// One strict-decoding finding, a field path in upstream's notation
/// (`spec.template.spec.containers[0].imagePullPolicyy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldIssue {
    Unknown(String),
    Duplicate(String),
}

impl fmt::Display for FieldIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldIssue::Unknown(p) => write!(f, "unknown field {p:?}"),
            FieldIssue::Duplicate(p) => write!(f, "duplicate field {p:?}"),
        }
    }
}

/// A decoded body: the object (unknown fields removed) and what strict decoding found.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub object: Value,
    pub issues: Vec<FieldIssue>,
}

/// What the API server does with the findings for a given `fieldValidation`.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Go on, sending these `Warning` headers (may be empty).
    Proceed { warnings: Vec<String> },
    /// Refuse with 400 BadRequest and this `strict decoding error: ...` detail.
    Reject { detail: String },
}

impl Decoded {
    /// Applies a `fieldValidation` mode to the findings.
    pub fn verdict(&self, mode: FieldValidation) -> Verdict {
        verdict(&self.issues, mode)
    }
}

/// Applies a `fieldValidation` mode to findings (also for findings of a patch body).
pub fn verdict(issues: &[FieldIssue], mode: FieldValidation) -> Verdict {
    match mode {
        FieldValidation::Ignore => Verdict::Proceed {
            warnings: Vec::new(),
        },
        _ if issues.is_empty() => Verdict::Proceed {
            warnings: Vec::new(),
        },
        FieldValidation::Warn => Verdict::Proceed {
            warnings: issues.iter().map(ToString::to_string).collect(),
        },
        FieldValidation::Strict => Verdict::Reject {
            detail: strict_error(issues),
        },
    }
}

/// `strict decoding error: unknown field "spec.foo", duplicate field "spec.paused"`.
pub fn strict_error(issues: &[FieldIssue]) -> String {
    let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
    format!("strict decoding error: {}", list.join(", "))
}

/// Upstream's BadRequest message for a body that cannot be decoded:
/// `Deployment in version "v1" cannot be handled as a Deployment: <detail>`.
pub fn cannot_handle(gvk: &GroupVersionKind, detail: &str) -> String {
    format!(
        "{} in version {:?} cannot be handled as a {}: {detail}",
        gvk.kind, gvk.version, gvk.kind
    )
}

/// A value of the wrong type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// Upstream's field path (`spec.replicas`, `spec.containers[0].ports[1].containerPort`).
    pub path: String,
    /// The JSON type found: `string`, `number`, `bool`, `array`, `object`.
    pub found: &'static str,
    /// The JSON Schema type wanted: `string`, `integer`, `number`, `boolean`, `array`, `object`.
    pub expected: &'static str,
    /// The message upstream's decoder of built-in kinds gives, e.g.
    /// `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`.
    pub go_message: String,
}

impl TypeError {
    /// The field error upstream's CRD validation gives (a 422 Invalid cause):
    /// `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
    pub fn schema_message(&self) -> String {
        format!(
            "{}: Invalid value: \"{}\": {} in body must be of type {}: \"{}\"",
            self.path, self.found, self.path, self.expected, self.found
        )
    }
}

/// Why a body could not be decoded at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Not JSON (upstream: BadRequest).
    #[error("{0}")]
    Syntax(String),
    /// Values of the wrong type: for built-in kinds upstream answers 400 with the
    /// first one's Go message; for custom resources 422 listing all of them.
    #[error("{}", .0[0].go_message)]
    Types(Vec<TypeError>),
}

#[cfg(test)]
mod tests;
