//! Objects every cluster has from its first start: the system namespaces, the
//! `kubernetes` Service and its endpoints, and the built-in priority classes.

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
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
        }),
    )
    .await?;
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
    Ok(())
}
