//! The simulated kubelet: pods bound to a simulated node are "started" at once
//! (Running, Ready, an IP from the node's pod CIDR, running container statuses), and
//! a pod whose graceful deletion began is deleted for good (grace period 0), as a
//! kubelet does once its containers stopped.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Shared;

/// The manager of the status fields a simulated kubelet writes, as a kubelet's.
const FIELD_MANAGER: &str = "kubelet";

/// How often pods waiting for a pod CIDR or a resumed node are looked at again.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Kubelet {
    /// Pod uid -> (node, IP) handed out.
    ips: HashMap<String, (String, Ipv4Addr)>,
    /// Pods whose start was written (or that were running already).
    started: HashSet<String>,
    /// Pods whose final deletion was sent.
    deleting: HashSet<String>,
    /// Pods that cannot be handled yet (no pod CIDR, or the node is paused).
    waiting: HashMap<String, Arc<Pod>>,
}

/// A pod as the simulated kubelet reads it: what it needs to start and delete pods.
/// Decoding skips the rest (labels, annotations, managedFields, volumes,
/// environment...) without building it: every bound pod passes through here.
#[derive(Clone, Debug, serde::Deserialize)]
struct Pod {
    #[serde(default, deserialize_with = "rkube_api::meta::deserialize_lean")]
    metadata: ObjectMeta,
    spec: Option<PodSpec>,
    status: Option<PodStatus>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    node_name: Option<String>,
    host_network: Option<bool>,
    containers: Option<Vec<Container>>,
    init_containers: Option<Vec<Container>>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: Option<String>,
    restart_policy: Option<String>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    conditions: Option<Vec<Condition>>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    last_transition_time: Option<String>,
}

impl kube::Resource for Pod {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// A container ID for a container that exists only on paper.
fn container_id() -> String {
    format!(
        "rkube-sim://{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn running_status(c: &Container, started: &str) -> Value {
    json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": c.image.clone().unwrap_or_default(),
        "containerID": container_id(),
        "ready": true,
        "started": true,
        "restartCount": 0,
        "state": {"running": {"startedAt": started}},
        "lastState": {},
    })
}

/// The status of a pod that started on `host_ip` with `pod_ip`.
fn started_status(pod: &Pod, host_ip: Ipv4Addr, pod_ip: Ipv4Addr) -> Value {
    // metav1.Time: whole seconds, as a kubelet writes them.
    let now = rkube_api::apply::format_time(jiff::Timestamp::now());
    let spec = pod.spec.as_ref();
    let scheduled_at = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let cond = |ty: &str, at: &str| json!({"type": ty, "status": "True", "lastProbeTime": null, "lastTransitionTime": at});
    let containers: Vec<Value> = spec
        .and_then(|s| s.containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| running_status(c, &now))
        .collect();
    let init: Vec<Value> = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            if c.restart_policy.as_deref() == Some("Always") {
                running_status(c, &now)
            } else {
                json!({
                    "name": c.name,
                    "image": c.image.clone().unwrap_or_default(),
                    "imageID": c.image.clone().unwrap_or_default(),
                    "containerID": container_id(),
                    "ready": true,
                    "started": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
                    "lastState": {},
                })
            }
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            cond("PodReadyToStartContainers", &now),
            cond("Initialized", &now),
            cond("Ready", &now),
            cond("ContainersReady", &now),
            cond("PodScheduled", &scheduled_at),
        ],
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": pod_ip.to_string(),
        "podIPs": [{"ip": pod_ip.to_string()}],
        "startTime": now,
        "containerStatuses": containers,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    json!({"status": status})
}

/// What to write for one pod, decided under the lock.
enum Work {
    Start(Arc<Pod>, Value),
    Delete(Arc<Pod>),
}

impl Kubelet {
    fn release(&mut self, shared: &Shared, uid: &str) {
        self.started.remove(uid);
        self.deleting.remove(uid);
        self.waiting.remove(uid);
        if let Some((node, ip)) = self.ips.remove(uid)
            && let Some(ips) = shared.lock().get_mut(&node).and_then(|n| n.ips.as_mut())
        {
            ips.release(ip);
        }
    }

