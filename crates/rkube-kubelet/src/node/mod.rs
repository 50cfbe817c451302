//! The Node object of this agent: registration, the status (capacity, allocatable,
//! conditions with heartbeats, addresses, nodeInfo, images), the Lease heartbeat in
//! `kube-node-lease`, and waiting for the podCIDR the control plane assigns.

pub mod address;
pub mod capacity;
pub mod lease;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rkube_net::Ipv4Cidr;
use rkube_runtime::Runtime;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::KUBELET_VERSION;
use crate::config::KubeletConfig;
use capacity::{NodeIdentity, NodeResources};

/// Why the Node could not be registered or its podCIDR read.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The API refused.
    #[error("registering node {node}: {source}")]
    Api {
        /// The node.
        node: String,
        /// The cause.
        source: kube::Error,
    },
    /// The assigned podCIDR does not parse.
    #[error("node {node} has an invalid podCIDR {cidr:?}")]
    PodCidr {
        /// The node.
        node: String,
        /// What it has.
        cidr: String,
    },
}

/// Kibibytes, as upstream renders memory capacity (`24684092Ki`).
fn ki(bytes: i64) -> String {
    if bytes % 1024 == 0 {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

fn cpu(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// What the status reporter needs to know.
pub struct NodeState {
    /// Settings.
    pub config: KubeletConfig,
    /// Capacity and allocatable.
    pub resources: NodeResources,
    /// nodeInfo.
    pub identity: NodeIdentity,
    /// The host name (the Hostname address).
    pub hostname: String,
    /// Whether pods can run: the pod network is set up.
    pub network_ready: watch::Receiver<bool>,
}

/// The labels a node registers with.
fn labels(s: &NodeState) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            s.config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            s.identity.architecture.clone(),
        ),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            s.identity.architecture.clone(),
        ),
    ]);
    l.extend(s.config.node_labels.clone());
    l
}

fn condition(
    ty: &str,
    bad: bool,
    reasons: (&str, &str, &str, &str),
    old: &[NodeCondition],
    now: &Time,
) -> NodeCondition {
    let (ok_reason, ok_msg, bad_reason, bad_msg) = reasons;
    // For Ready, "bad" means not ready: the status flips.
    let status = match (ty == "Ready", bad) {
        (true, false) | (false, true) => "True",
        _ => "False",
    };
    let (reason, message) = if bad {
        (bad_reason, bad_msg)
    } else {
        (ok_reason, ok_msg)
    };
    let since = old
        .iter()
        .find(|c| c.type_ == ty && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: ty.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(since),
    }
}

/// The Node status as JSON, keeping transition times from `old`.
pub async fn status(s: &NodeState, runtime: &dyn Runtime, old: &[NodeCondition]) -> Value {
    let now = Time(Timestamp::now());
    let usage = capacity::usage(&s.config.root_dir);
    let (mem, disk, pid) = capacity::pressure(
        &usage,
        s.config.eviction_memory_available,
        s.config.eviction_nodefs_available_percent,
    );
    let net_ready = *s.network_ready.borrow();
    let conditions = vec![
        condition(
            "MemoryPressure",
            mem,
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            old,
            &now,
        ),
        condition(
            "DiskPressure",
            disk,
            (
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            ),
            old,
            &now,
        ),
        condition(
            "PIDPressure",
            pid,
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            old,
            &now,
        ),
        condition(
            "Ready",
            !net_ready,
            (
                "KubeletReady",
                "kubelet is posting ready status",
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:the pod network is not set up yet (waiting for a podCIDR)",
            ),
            old,
            &now,
        ),
    ];
    let r = &s.resources;
    let pods = s.config.max_pods.to_string();
    let mut images: Vec<Value> = runtime
        .list_images()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let mut names = i.repo_digests.clone();
            names.extend(i.repo_tags.clone());
            json!({"names": names, "sizeBytes": i.size})
        })
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i["sizeBytes"].as_u64().unwrap_or(0)));
    images.truncate(50);
    json!({
        "capacity": {
            "cpu": cpu(r.cpu_milli),
            "memory": ki(r.memory),
            "ephemeral-storage": ki(r.ephemeral_storage),
            "pods": pods,
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
        },
        "allocatable": {
            "cpu": cpu(r.cpu_milli),
            "memory": ki(r.allocatable_memory),
            "ephemeral-storage": r.allocatable_ephemeral_storage.to_string(),
            "pods": pods,
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
        },
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": s.config.node_ip.to_string()},
            {"type": "Hostname", "address": s.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": s.config.kubelet_port}},
        "nodeInfo": {
            "machineID": s.identity.machine_id,
            "systemUUID": s.identity.system_uuid,
            "bootID": s.identity.boot_id,
            "kernelVersion": s.identity.kernel_version,
            "osImage": s.identity.os_image,
            "containerRuntimeVersion": format!("rkube://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": s.identity.architecture,
        },
        "images": images,
    })
}

fn api_err(node: &str) -> impl FnOnce(kube::Error) -> NodeError + '_ {
    move |source| NodeError::Api {
        node: node.to_string(),
        source,
    }
}

