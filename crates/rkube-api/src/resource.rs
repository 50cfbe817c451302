//! The registry of API resources: what each is called, where it lives, what it allows.
//!
//! Built-in resources are a static table; custom resources (from CRDs) are added at
//! run time by the API server as owned `ResourceInfo`s of the same shape.

use std::fmt;

/// Whether objects of a resource live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// The verbs discovery advertises for a resource.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const READ_ONLY: &[&str] = &["get", "list"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const GET_ONLY: &[&str] = &["get"];
const CONNECT: &[&str] = &["create", "get"];

/// A subresource such as `status` or `scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: String,
    /// The kind its requests and responses carry, as `group/version/Kind` parts.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: Vec<String>,
}

/// Group, version and kind of an object type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        GroupVersionKind {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    /// `apiVersion` as written in objects: `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// `apiVersion` for a group and version (`v1` for the core group).
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an `apiVersion` into group and version.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// One API resource at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment, e.g. `deployments`.
    pub plural: String,
    pub singular: String,
    pub scope: Scope,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Served by the generic storage; false for virtual resources (reviews, bindings).
    pub stored: bool,
}

impl ResourceInfo {
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::new(&self.group, &self.version, &self.kind)
    }

    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// `deployments.apps`, `pods` (core): how kubectl and errors name a resource.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The storage key prefix shared by every version of this resource:
    /// `/registry/<group>/<resource>/` (core resources use `core` as the group).
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("/registry/{}/{}/", group, self.plural)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.namespaced()) {
            Some(ns) => format!("{}{}/{}", self.key_prefix(), ns, name),
            None => format!("{}{}", self.key_prefix(), name),
        }
    }

    /// The storage prefix of one namespace's objects, or of all objects.
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced()) {
            Some(ns) => format!("{}{}/", self.key_prefix(), ns),
            None => self.key_prefix(),
        }
    }
}

/// A compact way to write the built-in table below.
struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    scope: Scope,
    verbs: &'static [&'static str],
    short: &'static [&'static str],
    categories: &'static [&'static str],
    /// `(name, verbs, kind)`; an empty kind means the resource's own kind.
    subresources: &'static [(&'static str, &'static [&'static str], &'static str)],
    stored: bool,
}

use Scope::{Cluster, Namespaced};

const ALL: &[&str] = &["all"];
const STATUS: (&str, &[&str], &str) = ("status", GET_PATCH_UPDATE, "");
const SCALE: (&str, &[&str], &str) = ("scale", GET_PATCH_UPDATE, "autoscaling/v1/Scale");

macro_rules! builtin {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $scope:expr,
     verbs = $verbs:expr, short = $short:expr, categories = $cat:expr, sub = $sub:expr) => {
        Builtin {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            scope: $scope,
            verbs: $verbs,
            short: $short,
            categories: $cat,
            subresources: $sub,
            stored: true,
        }
    };
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $scope:expr, virtual, verbs = $verbs:expr) => {
        Builtin {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            scope: $scope,
            verbs: $verbs,
            short: &[],
            categories: &[],
            subresources: &[],
            stored: false,
        }
    };
}