    /// Decides what a pod needs; `None` when it needs nothing (or must wait).
    fn handle(&mut self, shared: &Shared, pod: Arc<Pod>) -> Option<Work> {
        let uid = uid(&pod);
        let mut nodes = shared.lock();
        let sim = nodes.get_mut(node_of(&pod))?;
        if sim.paused {
            self.waiting.insert(uid, pod);
            return None;
        }
        self.waiting.remove(&uid);
        if pod.metadata.deletion_timestamp.is_some() {
            return self.deleting.insert(uid).then_some(Work::Delete(pod));
        }
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let has_ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        if let Some(ip) = has_ip
            && phase == "Running"
        {
            // Running already (from before a restart): keep its address taken.
            if self.started.insert(uid.clone()) {
                if let Some(ips) = sim.ips.as_mut() {
                    ips.occupy(ip);
                }
                self.ips.insert(uid, (node_of(&pod).to_string(), ip));
            }
            return None;
        }
        if self.started.contains(&uid) {
            return None;
        }
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ip = if host_network {
            sim.ip
        } else {
            let Some(ips) = sim.ips.as_mut() else {
                self.waiting.insert(uid, pod);
                return None;
            };
            let Some(ip) = ips.allocate() else {
                tracing::warn!(node = %node_of(&pod), "no pod IP left on the simulated node");
                return None;
            };
            self.ips
                .insert(uid.clone(), (node_of(&pod).to_string(), ip));
            ip
        };
        self.started.insert(uid);
        let body = started_status(&pod, sim.ip, ip);
        Some(Work::Start(pod, body))
    }
}

/// Runs the kubelet of every simulated node: one watch of all bound pods.
pub(crate) async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default().fields("spec.nodeName!="))
        .default_backoff()
        .boxed();
    let permits = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    let mut k = Kubelet::default();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        let mut work = Vec::new();
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Ok(Event::Init) => listing = Some(HashSet::new()),
                    Ok(Event::InitApply(p)) | Ok(Event::Apply(p)) => {
                        if let Some(l) = listing.as_mut() {
                            l.insert(uid(&p));
                        }
                        work.extend(k.handle(&shared, Arc::new(p)));
                    }
                    Ok(Event::InitDone) => {
                        // Pods gone while we were not watching.
                        let live = listing.take().unwrap_or_default();
                        let gone: Vec<String> = k.ips.keys().chain(k.started.iter()).filter(|u| !live.contains(*u)).cloned().collect();
                        for u in gone {
                            k.release(&shared, &u);
                        }
                    }
                    Ok(Event::Delete(p)) => k.release(&shared, &uid(&p)),
                    Err(e) => tracing::debug!(error = %e, "simulated kubelet watch; retrying"),
                }
            }
            _ = shared.wake.notified() => work.extend(retry_waiting(&mut k, &shared)),
            _ = tokio::time::sleep(RETRY) => work.extend(retry_waiting(&mut k, &shared)),
        }
        for w in work {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let client = shared.client.clone();
            tokio::spawn(async move {
                write(client, w).await;
                drop(permit);
            });
        }
    }
}

fn retry_waiting(k: &mut Kubelet, shared: &Shared) -> Vec<Work> {
    let pods: Vec<Arc<Pod>> = k.waiting.drain().map(|(_, p)| p).collect();
    pods.into_iter()
        .filter_map(|p| k.handle(shared, p))
        .collect()
}

/// Sends a request and drops the answer unread: the kubelet needs no copy of the
/// pod back (reading it would cost more than the write itself).
async fn send(
    client: &kube::Client,
    req: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<(), String> {
    let req = req.map_err(|e| e.to_string())?;
    let res = client
        .send(req.map(kube::client::Body::from))
        .await
        .map_err(|e| e.to_string())?;
    match res.status() {
        s if s.is_success() => Ok(()),
        s => Err(format!("the API server answered {s}")),
    }
}

async fn write(client: kube::Client, work: Work) {
    let (pod, req) = match &work {
        Work::Start(pod, body) => {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let req = pods_request(pod).patch_subresource(
                "status",
                name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(body),
            );
            (pod, req)
        }
        Work::Delete(pod) => {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            (
                pod,
                pods_request(pod).delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp),
            )
        }
    };
    if let Err(e) = send(&client, req).await {
        let what = if matches!(work, Work::Start(..)) {
            "posting a simulated pod's status"
        } else {
            "finishing a simulated pod's deletion"
        };
        tracing::debug!(pod = ?pod.metadata.name, error = %e, "{what}");
    }
}

fn pods_request(pod: &Pod) -> kube::core::Request {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    kube::core::Request::new(format!("/api/v1/namespaces/{ns}/pods"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_status_is_running_and_ready() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"nodeName": "sim-0", "containers": [{"name": "web", "image": "nginx"}],
                "initContainers": [{"name": "init", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let v = started_status(
            &pod,
            "127.1.0.1".parse().unwrap(),
            "10.42.0.2".parse().unwrap(),
        );
        let s = &v["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.0.2");
        assert_eq!(s["hostIP"], "127.1.0.1");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            vec![
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(
            s["conditions"][4]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            s["startTime"]
        );
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert!(
            s["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap()
                .starts_with("rkube-sim://")
        );
    }
}
