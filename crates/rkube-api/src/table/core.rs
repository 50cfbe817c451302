//! Core (`v1`) resources other than pods, services and nodes: namespaces, config maps,
//! secrets, service accounts, volumes and claims, replication controllers, pod
//! templates, quotas and component statuses.

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, non_empty, text};
use super::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer};

pub(crate) static NAMESPACES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Status", "The status of the namespace"),
        AGE,
    ],
    row: |ns, now| {
        // The namespace strategy sets `Active` on create.
        let phase = non_empty(ns, &["status", "phase"]).unwrap_or("Active");
        cells![format::name(ns), phase, format::age(ns, now)]
    },
};

pub(crate) static SECRETS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Type", d::SECRET_TYPE),
        Column::text("Data", d::SECRET_DATA),
        AGE,
    ],
    row: |s, now| {
        let kind = non_empty(s, &["type"]).unwrap_or("Opaque");
        let data = format::map_len(s, &["data"]) as i64;
        cells![format::name(s), kind, data, format::age(s, now)]
    },
};

pub(crate) static CONFIG_MAPS: Printer = Printer {
    columns: &[NAME, Column::text("Data", d::CM_DATA), AGE],
    row: |cm, now| {
        let data = (format::map_len(cm, &["data"]) + format::map_len(cm, &["binaryData"])) as i64;
        cells![format::name(cm), data, format::age(cm, now)]
    },
};

pub(crate) static SERVICE_ACCOUNTS: Printer = Printer {
    columns: &[NAME, Column::text("Secrets", d::SA_SECRETS), AGE],
    row: |sa, now| {
        let secrets = list(sa, &["secrets"]).len() as i64;
        cells![format::name(sa), secrets, format::age(sa, now)]
    },
};

pub(crate) static REPLICATION_CONTROLLERS: Printer = Printer {
    columns: &[
        NAME,
        Column::int("Desired", d::RC_SPEC_REPLICAS),
        Column::int("Current", d::RC_STATUS_REPLICAS),
        Column::int("Ready", d::RC_READY),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::text("Selector", d::RC_SELECTOR).wide(),
    ],
    row: |rc, now| {
        let desired = crate::meta::path_i64(rc, &["spec", "replicas"]).unwrap_or(1);
        let (names, images) =
            format::containers(crate::meta::path(rc, &["spec", "template", "spec"]));
        cells![
            format::name(rc),
            desired,
            format::int(rc, &["status", "replicas"]),
            format::int(rc, &["status", "readyReplicas"]),
            format::age(rc, now),
            names,
            images,
            format::labels(format::object(rc, &["spec", "selector"])),
        ]
    },
};

pub(crate) static POD_TEMPLATES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Containers", "Names of each container in the template."),
        Column::text(
            "Images",
            "Images referenced by each container in the template.",
        ),
        Column::text("Pod Labels", "The labels for the pod template."),
    ],
    row: |pt, _| {
        let (names, images) = format::containers(crate::meta::path(pt, &["template", "spec"]));
        let labels = format::labels(format::object(pt, &["template", "metadata", "labels"]));
        cells![format::name(pt), names, images, labels]
    },
};

/// The storage class of a volume or claim: the beta annotation wins over the field.
fn storage_class(obj: &Value) -> String {
    crate::meta::annotation(obj, "volume.beta.kubernetes.io/storage-class")
        .or_else(|| crate::meta::path_str(obj, &["spec", "storageClassName"]))
        .unwrap_or("")
        .to_string()
}

fn phase_or_terminating<'a>(obj: &'a Value, default: &'a str) -> &'a str {
    if crate::meta::deletion_timestamp(obj).is_some() {
        "Terminating"
    } else {
        non_empty(obj, &["status", "phase"]).unwrap_or(default)
    }
}

