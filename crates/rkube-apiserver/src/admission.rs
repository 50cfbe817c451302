//! Admission: checks and mutations that need the cluster's state, run on writes after
//! the strategy. Namespace lifecycle, service IP and node port allocation, pod
//! defaults that depend on other objects (service account, priority, tolerations),
//! storage-object-in-use protection finalizers on claims and volumes.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rkube_api::meta;
use rkube_store::StoreError;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, FieldError};
use crate::registry::Served;
use crate::server::ApiServer;
use crate::storage::{DeleteOptions, WriteOptions};

/// Where allocations live in the store (outside `/registry/`, so not served).
const IP_PREFIX: &str = "/rkube/allocations/serviceips/";
const PORT_PREFIX: &str = "/rkube/allocations/nodeports/";

fn is(served: &Served, group: &str, plural: &str) -> bool {
    served.info.group == group && served.info.plural == plural
}

/// Checks and mutations on create.
pub async fn admit_create(
    server: &ApiServer,
    served: &Arc<Served>,
    obj: &mut Value,
    opts: &WriteOptions,
) -> ApiResult<()> {
    if served.info.namespaced() {
        namespace_lifecycle(server, served, obj).await?;
    }
    if is(served, "", "services") {
        allocate_service(server, obj, None, opts).await?;
    }
    if is(served, "", "pods") {
        pod_defaults(server, obj).await?;
    }
    if is(served, "", "persistentvolumeclaims") {
        add_finalizer(obj, "kubernetes.io/pvc-protection");
    }
    if is(served, "", "persistentvolumes") {
        add_finalizer(obj, "kubernetes.io/pv-protection");
    }
    Ok(())
}

/// StorageObjectInUseProtection: every new claim and volume carries the finalizer
/// that the pvc-protection / pv-protection controllers take off once nothing uses
/// it, so a claim a pod still mounts (or a bound volume) outlives its deletion.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

/// Checks and mutations on update.
pub async fn admit_update(
    server: &ApiServer,
    served: &Arc<Served>,
    new: &mut Value,
    old: &Value,
    opts: &WriteOptions,
) -> ApiResult<()> {
    if is(served, "", "services") {
        allocate_service(server, new, Some(old), opts).await?;
    }
    Ok(())
}

/// Whether admitting a write of this resource allocates (Services: cluster IPs
/// and node ports), so that an attempt made over a stale copy and retried would
/// allocate twice.
pub fn allocates(served: &Served) -> bool {
    is(served, "", "services")
}

/// Undoes allocations of an object whose create failed.
pub async fn release_on_failure(server: &ApiServer, served: &Served, obj: &Value) {
    if is(served, "", "services") {
        release_service(server, obj, None).await;
    }
}

/// Frees what a deleted object held.
pub async fn release_on_delete(server: &ApiServer, served: &Served, obj: &Value) {
    if is(served, "", "services") {
        release_service(server, obj, None).await;
    }
}

/// The grace period of a delete, for kinds that have one (pods).
pub fn grace_period(served: &Served, obj: &Value, opts: &DeleteOptions) -> Option<i64> {
    if !is(served, "", "pods") {
        return None;
    }
    let scheduled = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !scheduled || phase == "Succeeded" || phase == "Failed" {
        return Some(0);
    }
    let g = opts.grace_period_seconds.or_else(|| {
        obj.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
    });
    // A negative or absent period means the default; 0 means force.
    Some(match g {
        Some(g) if g >= 0 => g,
        _ => 30,
    })
}

async fn namespace_lifecycle(server: &ApiServer, served: &Served, obj: &Value) -> ApiResult<()> {
    let Some(ns) = meta::namespace(obj) else {
        return Err(ApiError::bad_request(
            "the namespace of the object must be set",
        ));
    };
    let key = format!("/registry/core/namespaces/{ns}");
    let namespace = match server.cache.get(&key) {
        Some(o) => Some(o.value()),
        None => {
            // The cache may lag a namespace created a moment ago.
            server
                .store
                .get(&key)
                .await?
                .map(|kv| serde_json::from_slice::<Value>(&kv.value).unwrap_or(Value::Null))
        }
    };
    let Some(namespace) = namespace else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    let terminating = meta::deletion_timestamp(&namespace).is_some()
        || namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
    // Events may still be written while a namespace is going away.
    if terminating && served.info.plural != "events" {
        let mut e = ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            crate::error::qualified(&served.info.group, &served.info.plural),
            meta::name(obj)
                .or_else(|| meta::generate_name(obj))
                .unwrap_or_default(),
        ));
        e.reason = "Forbidden";
        return Err(e);
    }
    Ok(())
}

