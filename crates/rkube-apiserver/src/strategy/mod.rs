//! Per-resource rules (upstream's `strategy.go`): defaults, validation, status and
//! generation handling, selectable fields. One module per resource family.
//!
//! The generic store calls, on create: `default`, `prepare_for_create`,
//! `record_requester`, `validate`;
//! on update: `default`, `prepare_for_update`, `validate_update`. Status is handled
//! generically: for resources with a `status` subresource it is cleared on create
//! (then `prepare_for_create` may set an initial one) and carried over from the old
//! object on updates of the main resource; `/status` updates change only it.

use std::sync::Arc;

use rkube_api::ResourceInfo;
use serde_json::Value;

use crate::error::FieldError;

pub mod apps;
pub mod batch;
pub mod certificates;
pub mod core;
pub mod crd;
pub mod defaults;
pub mod rbac;
pub mod validation;

/// What differs between resources.
pub trait Strategy: Send + Sync {
    /// Whether `metadata.generation` starts at 1 and is bumped on spec changes.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Checks an object name (most kinds: a DNS-1123 subdomain).
    fn validate_name(&self, name: &str) -> Vec<String> {
        rkube_api::meta::validate_dns1123_subdomain(name)
    }

    /// Fills in defaults; runs on create and after every update or patch.
    fn default(&self, _obj: &mut Value) {}

    /// On create, after the generic preparation (status cleared).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// On create, records who asks (CertificateSigningRequests keep their requester).
    fn record_requester(&self, _obj: &mut Value, _user: &crate::auth::UserInfo) {}

    /// On update of the main resource (status already carried over).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// On an update through a subresource that writes status (`status`, `approval`),
    /// before the generic rules: which part of the new status is taken.
    fn prepare_for_subresource_update(&self, _subresource: &str, _new: &mut Value, _old: &Value) {}

    /// Validation of a new object.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validation of an update (immutable fields and the like), plus `validate`.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Validation of a `/status` update.
    fn validate_status_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Names of the fields usable in `?fieldSelector=` beyond `metadata.name` and
    /// `metadata.namespace`.
    fn field_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// The values of `field_names` for an object.
    fn fields(&self, _obj: &Value) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Whether PUT may create a missing object.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Warnings to return with a write (`Warning:` headers).
    fn warnings(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }
}

/// The strategy of resources without rules of their own.
pub struct Generic {
    pub generation: bool,
}

impl Strategy for Generic {
    fn tracks_generation(&self) -> bool {
        self.generation
    }
}

/// The strategy for a built-in resource.
pub fn for_builtin(info: &ResourceInfo) -> Arc<dyn Strategy> {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => Arc::new(core::NamespaceStrategy),
        ("", "pods") => Arc::new(core::PodStrategy),
        ("", "services") => Arc::new(core::ServiceStrategy),
        ("", "secrets") => Arc::new(core::SecretStrategy),
        ("", "configmaps") => Arc::new(core::ConfigMapStrategy),
        ("", "nodes") => Arc::new(core::NodeStrategy),
        ("", "events") => Arc::new(core::EventStrategy),
        ("", "persistentvolumeclaims") => Arc::new(core::PvcStrategy),
        ("", "persistentvolumes") => Arc::new(core::PvStrategy),
        ("", "replicationcontrollers") => Arc::new(core::ReplicationControllerStrategy),
        ("", "podtemplates") => Arc::new(core::PodTemplateStrategy),
        ("", "serviceaccounts") => Arc::new(core::ServiceAccountStrategy),
        ("apps", "deployments") => Arc::new(apps::DeploymentStrategy),
        ("apps", "replicasets") => Arc::new(apps::ReplicaSetStrategy),
        ("apps", "statefulsets") => Arc::new(apps::StatefulSetStrategy),
        ("apps", "daemonsets") => Arc::new(apps::DaemonSetStrategy),
        ("batch", "jobs") => Arc::new(batch::JobStrategy),
        ("batch", "cronjobs") => Arc::new(batch::CronJobStrategy),
        ("apiextensions.k8s.io", "customresourcedefinitions") => Arc::new(crd::CrdStrategy),
        ("rbac.authorization.k8s.io", "roles") => Arc::new(rbac::RoleStrategy { namespaced: true }),
        ("rbac.authorization.k8s.io", "clusterroles") => {
            Arc::new(rbac::RoleStrategy { namespaced: false })
        }
        ("rbac.authorization.k8s.io", "rolebindings") => {
            Arc::new(rbac::BindingStrategy { namespaced: true })
        }
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            Arc::new(rbac::BindingStrategy { namespaced: false })
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            Arc::new(certificates::CsrStrategy)
        }
        ("events.k8s.io", "events") => Arc::new(core::EventStrategy),
        ("networking.k8s.io", "ingresses" | "networkpolicies")
        | ("policy", "poddisruptionbudgets")
        | ("autoscaling", "horizontalpodautoscalers")
        | ("admissionregistration.k8s.io", _) => Arc::new(Generic { generation: true }),
        _ => Arc::new(Generic { generation: false }),
    }
}

/// Whether two objects differ outside `metadata` and `status` (a spec change).
pub fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(new) != strip(old)
}
