//! Objects every cluster has from its first start: the system namespaces, the
//! `kubernetes` Service and its endpoints, the built-in priority classes, and the
//! default RBAC roles every user relies on.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::server::ApiServer;
use crate::storage::WriteOptions;

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

fn system_options() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        field_manager: Some("kube-apiserver".into()),
        user: UserInfo::new("system:apiserver", &["system:masters"]),
        ..WriteOptions::default()
    }
}

/// Creates an object unless it exists.
async fn ensure(
    server: &Arc<ApiServer>,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    let served = server
        .registry
        .all()
        .into_iter()
        .find(|s| s.info.group == group && s.info.plural == plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} is not served")))?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if server.read_current(&served, ns, name).await?.is_some() {
        return Ok(());
    }
    match server
        .create_object(&served, ns, obj, &system_options())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes sure the objects every cluster starts with exist.
pub async fn ensure_defaults(server: &Arc<ApiServer>) -> ApiResult<()> {
    for ns in SYSTEM_NAMESPACES {
        ensure(
            server,
            "",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = server.config.kubernetes_service_ip();
    let (host, port) = advertised(server);
    crate::admission::reserve_ip(server, ip, "default/kubernetes").await?;
    ensure(
        server,
        "",
        "services",
        Some("default"),
        json!({
            "metadata": {
                "name": "kubernetes",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": ip.to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
        }),
    )
    .await?;
    reconcile_kubernetes_endpoints(server, &host, port).await?;
    for (name, value, desc) in [
        (
            "system-node-critical",
            2000001000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2000000000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        ensure(
            server,
            "scheduling.k8s.io",
            "priorityclasses",
            None,
            json!({
                "metadata": {"name": name},
                "value": value,
                "globalDefault": false,
                "description": desc,
                "preemptionPolicy": "PreemptLowerPriority",
            }),
        )
        .await?;
    }
    ensure_rbac_defaults(server).await
}

/// Upstream's bootstrap roles that every user depends on: `cluster-admin` for
/// `system:masters`, and for every authenticated user the right to ask who they are
/// and what they may do (`kubectl auth whoami`, `auth can-i`) and to read discovery.
async fn ensure_rbac_defaults(server: &Arc<ApiServer>) -> ApiResult<()> {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let meta = |name: &str| {
        json!({
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        })
    };
    let discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    let public_urls = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let roles = [
        (
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        (
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"],
                 "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                 "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                 "verbs": ["create"]},
            ]),
        ),
        (
            "system:discovery",
            json!([{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        ),
        (
            "system:public-info-viewer",
            json!([{"nonResourceURLs": public_urls, "verbs": ["get"]}]),
        ),
    ];
    for (name, rules) in roles {
        ensure(
            server,
            RBAC,
            "clusterroles",
            None,
            json!({"metadata": meta(name), "rules": rules}),
        )
        .await?;
    }
    let group = |g: &str| json!({"apiGroup": RBAC, "kind": "Group", "name": g});
    let bindings = [
        ("cluster-admin", vec![group("system:masters")]),
        ("system:basic-user", vec![group("system:authenticated")]),
        ("system:discovery", vec![group("system:authenticated")]),
        (
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
    ];
    for (name, subjects) in bindings {
        ensure(
            server,
            RBAC,
            "clusterrolebindings",
            None,
            json!({
                "metadata": meta(name),
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": subjects,
            }),
        )
        .await?;
    }
    Ok(())
}

/// The advertised address as (IP, port).
fn advertised(server: &ApiServer) -> (String, u16) {
    let a = &server.config.advertise_address;
    match a.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(6443)),
        None => (a.clone(), 6443),
    }
}

/// Points the `kubernetes` Service's Endpoints and EndpointSlice at this API server,
/// so pods reach it at the Service's ClusterIP (upstream's endpoint reconciler).
async fn reconcile_kubernetes_endpoints(
    server: &Arc<ApiServer>,
    host: &str,
    port: u16,
) -> ApiResult<()> {
    let opts = system_options();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (group, version, plural, desired) in [
        ("", "v1", "endpoints", endpoints),
        ("discovery.k8s.io", "v1", "endpointslices", slice),
    ] {
        let served = server
            .registry
            .lookup(group, version, plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} is not served")))?;
        let body = desired.clone();
        let result = server
            .update_object(
                &served,
                Some("default"),
                "kubernetes",
                crate::storage::Part::Main,
                &opts,
                |cur| {
                    let mut v = body.clone();
                    if let Some(cur) = cur {
                        // Keep what the reconciler does not own.
                        v["metadata"] = cur.get("metadata").cloned().unwrap_or(json!({}));
                        for k in ["subsets", "endpoints", "ports", "addressType"] {
                            if let Some(x) = body.get(k) {
                                v[k] = x.clone();
                            }
                        }
                        if let Some(m) = v["metadata"].as_object_mut() {
                            m.remove("resourceVersion");
                        }
                    }
                    Ok(v)
                },
            )
            .await;
        match result {
            Ok(_) => {}
            Err(e) if e.code == http::StatusCode::NOT_FOUND => {
                server
                    .create_object(&served, Some("default"), desired, &opts)
                    .await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