/// Pod fields upstream's admission plugins set: service account, priority, and the
/// not-ready/unreachable tolerations.
async fn pod_defaults(server: &ApiServer, pod: &mut Value) -> ApiResult<()> {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return Ok(());
    }
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa);
    spec["serviceAccount"] = json!(sa);
    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .map(str::to_string);
    mount_service_account_token(server, pod, &sa);
    let (priority, policy) = match class {
        Some(c) if !c.is_empty() => {
            let key = format!("/registry/scheduling.k8s.io/priorityclasses/{c}");
            let pc = match server.cache.get(&key) {
                Some(o) => o.value(),
                None => {
                    return Err(ApiError::forbidden(format!(
                        "pods \"{}\" is forbidden: no PriorityClass with name {c} was found",
                        meta::name(pod).unwrap_or_default()
                    )));
                }
            };
            (
                pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                pc.get("preemptionPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("PreemptLowerPriority")
                    .to_string(),
            )
        }
        _ => (0, "PreemptLowerPriority".to_string()),
    };
    let spec = &mut pod["spec"];
    if spec.get("priority").is_none_or(Value::is_null) {
        spec["priority"] = json!(priority);
    }
    if spec.get("preemptionPolicy").is_none_or(Value::is_null) {
        spec["preemptionPolicy"] = json!(policy);
    }
    let tolerations = spec
        .as_object_mut()
        .map(|m| m.entry("tolerations").or_insert_with(|| json!([])));
    if let Some(Value::Array(t)) = tolerations {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let has = t.iter().any(|x| {
                let k = x.get("key").and_then(Value::as_str);
                let effect = x.get("effect").and_then(Value::as_str).unwrap_or("");
                (k == Some(key)
                    || (k.is_none() && x.get("operator").and_then(Value::as_str) == Some("Exists")))
                    && (effect.is_empty() || effect == "NoExecute")
            });
            if !has {
                t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    Ok(())
}

/// Where pods find their ServiceAccount token, CA and namespace.
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Adds the projected `kube-api-access-*` volume (token, cluster CA, namespace) to a
/// pod and mounts it in every container, unless automounting is turned off on the pod
/// or its ServiceAccount (upstream's ServiceAccount admission).
fn mount_service_account_token(server: &ApiServer, pod: &mut Value, sa: &str) {
    let ns = meta::namespace(pod).unwrap_or_default().to_string();
    let pod_says = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool);
    let sa_says = server
        .cache
        .get(&format!("/registry/core/serviceaccounts/{ns}/{sa}"))
        .and_then(|o| {
            o.value()
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        });
    if pod_says.or(sa_says) == Some(false) {
        return;
    }
    let mounted = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|m| {
                m.iter()
                    .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            })
    };
    let name = format!("kube-api-access-{}", crate::storage::random_suffix(5));
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let mut added = false;
    for list in ["initContainers", "containers"] {
        if let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        {
            for c in cs {
                if mounted(c) {
                    continue;
                }
                let mounts = meta::ensure_object(c)
                    .entry("volumeMounts")
                    .or_insert_with(|| json!([]));
                if let Some(m) = mounts.as_array_mut() {
                    m.push(json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
                    added = true;
                }
            }
        }
    }
    if added {
        let vols = meta::ensure_object(&mut pod["spec"])
            .entry("volumes")
            .or_insert_with(|| json!([]));
        if let Some(v) = vols.as_array_mut() {
            v.push(volume);
        }
    }
}

// ---- Service ClusterIP and NodePort allocation ----

fn service_key(obj: &Value) -> String {
    format!(
        "{}/{}",
        meta::namespace(obj).unwrap_or_default(),
        meta::name(obj).unwrap_or_default()
    )
}

