//! Pods: READY, the STATUS kubectl users read (`Running`, `Init:0/1`, `CrashLoopBackOff`,
//! `Terminating`, ...), RESTARTS with the time of the last one.

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, condition_true, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};

pub(crate) static PODS: Printer = Printer {
    columns: &[
        NAME,
        Column::text(
            "Ready",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        Column::text(
            "Status",
            "The aggregate status of the containers in this pod.",
        ),
        Column::text(
            "Restarts",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        Column::text("IP", d::POD_IP).wide(),
        Column::text("Node", d::POD_NODE_NAME).wide(),
        Column::text("Nominated Node", d::POD_NOMINATED_NODE).wide(),
        Column::text("Readiness Gates", d::POD_READINESS_GATES).wide(),
    ],
    row,
};

/// The reason a pod loses its node (`NodeLost`), set by the node lifecycle controller.
const NODE_UNREACHABLE_REASON: &str = "NodeLost";

/// Restart counts and the latest restart time of a set of containers.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += format::int(status, &["restartCount"]);
        let finished = format::timestamp(status, &["lastState", "terminated", "finishedAt"]);
        if let Some(finished) = finished.filter(|f| self.last.is_none_or(|last| last < *f)) {
            self.last = Some(finished);
        }
    }
}

/// Sidecars: init containers with `restartPolicy: Always`.
fn is_restartable(init_containers: &[Value], name: &str) -> bool {
    init_containers
        .iter()
        .any(|c| text(c, &["name"]) == name && text(c, &["restartPolicy"]) == "Always")
}

fn row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_containers = list(pod, &["spec", "initContainers"]);
    let conditions = list(pod, &["status", "conditions"]);
    let phase = text(pod, &["status", "phase"]);
    let total = list(pod, &["spec", "containers"]).len()
        + init_containers
            .iter()
            .filter(|c| text(c, &["restartPolicy"]) == "Always")
            .count();
    let mut ready = 0;
    let mut reason = non_empty(pod, &["status", "reason"])
        .unwrap_or(phase)
        .to_string();
    if conditions
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, status) in list(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restartable = is_restartable(init_containers, text(status, &["name"]));
        restarts.add(status);
        if restartable {
            sidecar_restarts.add(status);
        }
        let terminated = format::object(status, &["state", "terminated"]).map(|_| ());
        let exit_code = format::int(status, &["state", "terminated", "exitCode"]);
        let waiting_reason = text(status, &["state", "waiting", "reason"]);
        if terminated.is_some() && exit_code == 0 {
            continue;
        }
        if restartable && format::boolean(status, &["started"]) == Some(true) {
            if format::boolean(status, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_some() {
            match non_empty(status, &["state", "terminated", "reason"]) {
                Some(r) => format!("Init:{r}"),
                None => match format::int(status, &["state", "terminated", "signal"]) {
                    0 => format!("Init:ExitCode:{exit_code}"),
                    signal => format!("Init:Signal:{signal}"),
                },
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in list(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts.add(status);
            let waiting = non_empty(status, &["state", "waiting", "reason"]);
            let terminated = format::object(status, &["state", "terminated"]);
            if let Some(w) = waiting {
                reason = w.to_string();
            } else if let Some(r) = non_empty(status, &["state", "terminated", "reason"]) {
                reason = r.to_string();
            } else if terminated.is_some() {
                reason = match format::int(status, &["state", "terminated", "signal"]) {
                    0 => format!(
                        "ExitCode:{}",
                        format::int(status, &["state", "terminated", "exitCode"])
                    ),
                    signal => format!("Signal:{signal}"),
                };
            } else if format::boolean(status, &["ready"]) == Some(true)
                && format::object(status, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = crate::meta::deletion_timestamp(pod).is_some();
    if deleting && text(pod, &["status", "reason"]) == NODE_UNREACHABLE_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!(
                "{} ({} ago)",
                restarts.count,
                format::since(Some(last), now)
            )
        }
        _ => restarts.count.to_string(),
    };

    let pod_ip = list(pod, &["status", "podIPs"])
        .first()
        .and_then(|ip| non_empty(ip, &["ip"]))
        .or_else(|| non_empty(pod, &["status", "podIP"]))
        .unwrap_or("<none>");
    let node = non_empty(pod, &["spec", "nodeName"]).unwrap_or("<none>");
    let nominated = non_empty(pod, &["status", "nominatedNodeName"]).unwrap_or("<none>");
    let gates = list(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| text(c, &["type"]) == text(g, &["conditionType"]))
                    .is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    cells![
        format::name(pod),
        format!("{ready}/{total}"),
        reason,
        restarts_cell,
        format::age(pod, now),
        pod_ip,
        node,
        nominated,
        readiness_gates,
    ]
}