/// Every built-in resource rkube serves. The order within a group is discovery order.
const BUILTINS: &[Builtin] = &[
    // core/v1
    builtin!(
        "",
        "v1",
        "Binding",
        "bindings",
        Namespaced,
        virtual,
        verbs = CREATE_ONLY
    ),
    builtin!(
        "",
        "v1",
        "ComponentStatus",
        "componentstatuses",
        Cluster,
        verbs = READ_ONLY,
        short = &["cs"],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["cm"],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["ep"],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "Event",
        "events",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["ev"],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["limits"],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        Cluster,
        verbs = NAMESPACE_VERBS,
        short = &["ns"],
        categories = &[],
        sub = &[("finalize", &["update"], ""), STATUS]
    ),
    builtin!(
        "",
        "v1",
        "Node",
        "nodes",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &["no"],
        categories = &[],
        sub = &[
            (
                "proxy",
                &["create", "delete", "get", "patch", "update"],
                "NodeProxyOptions"
            ),
            STATUS
        ]
    ),
    builtin!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["pvc"],
        categories = &[],
        sub = &[STATUS]
    ),
    builtin!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &["pv"],
        categories = &[],
        sub = &[STATUS]
    ),
    builtin!(
        "",
        "v1",
        "Pod",
        "pods",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["po"],
        categories = ALL,
        sub = &[
            ("attach", CONNECT, "PodAttachOptions"),
            ("binding", CREATE_ONLY, "Binding"),
            ("ephemeralcontainers", GET_PATCH_UPDATE, ""),
            ("eviction", CREATE_ONLY, "policy/v1/Eviction"),
            ("exec", CONNECT, "PodExecOptions"),
            ("log", GET_ONLY, ""),
            ("portforward", CONNECT, "PodPortForwardOptions"),
            (
                "proxy",
                &["create", "delete", "get", "patch", "update"],
                "PodProxyOptions"
            ),
            ("resize", GET_PATCH_UPDATE, ""),
            STATUS,
        ]
    ),
    builtin!(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["rc"],
        categories = ALL,
        sub = &[SCALE, STATUS]
    ),
    builtin!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["quota"],
        categories = &[],
        sub = &[STATUS]
    ),
    builtin!(
        "",
        "v1",
        "Secret",
        "secrets",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["sa"],
        categories = &[],
        sub = &[(
            "token",
            CREATE_ONLY,
            "authentication.k8s.io/v1/TokenRequest"
        )]
    ),
    builtin!(
        "",
        "v1",
        "Service",
        "services",
        Namespaced,
        verbs = &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ],
        short = &["svc"],
        categories = ALL,
        sub = &[
            (
                "proxy",
                &["create", "delete", "get", "patch", "update"],
                "ServiceProxyOptions"
            ),
            STATUS
        ]
    ),
    // admissionregistration.k8s.io/v1
    builtin!(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &["api-extensions"],
        sub = &[]
    ),
    builtin!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &["api-extensions"],
        sub = &[STATUS]
    ),
    builtin!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &["api-extensions"],
        sub = &[]
    ),
    builtin!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &["api-extensions"],
        sub = &[]
    ),
    // apiextensions.k8s.io/v1
    builtin!(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &["crd", "crds"],
        categories = &["api-extensions"],
        sub = &[STATUS]
    ),
    // apps/v1
    builtin!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["ds"],
        categories = ALL,
        sub = &[STATUS]
    ),
    builtin!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["deploy"],
        categories = ALL,
        sub = &[SCALE, STATUS]
    ),
    builtin!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["rs"],
        categories = ALL,
        sub = &[SCALE, STATUS]
    ),
    builtin!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["sts"],
        categories = ALL,
        sub = &[SCALE, STATUS]
    ),
    // authentication.k8s.io/v1
    builtin!(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        Cluster,
        virtual,
        verbs = CREATE_ONLY
    ),
    builtin!(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        Cluster,
        virtual,
        verbs = CREATE_ONLY
    ),
    // authorization.k8s.io/v1
    builtin!(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        Namespaced,
        virtual,
        verbs = CREATE_ONLY
    ),
    builtin!(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        Cluster,
        virtual,
        verbs = CREATE_ONLY
    ),
    builtin!(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        Cluster,
        virtual,
        verbs = CREATE_ONLY
    ),
    builtin!(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        Cluster,
        virtual,
        verbs = CREATE_ONLY
    ),
    // autoscaling
    builtin!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["hpa"],
        categories = ALL,
        sub = &[STATUS]
    ),
    builtin!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["hpa"],
        categories = ALL,
        sub = &[STATUS]
    ),
    // batch/v1
    builtin!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["cj"],
        categories = ALL,
        sub = &[STATUS]
    ),
    builtin!(
        "batch",
        "v1",
        "Job",
        "jobs",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = ALL,
        sub = &[STATUS]
    ),
    // certificates.k8s.io/v1
    builtin!(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &["csr"],
        categories = &[],
        sub = &[("approval", GET_PATCH_UPDATE, ""), STATUS]
    ),
    // coordination.k8s.io/v1
    builtin!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    // discovery.k8s.io/v1
    builtin!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    // events.k8s.io/v1
    builtin!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["ev"],
        categories = &[],
        sub = &[]
    ),
    // flowcontrol is not served.
    // networking.k8s.io/v1
    builtin!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["ing"],
        categories = &[],
        sub = &[STATUS]
    ),
    builtin!(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["netpol"],
        categories = &[],
        sub = &[]
    ),
    // node.k8s.io/v1
    builtin!(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    // policy/v1
    builtin!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &["pdb"],
        categories = &[],
        sub = &[STATUS]
    ),
    // rbac.authorization.k8s.io/v1
    builtin!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    // scheduling.k8s.io/v1
    builtin!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &["pc"],
        categories = &[],
        sub = &[]
    ),
    // storage.k8s.io/v1
    builtin!(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "storage.k8s.io",
        "v1",
        "CSINode",
        "csinodes",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        Namespaced,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &["sc"],
        categories = &[],
        sub = &[]
    ),
    builtin!(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        Cluster,
        verbs = STANDARD_VERBS,
        short = &[],
        categories = &[],
        sub = &[STATUS]
    ),
];

