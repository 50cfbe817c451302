//! Server-side printing: the `meta.k8s.io/v1` Table columns and cells `kubectl get` shows.
//!
//! The columns and the cell logic follow upstream's printers (kube-apiserver's
//! `printers/internalversion`), one module per API group. The server always prints the
//! wide form; kubectl hides columns with `priority > 0` unless `-o wide`.
//!
//! Printers read objects as stored JSON. Where upstream prints a field its defaulting
//! always fills (a Deployment's `replicas`, a Service's `type`), an absent field prints
//! as that default.

mod admission;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod custom;
mod descriptions;
mod event;
mod format;
mod networking;
mod node;
mod pod;
mod policy;
mod rbac;
mod scheduling;
mod service;
mod storage;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use custom::{columns_for_custom, row_for_custom};
pub use format::human_duration;

use descriptions as d;

/// One column of a Table, as `metav1.TableColumnDefinition` is written on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDefinition {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `name` for the object's name column, else empty (or a CRD column's format).
    pub format: String,
    pub description: String,
    /// 0 for the default view, 1 for columns shown only by `-o wide`.
    pub priority: i32,
}

/// A column as the printers declare it (static text).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
}

impl Column {
    const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Column {
            name,
            kind,
            format: "",
            description,
            priority: 0,
        }
    }

    /// A string column.
    pub(crate) const fn text(name: &'static str, description: &'static str) -> Self {
        Column::new(name, "string", description)
    }

    /// An integer column.
    pub(crate) const fn int(name: &'static str, description: &'static str) -> Self {
        Column::new(name, "integer", description)
    }

    /// A boolean column.
    pub(crate) const fn boolean(name: &'static str, description: &'static str) -> Self {
        Column::new(name, "boolean", description)
    }

    /// Shown only with `-o wide`.
    pub(crate) const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }

    pub(crate) const fn formatted(mut self, format: &'static str) -> Self {
        self.format = format;
        self
    }

    fn definition(&self) -> ColumnDefinition {
        ColumnDefinition {
            name: self.name.to_string(),
            type_: self.kind.to_string(),
            format: self.format.to_string(),
            description: self.description.to_string(),
            priority: self.priority,
        }
    }
}

/// The `Name` column every printer starts with.
pub(crate) const NAME: Column = Column::text("Name", d::NAME).formatted("name");
/// The `Age` column (a human duration since `metadata.creationTimestamp`).
pub(crate) const AGE: Column = Column::text("Age", d::CREATION_TIMESTAMP);
/// `Containers` and `Images` of a workload's pod template (wide).
pub(crate) const CONTAINERS: Column =
    Column::text("Containers", "Names of each container in the template.").wide();
pub(crate) const IMAGES: Column = Column::text(
    "Images",
    "Images referenced by each container in the template.",
)
.wide();

/// How one resource is printed: its columns and a function from object to cells.
pub(crate) struct Printer {
    pub columns: &'static [Column],
    pub row: fn(&Value, Timestamp) -> Vec<Value>,
}

