//! `certificates.k8s.io` CertificateSigningRequests: SIGNERNAME, REQUESTOR, CONDITION.

use jiff::SignedDuration;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};
use crate::meta;

pub(crate) static CERTIFICATE_SIGNING_REQUESTS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        Column::text("SignerName", d::CSR_SIGNER),
        Column::text("Requestor", d::CSR_REQUEST),
        Column::text("RequestedDuration", d::CSR_EXPIRATION),
        Column::text("Condition", d::CSR_CONDITIONS),
    ],
    row: |csr, now| {
        let duration = match meta::path_i64(csr, &["spec", "expirationSeconds"]) {
            Some(s) => format::human_duration(SignedDuration::from_secs(s)),
            None => "<none>".to_string(),
        };
        cells![
            format::name(csr),
            format::age(csr, now),
            non_empty(csr, &["spec", "signerName"]).unwrap_or("<none>"),
            text(csr, &["spec", "username"]),
            duration,
            condition(csr),
        ]
    },
};

/// `Approved,Issued`, `Denied`, `Pending`, with `,Failed` when signing failed.
fn condition(csr: &Value) -> String {
    let has = |kind: &str| {
        list(csr, &["status", "conditions"])
            .iter()
            .any(|c| text(c, &["type"]) == kind)
    };
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if non_empty(csr, &["status", "certificate"]).is_some() {
        status.push_str(",Issued");
    }
    status
}