/// The order of groups in discovery (upstream's priority order, core first).
pub const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "metrics.k8s.io",
];

/// The preferred version of each built-in group with more than one.
pub fn preferred_version(group: &str) -> Option<&'static str> {
    match group {
        "autoscaling" => Some("v2"),
        _ => None,
    }
}

fn build(b: &Builtin) -> ResourceInfo {
    let subresources = b
        .subresources
        .iter()
        .map(|(name, verbs, kind)| {
            let (group, version, kind) = match kind.rsplit_once('/') {
                Some((gv, k)) => {
                    let (g, v) = split_api_version(gv);
                    (g.to_string(), v.to_string(), k.to_string())
                }
                None if kind.is_empty() => (
                    b.group.to_string(),
                    b.version.to_string(),
                    b.kind.to_string(),
                ),
                None => (b.group.to_string(), b.version.to_string(), kind.to_string()),
            };
            Subresource {
                name: name.to_string(),
                group,
                version,
                kind,
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
            }
        })
        .collect();
    ResourceInfo {
        group: b.group.to_string(),
        version: b.version.to_string(),
        kind: b.kind.to_string(),
        plural: b.plural.to_string(),
        singular: b.kind.to_lowercase(),
        scope: b.scope,
        verbs: b.verbs.iter().map(|v| v.to_string()).collect(),
        short_names: b.short.iter().map(|v| v.to_string()).collect(),
        categories: b.categories.iter().map(|v| v.to_string()).collect(),
        subresources,
        stored: b.stored,
    }
}

/// All built-in resources, in discovery order within each group.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    BUILTINS.iter().map(build).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_registry_layout() {
        let all = builtin_resources();
        let deploy = all.iter().find(|r| r.plural == "deployments").unwrap();
        assert_eq!(
            deploy.key(Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );
        let ns = all.iter().find(|r| r.plural == "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "team-a"),
            "/registry/core/namespaces/team-a"
        );
        assert_eq!(deploy.group_resource(), "deployments.apps");
    }

    #[test]
    fn scale_subresource_names_autoscaling_v1() {
        let all = builtin_resources();
        let deploy = all.iter().find(|r| r.plural == "deployments").unwrap();
        let scale = deploy.subresource("scale").unwrap();
        assert_eq!(
            (
                scale.group.as_str(),
                scale.version.as_str(),
                scale.kind.as_str()
            ),
            ("autoscaling", "v1", "Scale")
        );
        let status = deploy.subresource("status").unwrap();
        assert_eq!(status.kind, "Deployment");
    }

    #[test]
    fn plural_and_kind_are_unique_per_group_version() {
        let all = builtin_resources();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.group == b.group && a.version == b.version {
                    assert_ne!(a.plural, b.plural);
                    assert_ne!(a.kind, b.kind);
                }
            }
        }
    }
}