/// Creates the Node (or takes over an existing one of the same name, as a kubelet
/// restarting does) and writes its first status.
pub async fn register(
    client: &Client,
    s: &NodeState,
    runtime: &dyn Runtime,
) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let name = &s.config.node_name;
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels(s),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
    }))
    .expect("a valid Node");
    let created = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Registered before: keep its spec (podCIDR, taints), refresh our labels.
            let patch = json!({"metadata": {"labels": labels(s)}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(name))?
        }
        Err(e) => return Err(api_err(name)(e)),
    };
    let old = created
        .status
        .as_ref()
        .and_then(|st| st.conditions.clone())
        .unwrap_or_default();
    let st = status(s, runtime, &old).await;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Strategic(&json!({"status": st})),
    )
    .await
    .map_err(api_err(name))
}

fn comparable(status: &Value) -> Value {
    let mut v = status.clone();
    if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
            }
        }
    }
    v
}

/// Keeps the Node status current: checked every `node_status_update_frequency`,
/// written when it changed or `node_status_report_frequency` has passed, and at once
/// when the pod network becomes ready. Runs until the process ends.
pub async fn report_status(client: Client, s: Arc<NodeState>, runtime: Arc<dyn Runtime>) {
    let api: Api<Node> = Api::all(client);
    let name = s.config.node_name.clone();
    let mut last: Option<(Value, tokio::time::Instant)> = None;
    let mut ready = s.network_ready.clone();
    loop {
        let old = match api.get_status(&name).await {
            Ok(n) => n.status.and_then(|st| st.conditions).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the node status failed");
                Vec::new()
            }
        };
        let st = status(&s, runtime.as_ref(), &old).await;
        let due = match &last {
            None => true,
            Some((prev, at)) => {
                comparable(prev) != comparable(&st)
                    || at.elapsed() >= s.config.node_status_report_frequency
            }
        };
        if due {
            match api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Strategic(&json!({"status": st})),
                )
                .await
            {
                Ok(_) => last = Some((st, tokio::time::Instant::now())),
                Err(e) => tracing::warn!(error = %e, "writing the node status failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(s.config.node_status_update_frequency) => {}
            r = ready.changed() => if r.is_err() {
                // The sender is gone: keep reporting on the timer only.
                tokio::time::sleep(s.config.node_status_update_frequency).await;
            },
        }
    }
}

/// Waits until the control plane has given the node a podCIDR.
pub async fn wait_for_pod_cidr(client: &Client, node: &str) -> Result<Ipv4Cidr, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let read = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
    };
    let parse = |c: String| {
        c.parse::<Ipv4Cidr>().map_err(|_| NodeError::PodCidr {
            node: node.to_string(),
            cidr: c,
        })
    };
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut stream = std::pin::pin!(watcher(api, config));
    let mut logged = false;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                if let Some(c) = read(&n) {
                    return parse(c);
                }
                if !logged {
                    tracing::info!(node, "waiting for the control plane to assign a podCIDR");
                    logged = true;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "watching the node failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(NodeError::PodCidr {
        node: node.to_string(),
        cidr: String::new(),
    })
}