fn service_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn needs_node_ports(obj: &Value) -> bool {
    match service_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn cluster_ip(obj: &Value) -> Option<&str> {
    obj.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

async fn take(server: &ApiServer, key: String, owner: &str) -> Result<bool, ApiError> {
    match server
        .store
        .create(&key, bytes::Bytes::from(owner.to_string()))
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => {
            // Ours already (an update that keeps its allocation)?
            let cur = server.store.get(&key).await?;
            Ok(cur.is_some_and(|kv| kv.value == owner.as_bytes()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn free(server: &ApiServer, key: String, owner: &str) {
    if let Ok(Some(kv)) = server.store.get(&key).await
        && kv.value == owner.as_bytes()
    {
        let _ = server.store.delete(&key, Some(kv.mod_revision)).await;
    }
}

fn invalid_service(obj: &Value, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid("", "Service", meta::name(obj).unwrap_or_default(), &errs)
}

/// Allocates (or checks and reserves) the ClusterIP and node ports of a Service.
async fn allocate_service(
    server: &ApiServer,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOptions,
) -> ApiResult<()> {
    let owner = service_key(obj);
    let cfg = &server.config;
    let ty = service_type(obj).to_string();
    // ClusterIP.
    if ty == "ExternalName" {
        if let Some(m) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            m.remove("clusterIP");
            m.remove("clusterIPs");
        }
    } else {
        let kept = old.and_then(cluster_ip).map(str::to_string);
        match (cluster_ip(obj).map(str::to_string), kept) {
            (Some(ip), _) if ip == "None" => {}
            (None, Some(old_ip)) => obj["spec"]["clusterIP"] = json!(old_ip),
            (Some(ip), Some(old_ip)) if ip == old_ip => {}
            (Some(ip), _) => {
                let addr: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid_service(
                        obj,
                        vec![FieldError::invalid(
                            "spec.clusterIPs[0]",
                            ip.as_str(),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    )
                })?;
                if !cfg.service_cidr.contains(addr) {
                    return Err(invalid_service(
                        obj,
                        vec![FieldError::invalid(
                            "spec.clusterIPs",
                            json!([ip]),
                            format!(
                                "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                                cfg.service_cidr
                            ),
                        )],
                    ));
                }
                if !opts.dry_run && !take(server, format!("{IP_PREFIX}{ip}"), &owner).await? {
                    return Err(invalid_service(
                        obj,
                        vec![FieldError::invalid(
                            "spec.clusterIPs",
                            json!([ip]),
                            format!("failed to allocate IP {ip}: provided IP is already allocated"),
                        )],
                    ));
                }
            }
            (None, None) => {
                let ip = allocate_ip(server, &owner, opts.dry_run).await?;
                obj["spec"]["clusterIP"] = json!(ip);
            }
        }
        if let Some(ip) = cluster_ip(obj).map(str::to_string) {
            obj["spec"]["clusterIPs"] = json!([ip]);
            if ip != "None" || obj.pointer("/spec/ipFamilies").is_none() {
                obj["spec"]["ipFamilies"] = json!(["IPv4"]);
            }
            if obj
                .pointer("/spec/ipFamilyPolicy")
                .is_none_or(Value::is_null)
            {
                obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
    }
    // Node ports.
    let want_ports = needs_node_ports(obj);
    let old_ports: Vec<(usize, i64)> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .enumerate()
                .filter_map(|(i, p)| p.get("nodePort").and_then(Value::as_i64).map(|n| (i, n)))
                .collect()
        })
        .unwrap_or_default();
    let mut taken_now: Vec<i64> = Vec::new();
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            if !want_ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            let requested = p
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0);
            let port = match requested {
                Some(n) => {
                    if n < cfg.node_port_range.0 as i64 || n > cfg.node_port_range.1 as i64 {
                        let (lo, hi) = cfg.node_port_range;
                        return Err(invalid_service(
                            &Value::Null,
                            vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                n,
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                                ),
                            )],
                        ));
                    }
                    let reused = old_ports.iter().any(|(_, o)| *o == n);
                    if !reused
                        && !opts.dry_run
                        && !take(server, format!("{PORT_PREFIX}{n}"), &owner).await?
                    {
                        return Err(invalid_service(
                            &Value::Null,
                            vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                n,
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    n
                }
                None => match old_ports.iter().find(|(j, _)| *j == i) {
                    Some((_, n)) => *n,
                    None => allocate_port(server, &owner, opts.dry_run, &taken_now).await?,
                },
            };
            taken_now.push(port);
            p["nodePort"] = json!(port);
        }
    }
    // Free what the update dropped.
    if let Some(old) = old
        && !opts.dry_run
    {
        for (_, n) in &old_ports {
            if !taken_now.contains(n) {
                free(server, format!("{PORT_PREFIX}{n}"), &owner).await;
            }
        }
        if let Some(old_ip) = cluster_ip(old)
            && old_ip != "None"
            && cluster_ip(obj) != Some(old_ip)
        {
            free(server, format!("{IP_PREFIX}{old_ip}"), &owner).await;
        }
    }
    Ok(())
}

async fn allocate_ip(server: &ApiServer, owner: &str, dry_run: bool) -> ApiResult<String> {
    use rand::Rng;
    let cidr = server.config.service_cidr;
    let size = cidr.size();
    // Skip the network address, the first address (the `kubernetes` Service) and
    // the broadcast address.
    if size < 4 {
        return Err(ApiError::internal("the service CIDR is too small"));
    }
    let start = rand::rng().random_range(2..size - 1);
    for i in 0..size - 3 {
        let off = 2 + (start - 2 + i) % (size - 3);
        let ip = cidr.nth(off);
        let key = format!("{IP_PREFIX}{ip}");
        if dry_run {
            if server.store.get(&key).await?.is_none() {
                return Ok(ip.to_string());
            }
            continue;
        }
        if take(server, key, owner).await? {
            return Ok(ip.to_string());
        }
    }
    Err(ApiError::internal("range is full: no service IPs left"))
}

async fn allocate_port(
    server: &ApiServer,
    owner: &str,
    dry_run: bool,
    avoid: &[i64],
) -> ApiResult<i64> {
    use rand::Rng;
    let (lo, hi) = server.config.node_port_range;
    let span = (hi - lo + 1) as i64;
    let start = rand::rng().random_range(0..span);
    for i in 0..span {
        let port = lo as i64 + (start + i) % span;
        if avoid.contains(&port) {
            continue;
        }
        let key = format!("{PORT_PREFIX}{port}");
        if dry_run {
            if server.store.get(&key).await?.is_none() {
                return Ok(port);
            }
            continue;
        }
        if take(server, key, owner).await? {
            return Ok(port);
        }
    }
    Err(ApiError::internal("range is full: no node ports left"))
}

async fn release_service(server: &ApiServer, obj: &Value, _old: Option<&Value>) {
    let owner = service_key(obj);
    if let Some(ip) = cluster_ip(obj)
        && ip != "None"
    {
        free(server, format!("{IP_PREFIX}{ip}"), &owner).await;
    }
    for p in obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
            free(server, format!("{PORT_PREFIX}{n}"), &owner).await;
        }
    }
}

