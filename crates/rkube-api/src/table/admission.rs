//! `admissionregistration.k8s.io`: webhook configurations and admission policies.

use serde_json::Value;

use super::format::{self, cells, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};
use crate::meta;

const WEBHOOKS: &[Column] = &[
    NAME,
    Column::int(
        "Webhooks",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

fn webhook_row(cfg: &Value, now: jiff::Timestamp) -> Vec<Value> {
    cells![
        format::name(cfg),
        list(cfg, &["webhooks"]).len() as i64,
        format::age(cfg, now),
    ]
}

pub(crate) static MUTATING_WEBHOOK_CONFIGURATIONS: Printer = Printer {
    columns: WEBHOOKS,
    row: webhook_row,
};

pub(crate) static VALIDATING_WEBHOOK_CONFIGURATIONS: Printer = Printer {
    columns: WEBHOOKS,
    row: webhook_row,
};

pub(crate) static VALIDATING_ADMISSION_POLICIES: Printer = Printer {
    columns: &[
        NAME,
        Column::int(
            "Validations",
            "Validations indicates the number of validation rules defined in this configuration",
        ),
        Column::text(
            "ParamKind",
            "ParamKind specifies the kind of resources used to parameterize this policy",
        ),
        AGE,
    ],
    row: |p, now| {
        let param_kind = match meta::path(p, &["spec", "paramKind"]).filter(|k| k.is_object()) {
            Some(k) => format!("{}/{}", text(k, &["apiVersion"]), text(k, &["kind"])),
            None => "<unset>".to_string(),
        };
        cells![
            format::name(p),
            list(p, &["spec", "validations"]).len() as i64,
            param_kind,
            format::age(p, now),
        ]
    },
};

pub(crate) static VALIDATING_ADMISSION_POLICY_BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        Column::text(
            "PolicyName",
            "PolicyName indicates the policy definition which the policy binding binded to",
        ),
        Column::text(
            "ParamRef",
            "ParamRef indicates the param resource which sets the configration param",
        ),
        AGE,
    ],
    row: |b, now| {
        let param = match meta::path(b, &["spec", "paramRef"]).filter(|r| r.is_object()) {
            Some(r) => match (non_empty(r, &["name"]), non_empty(r, &["namespace"])) {
                (Some(name), Some(ns)) => format!("{ns}/{name}"),
                // Without a namespace the param may be cluster-scoped: upstream prints `*`.
                (Some(name), None) => format!("*/{name}"),
                (None, _) => match format::selector_string(r.get("selector")) {
                    Ok(s) if r.get("selector").is_some_and(Value::is_object) => s,
                    _ => "<unset>".to_string(),
                },
            },
            None => "<unset>".to_string(),
        };
        cells![
            format::name(b),
            text(b, &["spec", "policyName"]),
            param,
            format::age(b, now),
        ]
    },
};
