//! The node side: registering Node objects, following them (pod CIDR, conditions set
//! by others), and heartbeats: Lease renewals and the Ready condition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::{PodIps, Shared, SimNodeError};

/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 32;

fn now_string() -> String {
    jiff::Timestamp::now().to_string()
}

/// The conditions of a healthy kubelet.
pub(crate) fn healthy_conditions() -> Value {
    let now = now_string();
    let c = |ty: &str, status: &str, reason: &str, message: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

fn node_status(shared: &Shared, name: &str, ip: std::net::Ipv4Addr) -> Value {
    let cfg = &shared.config;
    let resources = json!({
        "cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods, "ephemeral-storage": cfg.ephemeral_storage,
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": healthy_conditions(),
        "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": format!("{:032x}", u128::from(u32::from(ip))),
            "systemUUID": format!("sim-{name}"),
            "bootID": format!("sim-{name}"),
            "kernelVersion": "rkube-simulated",
            "osImage": "rkube simulated node",
            "containerRuntimeVersion": "rkube-sim://0.1.0",
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

fn node_object(shared: &Shared, name: &str) -> Node {
    let mut labels: BTreeMap<String, String> = shared.config.labels.clone();
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("type", "simulated"),
    ] {
        labels.insert(k.into(), v.into());
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "rkube.io/simulated".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Creates (or takes over) every node and posts its status.
pub(crate) async fn register_all(shared: &Arc<Shared>) -> Result<(), SimNodeError> {
    let nodes: Vec<(String, std::net::Ipv4Addr)> = {
        let mut v: Vec<_> = shared
            .lock()
            .iter()
            .map(|(k, n)| (k.clone(), n.ip))
            .collect();
        v.sort();
        v
    };
    let api: Api<Node> = Api::all(shared.client.clone());
    let results: Vec<Result<(), SimNodeError>> = futures::stream::iter(nodes)
        .map(|(name, ip)| {
            let api = api.clone();
            async move {
                let err = |source| SimNodeError::Register {
                    node: name.clone(),
                    source,
                };
                match api
                    .create(&PostParams::default(), &node_object(shared, &name))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(err(e)),
                }
                let status = json!({"status": node_status(shared, &name, ip)});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .map_err(err)?;
                Ok(())
            }
        })
        .buffer_unordered(REGISTER_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

fn pod_cidr(n: &Node) -> Option<rkube_api::cidr::Ipv4Cidr> {
    n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

/// Follows our nodes: learns their pod CIDR and what others set on them.
pub(crate) async fn watch_nodes(shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default().labels("type=simulated"))
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let node = match ev {
            Ok(Event::Apply(n)) | Ok(Event::InitApply(n)) => n,
            _ => continue,
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut nodes = shared.lock();
        let Some(sim) = nodes.get_mut(&name) else {
            continue;
        };
        if sim.ips.is_none()
            && let Some(c) = pod_cidr(&node)
        {
            sim.ips = Some(PodIps::new(c));
            shared.wake.notify_one();
        }
        sim.seen = Some(Arc::new(node));
    }
}

fn ready_status(n: &Node) -> Option<(String, Option<jiff::Timestamp>)> {
    let c = n
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        c.status.clone(),
        c.last_heartbeat_time.as_ref().map(|t| t.0),
    ))
}

/// Heartbeats in flight at once: a slow API server delays a node's heartbeat, not
/// every node's after it.
const HEARTBEATS_IN_FLIGHT: usize = 256;

/// Renews each node's Lease every `heartbeat_interval`, spread evenly over the
/// interval, and re-posts its Ready condition when someone else changed it or it is
/// due (`status_report_interval`). Heartbeats of different nodes run concurrently;
/// a node whose last heartbeat is still in flight skips its turn.
pub(crate) async fn heartbeats(shared: Arc<Shared>) {
    let mut names: Vec<String> = shared.lock().keys().cloned().collect();
    names.sort();
    if names.is_empty() {
        return;
    }
    let permits = Arc::new(Semaphore::new(HEARTBEATS_IN_FLIGHT));
    let tick =
        (shared.config.heartbeat_interval / names.len() as u32).max(Duration::from_millis(1));
    // Ticks missed under load are made up at once: with `Delay`, every late
    // wake-up would stretch the round, and a busy server would see nodes go
    // silent for longer than the grace period.
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = 0;
    loop {
        ticker.tick().await;
        let name = names[i % names.len()].clone();
        i += 1;
        let seen = {
            let mut nodes = shared.lock();
            let Some(n) = nodes.get_mut(&name) else {
                continue;
            };
            if n.paused {
                n.lease = None;
                continue;
            }
            if n.beating {
                continue;
            }
            n.beating = true;
            n.seen.clone()
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            heartbeat(&shared, &name, seen.as_deref()).await;
            if let Some(n) = shared.lock().get_mut(&name) {
                n.beating = false;
            }
            drop(permit);
        });
    }
}

/// One node's heartbeat: its Lease, and its Ready condition when due.
async fn heartbeat(shared: &Shared, name: &str, seen: Option<&Node>) {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let report = shared.config.status_report_interval;
    renew_lease(shared, &leases, name).await;
    let due = match seen.and_then(ready_status) {
        Some((status, hb)) => {
            status != "True"
                || hb.is_none_or(|t| {
                    jiff::Timestamp::now().duration_since(t).unsigned_abs() >= report
                })
        }
        None => seen.is_some(),
    };
    if due {
        let patch = json!({"status": {"conditions": healthy_conditions()}});
        if let Err(e) = nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::debug!(node = %name, error = %e, "posting node status");
        }
    }
}

/// Keeps the Lease a node wrote, for its next renewal.
fn hold(shared: &Shared, name: &str, lease: Lease) {
    if let Some(n) = shared.lock().get_mut(name) {
        n.lease = Some(lease);
    }
}

async fn renew_lease(shared: &Shared, leases: &Api<Lease>, name: &str) {
    let now = MicroTime(jiff::Timestamp::now());
    let last = shared.lock().get_mut(name).and_then(|n| n.lease.take());
    if let Some(mut lease) = last {
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(now.clone());
        }
        match leases.replace(name, &PostParams::default(), &lease).await {
            Ok(l) => return hold(shared, name, l),
            Err(e) => tracing::debug!(node = %name, error = %e, "renewing the lease; reloading it"),
        }
    }
    let current = match leases.get_opt(name).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "reading the lease");
            return;
        }
    };
    let spec = LeaseSpec {
        holder_identity: Some(name.into()),
        lease_duration_seconds: Some(shared.config.lease_duration_seconds),
        renew_time: Some(now),
        ..Default::default()
    };
    let result = match current {
        Some(mut l) => {
            l.spec = Some(spec);
            leases.replace(name, &PostParams::default(), &l).await
        }
        None => {
            let node_uid = shared
                .lock()
                .get(name)
                .and_then(|n| n.seen.as_ref().and_then(|s| s.metadata.uid.clone()));
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("kube-node-lease".into()),
                    // The node owns its lease: deleting the node deletes the lease.
                    owner_references: node_uid.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.into(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(l) => hold(shared, name, l),
        Err(e) => tracing::debug!(node = %name, error = %e, "writing the lease"),
    }
}