/// Removes allocations whose Service no longer exists (after a crash between
/// allocating and storing). Runs at start, before clients are served.
pub async fn repair_allocations(server: &ApiServer) -> ApiResult<()> {
    for prefix in [IP_PREFIX, PORT_PREFIX] {
        let list = server.store.list(prefix, Default::default()).await?;
        for kv in list.kvs {
            let owner = String::from_utf8_lossy(&kv.value).to_string();
            let (ns, name) = owner.split_once('/').unwrap_or(("", ""));
            let svc_key = format!("/registry/core/services/{ns}/{name}");
            let held = match server.store.get(&svc_key).await? {
                Some(svc) => {
                    let v: Value = serde_json::from_slice(&svc.value).unwrap_or(Value::Null);
                    let value = kv.key.rsplit('/').next().unwrap_or("");
                    cluster_ip(&v) == Some(value)
                        || v.pointer("/spec/ports")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .any(|p| {
                                p.get("nodePort")
                                    .and_then(Value::as_i64)
                                    .map(|n| n.to_string())
                                    .as_deref()
                                    == Some(value)
                            })
                }
                None => false,
            };
            if !held {
                let _ = server.store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    Ok(())
}

/// Reserves a fixed ClusterIP for a system Service (the `kubernetes` Service).
pub async fn reserve_ip(server: &ApiServer, ip: Ipv4Addr, owner: &str) -> ApiResult<bool> {
    take(server, format!("{IP_PREFIX}{ip}"), owner).await
}
