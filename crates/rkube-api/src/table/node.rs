//! Nodes (STATUS such as `Ready,SchedulingDisabled`, ROLES, VERSION) and the
//! `node.k8s.io` RuntimeClasses.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};

pub(crate) static NODES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Status", "The status of the node"),
        Column::text("Roles", "The roles of the node"),
        AGE,
        Column::text("Version", d::NODE_KUBELET_VERSION),
        Column::text("Internal-IP", d::NODE_ADDRESSES).wide(),
        Column::text("External-IP", d::NODE_ADDRESSES).wide(),
        Column::text("OS-Image", d::NODE_OS_IMAGE).wide(),
        Column::text("Kernel-Version", d::NODE_KERNEL).wide(),
        Column::text("Container-Runtime", d::NODE_RUNTIME).wide(),
    ],
    row: node_row,
};

/// A label `node-role.kubernetes.io/<role>` names a role, as does `kubernetes.io/role`.
const ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const ROLE_LABEL: &str = "kubernetes.io/role";

fn node_row(node: &Value, now: Timestamp) -> Vec<Value> {
    // The last Ready condition wins, as upstream builds a map by type.
    let ready = list(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| text(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if format::boolean(node, &["spec", "unschedulable"]) == Some(true) {
        status.push("SchedulingDisabled");
    }

    let mut roles = BTreeSet::new();
    for (k, v) in crate::meta::labels(node)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix(ROLE_PREFIX).filter(|r| !r.is_empty()) {
            roles.insert(role);
        } else if let Some(role) = v.as_str().filter(|r| k == ROLE_LABEL && !r.is_empty()) {
            roles.insert(role);
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };

    let address = |kind: &str| {
        list(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == kind)
            .map_or("<none>", |a| text(a, &["address"]))
    };
    let info = |field: &str| non_empty(node, &["status", "nodeInfo", field]).unwrap_or("<unknown>");
    cells![
        format::name(node),
        status.join(","),
        roles,
        format::age(node, now),
        text(node, &["status", "nodeInfo", "kubeletVersion"]),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

pub(crate) static RUNTIME_CLASSES: Printer = Printer {
    // Upstream quotes a description that does not exist, hence the empty one.
    columns: &[NAME, Column::text("Handler", ""), AGE],
    row: |rc, now| {
        cells![
            format::name(rc),
            text(rc, &["handler"]),
            format::age(rc, now)
        ]
    },
};