/// The printer upstream registers for a built-in resource, if any.
fn printer(group: &str, plural: &str) -> Option<&'static Printer> {
    Some(match (group, plural) {
        ("", "pods") => &pod::PODS,
        ("", "podtemplates") => &core::POD_TEMPLATES,
        ("", "replicationcontrollers") => &core::REPLICATION_CONTROLLERS,
        ("", "services") => &service::SERVICES,
        ("", "endpoints") => &service::ENDPOINTS,
        ("", "nodes") => &node::NODES,
        ("", "events") | ("events.k8s.io", "events") => &event::EVENTS,
        ("", "namespaces") => &core::NAMESPACES,
        ("", "secrets") => &core::SECRETS,
        ("", "serviceaccounts") => &core::SERVICE_ACCOUNTS,
        ("", "configmaps") => &core::CONFIG_MAPS,
        ("", "persistentvolumes") => &core::PERSISTENT_VOLUMES,
        ("", "persistentvolumeclaims") => &core::PERSISTENT_VOLUME_CLAIMS,
        ("", "componentstatuses") => &core::COMPONENT_STATUSES,
        ("", "resourcequotas") => &core::RESOURCE_QUOTAS,
        ("apps", "deployments") => &apps::DEPLOYMENTS,
        ("apps", "replicasets") => &apps::REPLICA_SETS,
        ("apps", "statefulsets") => &apps::STATEFUL_SETS,
        ("apps", "daemonsets") => &apps::DAEMON_SETS,
        ("apps", "controllerrevisions") => &apps::CONTROLLER_REVISIONS,
        ("batch", "jobs") => &batch::JOBS,
        ("batch", "cronjobs") => &batch::CRON_JOBS,
        ("autoscaling", "horizontalpodautoscalers") => &autoscaling::HORIZONTAL_POD_AUTOSCALERS,
        ("policy", "poddisruptionbudgets") => &policy::POD_DISRUPTION_BUDGETS,
        ("networking.k8s.io", "ingresses") => &networking::INGRESSES,
        ("networking.k8s.io", "ingressclasses") => &networking::INGRESS_CLASSES,
        ("networking.k8s.io", "networkpolicies") => &networking::NETWORK_POLICIES,
        ("discovery.k8s.io", "endpointslices") => &networking::ENDPOINT_SLICES,
        ("rbac.authorization.k8s.io", "rolebindings") => &rbac::ROLE_BINDINGS,
        ("rbac.authorization.k8s.io", "clusterrolebindings") => &rbac::CLUSTER_ROLE_BINDINGS,
        ("certificates.k8s.io", "certificatesigningrequests") => {
            &certificates::CERTIFICATE_SIGNING_REQUESTS
        }
        ("coordination.k8s.io", "leases") => &coordination::LEASES,
        ("scheduling.k8s.io", "priorityclasses") => &scheduling::PRIORITY_CLASSES,
        ("node.k8s.io", "runtimeclasses") => &node::RUNTIME_CLASSES,
        ("storage.k8s.io", "storageclasses") => &storage::STORAGE_CLASSES,
        ("storage.k8s.io", "volumeattachments") => &storage::VOLUME_ATTACHMENTS,
        ("storage.k8s.io", "csinodes") => &storage::CSI_NODES,
        ("storage.k8s.io", "csidrivers") => &storage::CSI_DRIVERS,
        ("storage.k8s.io", "csistoragecapacities") => &storage::CSI_STORAGE_CAPACITIES,
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
            &admission::MUTATING_WEBHOOK_CONFIGURATIONS
        }
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            &admission::VALIDATING_WEBHOOK_CONFIGURATIONS
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            &admission::VALIDATING_ADMISSION_POLICIES
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings") => {
            &admission::VALIDATING_ADMISSION_POLICY_BINDINGS
        }
        _ => return None,
    })
}

/// The columns of a resource's Table.
///
/// Resources without a printer upstream (roles, clusterroles, limitranges,
/// customresourcedefinitions, and any unknown resource) get the API server's default:
/// `Name` and `Created At`. Custom resources use [`columns_for_custom`] instead.
pub fn columns(group: &str, plural: &str) -> Vec<ColumnDefinition> {
    match printer(group, plural) {
        Some(p) => p.columns.iter().map(Column::definition).collect(),
        None => DEFAULT_COLUMNS.iter().map(Column::definition).collect(),
    }
}

/// The cells of one object's row, in the order of [`columns`] (wide columns included).
pub fn row(group: &str, plural: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, plural) {
        Some(p) => (p.row)(obj, now),
        None => default_row(obj),
    }
}

/// `rows[].object` as upstream sends it for `includeObject=Metadata` (kubectl's default):
/// the object's metadata as a `PartialObjectMetadata`.
pub fn partial_object_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column::new("Created At", "date", d::CREATION_TIMESTAMP),
];

/// The default row: the name and the creation time in RFC 3339 (UTC).
fn default_row(obj: &Value) -> Vec<Value> {
    let created = format::timestamp(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![Value::from(format::name(obj)), Value::from(created)]
}

#[cfg(test)]
mod tests;
