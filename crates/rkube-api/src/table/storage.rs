//! `storage.k8s.io`: StorageClasses (with the `(default)` marker), VolumeAttachments and
//! the CSI objects.

use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};
use crate::meta;

/// Whether a StorageClass is the cluster default (GA or beta annotation).
fn is_default_class(sc: &Value) -> bool {
    meta::annotation(sc, "storageclass.kubernetes.io/is-default-class") == Some("true")
        || meta::annotation(sc, "storageclass.beta.kubernetes.io/is-default-class") == Some("true")
}

pub(crate) static STORAGE_CLASSES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Provisioner", d::SC_PROVISIONER),
        Column::text("ReclaimPolicy", d::SC_RECLAIM),
        Column::text("VolumeBindingMode", d::SC_BINDING_MODE),
        Column::text("AllowVolumeExpansion", d::SC_EXPANSION),
        AGE,
    ],
    row: |sc, now| {
        let mut name = format::name(sc).to_string();
        if is_default_class(sc) {
            name.push_str(" (default)");
        }
        cells![
            name,
            text(sc, &["provisioner"]),
            non_empty(sc, &["reclaimPolicy"]).unwrap_or("Delete"),
            non_empty(sc, &["volumeBindingMode"]).unwrap_or("Immediate"),
            format::boolean(sc, &["allowVolumeExpansion"]).unwrap_or(false),
            format::age(sc, now),
        ]
    },
};

pub(crate) static VOLUME_ATTACHMENTS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Attacher", d::VA_ATTACHER).formatted("name"),
        Column::text("PV", d::VA_PV),
        Column::text("Node", d::VA_NODE),
        Column::boolean("Attached", d::VA_ATTACHED),
        AGE,
    ],
    row: |va, now| {
        cells![
            format::name(va),
            text(va, &["spec", "attacher"]),
            text(va, &["spec", "source", "persistentVolumeName"]),
            text(va, &["spec", "nodeName"]),
            format::boolean(va, &["status", "attached"]).unwrap_or(false),
            format::age(va, now),
        ]
    },
};

pub(crate) static CSI_NODES: Printer = Printer {
    columns: &[
        NAME,
        Column::int(
            "Drivers",
            "Drivers indicates the number of CSI drivers registered on the node",
        ),
        AGE,
    ],
    row: |n, now| {
        cells![
            format::name(n),
            list(n, &["spec", "drivers"]).len() as i64,
            format::age(n, now),
        ]
    },
};

pub(crate) static CSI_DRIVERS: Printer = Printer {
    columns: &[
        NAME,
        Column::boolean("AttachRequired", d::CSI_ATTACH_REQUIRED),
        Column::boolean("PodInfoOnMount", d::CSI_POD_INFO),
        Column::boolean("StorageCapacity", d::CSI_STORAGE_CAPACITY),
        Column::text("TokenRequests", d::CSI_TOKEN_REQUESTS),
        Column::boolean("RequiresRepublish", d::CSI_REPUBLISH),
        Column::text("Modes", d::CSI_MODES),
        AGE,
    ],
    row: |drv, now| {
        let flag =
            |field: &str, default: bool| format::boolean(drv, &["spec", field]).unwrap_or(default);
        let token_requests =
            match meta::path(drv, &["spec", "tokenRequests"]).and_then(Value::as_array) {
                Some(reqs) => reqs
                    .iter()
                    .map(|r| text(r, &["audience"]))
                    .collect::<Vec<_>>()
                    .join(","),
                None => "<unset>".to_string(),
            };
        // Defaulting fills `volumeLifecycleModes: [Persistent]`.
        let modes =
            match meta::path(drv, &["spec", "volumeLifecycleModes"]).and_then(Value::as_array) {
                Some(modes) if !modes.is_empty() => modes
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                Some(_) => "<none>".to_string(),
                None => "Persistent".to_string(),
            };
        cells![
            format::name(drv),
            flag("attachRequired", true),
            flag("podInfoOnMount", false),
            flag("storageCapacity", false),
            token_requests,
            flag("requiresRepublish", false),
            modes,
            format::age(drv, now),
        ]
    },
};

pub(crate) static CSI_STORAGE_CAPACITIES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("StorageClassName", d::CSC_CLASS),
        Column::text("Capacity", d::CSC_CAPACITY),
    ],
    row: |c, _| {
        cells![
            format::name(c),
            text(c, &["storageClassName"]),
            non_empty(c, &["capacity"]).unwrap_or("<unset>"),
        ]
    },
};
