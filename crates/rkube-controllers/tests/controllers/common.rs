//! The fixture of the controller tests: an in-process API server on the memory
//! store, a `kube::Client` over it, and a controller manager running chosen
//! controllers.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::{ApiServer, Config};
use rkube_controllers::{ControllerManager, ControllerManagerConfig};
use rkube_store::memory::MemoryStore;
use serde_json::json;

pub struct TestCluster {
    pub api: Arc<ApiServer>,
    pub client: Client,
    pub manager: Option<ControllerManager>,
}

/// Logs to stderr when `RUST_LOG` asks for it.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An API server with nothing reconciling.
pub async fn api_server() -> Arc<ApiServer> {
    init_logging();
    ApiServer::new(Config::default(), Arc::new(MemoryStore::new()))
        .await
        .expect("API server")
}

/// A client with the given identity.
pub fn client_as(api: &Arc<ApiServer>, user: &str, groups: &[&str]) -> Client {
    Client::new(api.local_service(UserInfo::new(user, groups)), "default")
}

pub fn admin(api: &Arc<ApiServer>) -> Client {
    client_as(api, "test-admin", &["system:masters"])
}

impl TestCluster {
    /// An API server and a manager running `controllers` (upstream names).
    pub async fn start(controllers: &[&str]) -> TestCluster {
        let config = ControllerManagerConfig {
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        TestCluster::start_with(config).await
    }

    pub async fn start_with(config: ControllerManagerConfig) -> TestCluster {
        let api = api_server().await;
        let client = admin(&api);
        let manager_client = client_as(&api, "system:kube-controller-manager", &["system:masters"]);
        let manager = ControllerManager::start(manager_client, config).expect("manager");
        TestCluster {
            api,
            client,
            manager: Some(manager),
        }
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// Polls `f` until it gives `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Marks a pod Running and Ready with an IP, as a kubelet would.
pub async fn mark_ready(client: &Client, ns: &str, name: &str, ip: &str) {
    try_mark_ready(client, ns, name, ip)
        .await
        .expect("marking the pod ready");
}

/// Stands in for a kubelet: marks every new pod of the namespace Running and Ready
/// (after `delay`), with an IP of its own. Stops when the handle is dropped.
pub struct FakeKubelet(tokio::task::JoinHandle<()>);

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn fake_kubelet(client: &Client, ns: &str, delay: Duration) -> FakeKubelet {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let client = client.clone();
    let ns = ns.to_string();
    FakeKubelet(tokio::spawn(async move {
        let mut next_ip = 2u32;
        let mut seen = std::collections::HashSet::new();
        let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = events.next().await {
            let pod = match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            // By uid: a StatefulSet's replacement pod has the old pod's name.
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || !seen.insert(uid) {
                continue;
            }
            let ip = format!("10.42.{}.{}", next_ip / 250, next_ip % 250 + 2);
            next_ip += 1;
            let (client, ns) = (client.clone(), ns.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if pods.get_opt(&name).await.ok().flatten().is_some() {
                    let _ = try_mark_ready(&client, &ns, &name, &ip).await;
                }
            });
        }
    }))
}

async fn try_mark_ready(
    client: &Client,
    ns: &str,
    name: &str,
    ip: &str,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&ready_status(ip)),
    )
    .await
    .map(|_| ())
}

fn ready_status(ip: &str) -> serde_json::Value {
    let now = jiff::Timestamp::now()
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Second)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap();
    json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now.to_string()},
            {"type": "Ready", "status": "True", "lastTransitionTime": now.to_string()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now.to_string()},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now.to_string()},
        ],
    }})
}
