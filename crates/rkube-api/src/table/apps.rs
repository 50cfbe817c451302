//! `apps/v1`: Deployments, ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions.

use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells};
use super::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer};
use crate::meta;

/// `spec.replicas`, which defaulting sets to 1.
fn desired(obj: &Value) -> i64 {
    meta::path_i64(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn template_containers(obj: &Value) -> (String, String) {
    format::containers(meta::path(obj, &["spec", "template", "spec"]))
}

pub(crate) static DEPLOYMENTS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Ready", "Number of the pod with ready state"),
        Column::text("Up-to-date", d::DEPLOY_UPDATED),
        Column::text("Available", d::DEPLOY_AVAILABLE),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::text("Selector", d::DEPLOY_SELECTOR).wide(),
    ],
    row: |deploy, now| {
        let (names, images) = template_containers(deploy);
        let selector = format::selector_string(meta::path(deploy, &["spec", "selector"]))
            .unwrap_or_else(|()| "<invalid>".to_string());
        cells![
            format::name(deploy),
            format!(
                "{}/{}",
                format::int(deploy, &["status", "readyReplicas"]),
                desired(deploy)
            ),
            format::int(deploy, &["status", "updatedReplicas"]),
            format::int(deploy, &["status", "availableReplicas"]),
            format::age(deploy, now),
            names,
            images,
            selector,
        ]
    },
};

pub(crate) static REPLICA_SETS: Printer = Printer {
    columns: &[
        NAME,
        Column::int("Desired", d::RS_SPEC_REPLICAS),
        Column::int("Current", d::RS_STATUS_REPLICAS),
        Column::int("Ready", d::RS_READY),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::text("Selector", d::RS_SELECTOR).wide(),
    ],
    row: |rs, now| {
        let (names, images) = template_containers(rs);
        cells![
            format::name(rs),
            desired(rs),
            format::int(rs, &["status", "replicas"]),
            format::int(rs, &["status", "readyReplicas"]),
            format::age(rs, now),
            names,
            images,
            format::label_selector(meta::path(rs, &["spec", "selector"])),
        ]
    },
};

pub(crate) static STATEFUL_SETS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Ready", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    row: |sts, now| {
        let (names, images) = template_containers(sts);
        cells![
            format::name(sts),
            format!(
                "{}/{}",
                format::int(sts, &["status", "readyReplicas"]),
                desired(sts)
            ),
            format::age(sts, now),
            names,
            images,
        ]
    },
};

pub(crate) static DAEMON_SETS: Printer = Printer {
    columns: &[
        NAME,
        Column::int("Desired", d::DS_DESIRED),
        Column::int("Current", d::DS_CURRENT),
        Column::int("Ready", d::DS_READY),
        Column::int("Up-to-date", d::DS_UPDATED),
        Column::int("Available", d::DS_AVAILABLE),
        Column::text("Node Selector", d::POD_NODE_SELECTOR),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::text("Selector", d::DS_SELECTOR).wide(),
    ],
    row: |ds, now| {
        let (names, images) = template_containers(ds);
        let status = |field: &str| format::int(ds, &["status", field]);
        cells![
            format::name(ds),
            status("desiredNumberScheduled"),
            status("currentNumberScheduled"),
            status("numberReady"),
            status("updatedNumberScheduled"),
            status("numberAvailable"),
            format::labels(format::object(
                ds,
                &["spec", "template", "spec", "nodeSelector"]
            )),
            format::age(ds, now),
            names,
            images,
            format::label_selector(meta::path(ds, &["spec", "selector"])),
        ]
    },
};

pub(crate) static CONTROLLER_REVISIONS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Controller", "Controller of the object"),
        Column::text("Revision", d::CR_REVISION),
        AGE,
    ],
    row: |cr, now| {
        // `daemonset.apps/fluentd`: the owner's lower-cased group kind and name.
        let controller = match meta::controller_ref(cr) {
            Some(owner) => {
                let (group, _) =
                    crate::resource::split_api_version(format::text(owner, &["apiVersion"]));
                let kind = format::text(owner, &["kind"]);
                let name = format::text(owner, &["name"]);
                match (group, kind) {
                    ("", "") => name.to_string(),
                    ("", kind) => format!("{}/{name}", kind.to_lowercase()),
                    (group, kind) => {
                        format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase())
                    }
                }
            }
            None => "<none>".to_string(),
        };
        cells![
            format::name(cr),
            controller,
            format::int(cr, &["revision"]),
            format::age(cr, now),
        ]
    },
};