pub(crate) static PERSISTENT_VOLUMES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Capacity", d::PV_CAPACITY),
        Column::text("Access Modes", d::PV_ACCESS_MODES),
        Column::text("Reclaim Policy", d::PV_RECLAIM),
        Column::text("Status", d::PV_PHASE),
        Column::text("Claim", d::PV_CLAIM),
        Column::text("StorageClass", "StorageClass of the pv"),
        Column::text("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
        Column::text("Reason", d::PV_REASON),
        AGE,
        Column::text("VolumeMode", d::PV_VOLUME_MODE).wide(),
    ],
    row: |pv, now| {
        let claim = match format::object(pv, &["spec", "claimRef"]) {
            Some(_) => format!(
                "{}/{}",
                text(pv, &["spec", "claimRef", "namespace"]),
                text(pv, &["spec", "claimRef", "name"])
            ),
            None => String::new(),
        };
        cells![
            format::name(pv),
            non_empty(pv, &["spec", "capacity", "storage"]).unwrap_or("0"),
            format::access_modes(list(pv, &["spec", "accessModes"])),
            non_empty(pv, &["spec", "persistentVolumeReclaimPolicy"]).unwrap_or("Retain"),
            phase_or_terminating(pv, "Pending"),
            claim,
            storage_class(pv),
            crate::meta::path_str(pv, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
            text(pv, &["status", "reason"]),
            format::age(pv, now),
            non_empty(pv, &["spec", "volumeMode"]).unwrap_or("Filesystem"),
        ]
    },
};

pub(crate) static PERSISTENT_VOLUME_CLAIMS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Status", d::PVC_PHASE),
        Column::text("Volume", d::PVC_VOLUME),
        Column::text("Capacity", d::PVC_CAPACITY),
        Column::text("Access Modes", d::PVC_ACCESS_MODES),
        Column::text("StorageClass", "StorageClass of the pvc"),
        Column::text("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
        AGE,
        Column::text("VolumeMode", d::PVC_VOLUME_MODE).wide(),
    ],
    row: |pvc, now| {
        let volume = text(pvc, &["spec", "volumeName"]);
        // Capacity and modes are what the bound volume gave, shown once bound.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                non_empty(pvc, &["status", "capacity", "storage"])
                    .unwrap_or("0")
                    .to_string(),
                format::access_modes(list(pvc, &["status", "accessModes"])),
            )
        };
        cells![
            format::name(pvc),
            phase_or_terminating(pvc, "Pending"),
            volume,
            capacity,
            modes,
            storage_class(pvc),
            crate::meta::path_str(pvc, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
            format::age(pvc, now),
            non_empty(pvc, &["spec", "volumeMode"]).unwrap_or("Filesystem"),
        ]
    },
};

pub(crate) static RESOURCE_QUOTAS: Printer = Printer {
    columns: &[
        NAME,
        Column::text(
            "Request",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        Column::text(
            "Limit",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        AGE,
    ],
    row: resource_quota_row,
};

/// `pods: 1/10, requests.cpu: 500m/2` and, for `limits.*`, a separate column.
fn resource_quota_row(q: &Value, now: Timestamp) -> Vec<Value> {
    let mut names: Vec<&String> = format::object(q, &["status", "hard"])
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for name in names {
        let used = non_empty(q, &["status", "used", name]).unwrap_or("0");
        let hard = non_empty(q, &["status", "hard", name]).unwrap_or("0");
        let entry = format!("{name}: {used}/{hard}");
        let pieces: Vec<&str> = name.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    cells![
        format::name(q),
        requests.join(", "),
        limits.join(", "),
        format::age(q, now)
    ]
}

pub(crate) static COMPONENT_STATUSES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Status", "Status of the component conditions"),
        Column::text("Message", "Message of the component conditions"),
        Column::text("Error", "Error of the component conditions"),
    ],
    row: |cs, _| {
        let healthy = format::condition(list(cs, &["conditions"]), "Healthy");
        let status = match healthy {
            Some(c) if text(c, &["status"]) == "True" => "Healthy",
            Some(_) => "Unhealthy",
            None => "Unknown",
        };
        let message = healthy.map_or("", |c| text(c, &["message"]));
        let error = healthy.map_or("", |c| text(c, &["error"]));
        cells![format::name(cs), status, message, error]
    },
};
