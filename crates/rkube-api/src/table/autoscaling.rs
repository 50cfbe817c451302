//! `autoscaling`: HorizontalPodAutoscalers (REFERENCE, TARGETS such as `cpu: 40%/80%`).

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, text};
use super::{AGE, Column, NAME, Printer};
use crate::meta;

pub(crate) static HORIZONTAL_POD_AUTOSCALERS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Reference", d::HPA_REF),
        Column::text("Targets", d::HPA_METRICS),
        Column::text("MinPods", d::HPA_MIN),
        Column::text("MaxPods", d::HPA_MAX),
        Column::text("Replicas", d::HPA_CURRENT),
        AGE,
    ],
    row: hpa_row,
};

fn hpa_row(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(hpa, &["spec", "scaleTargetRef", "kind"]),
        text(hpa, &["spec", "scaleTargetRef", "name"])
    );
    let min = meta::path_i64(hpa, &["spec", "minReplicas"]).unwrap_or(1);
    cells![
        format::name(hpa),
        reference,
        targets(hpa),
        min.to_string(),
        format::int(hpa, &["spec", "maxReplicas"]),
        format::int(hpa, &["status", "currentReplicas"]),
        format::age(hpa, now),
    ]
}

const UNKNOWN: &str = "<unknown>";

/// TARGETS: the first two metrics as `current/target`, then `+ N more...`.
fn targets(hpa: &Value) -> String {
    // autoscaling/v1 names only a CPU utilization.
    if let Some(target) = meta::path_i64(hpa, &["spec", "targetCPUUtilizationPercentage"]) {
        let current = meta::path_i64(hpa, &["status", "currentCPUUtilizationPercentage"])
            .map_or(UNKNOWN.to_string(), |c| format!("{c}%"));
        return format!("cpu: {current}/{target}%");
    }
    let specs = list(hpa, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = list(hpa, &["status", "currentMetrics"]);
    let items: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| metric(spec, statuses.get(i)))
        .collect();
    const MAX: usize = 2;
    let shown = items[..items.len().min(MAX)].join(", ");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

fn quantity(v: &Value, path: &[&str]) -> Option<String> {
    meta::path(v, path).map(format::int_or_string)
}

fn metric(spec: &Value, status: Option<&Value>) -> String {
    // The status entry for the same source, if the controller reported it.
    let current = |source: &str, path: &[&str]| -> Option<String> {
        let s = status?.get(source)?;
        quantity(s, path)
    };
    match text(spec, &["type"]) {
        source @ ("External" | "Object") => {
            let key = if source == "External" {
                "external"
            } else {
                "object"
            };
            if let Some(avg) = quantity(spec, &[key, "target", "averageValue"]) {
                let cur = current(key, &["current", "averageValue"]).unwrap_or(UNKNOWN.into());
                format!("{cur}/{avg} (avg)")
            } else {
                let cur = match status.and_then(|s| s.get(key)) {
                    Some(_) => current(key, &["current", "value"]).unwrap_or("0".into()),
                    None => UNKNOWN.into(),
                };
                let target = quantity(spec, &[key, "target", "value"]).unwrap_or("0".into());
                format!("{cur}/{target}")
            }
        }
        "Pods" => {
            let cur = match status.and_then(|s| s.get("pods")) {
                Some(_) => current("pods", &["current", "averageValue"]).unwrap_or("0".into()),
                None => UNKNOWN.into(),
            };
            let target = quantity(spec, &["pods", "target", "averageValue"]).unwrap_or("0".into());
            format!("{cur}/{target}")
        }
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let name = text(spec, &[key, "name"]);
            if let Some(avg) = quantity(spec, &[key, "target", "averageValue"]) {
                let cur = match status.and_then(|s| s.get(key)) {
                    Some(_) => current(key, &["current", "averageValue"]).unwrap_or("0".into()),
                    None => UNKNOWN.into(),
                };
                format!("{name}: {cur}/{avg}")
            } else {
                let cur = current(key, &["current", "averageUtilization"])
                    .map_or(UNKNOWN.to_string(), |c| format!("{c}%"));
                let target = quantity(spec, &[key, "target", "averageUtilization"])
                    .map_or("<auto>".to_string(), |t| format!("{t}%"));
                format!("{name}: {cur}/{target}")
            }
        }
        _ => "<unknown type>".to_string(),
    }
}
