//! Test fixture: an API server in-process (memory store) with the scheduler, the node
//! controllers and simulated nodes, on timings short enough for tests.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::{ApiServer, Config};
use rkube_scheduler::node_ipam::{self, NodeIpamConfig};
use rkube_scheduler::node_lifecycle::{self, NodeLifecycleConfig};
use rkube_scheduler::queue::QueueConfig;
use rkube_scheduler::{SchedulerConfig, SchedulerStats};
use rkube_simnode::{SimNodeConfig, SimNodes};
use serde_json::Value;

/// A cluster of simulated nodes.
pub struct TestCluster {
    pub api: Arc<ApiServer>,
    pub client: Client,
    pub sim: SimNodes,
    pub stats: Arc<SchedulerStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    controllers: Option<rkube_controllers::ControllerManager>,
}

/// What to start.
pub struct Options {
    pub nodes: usize,
    pub cpu: &'static str,
    pub scheduler: bool,
    pub grace_period: Duration,
    /// Also run the controller manager (Deployments, ReplicaSets, ...).
    pub controllers: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            cpu: "4",
            scheduler: true,
            grace_period: Duration::from_secs(3),
            controllers: false,
        }
    }
}

pub fn admin(api: &Arc<ApiServer>) -> Client {
    Client::new(
        api.local_service(UserInfo::new("test-admin", &["system:masters"])),
        "default",
    )
}

/// The scheduler's settings for tests: quick retries.
pub fn scheduler_config() -> SchedulerConfig {
    SchedulerConfig {
        queue: QueueConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_unschedulable: Duration::from_secs(60),
        },
        ..Default::default()
    }
}

impl TestCluster {
    pub async fn start() -> TestCluster {
        TestCluster::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestCluster {
        let store = Arc::new(rkube_store::memory::MemoryStore::new());
        let api = ApiServer::new(Config::default(), store)
            .await
            .expect("API server");
        let client = admin(&api);
        let stats = Arc::new(SchedulerStats::default());
        let mut tasks = Vec::new();
        let ipam = NodeIpamConfig::new("10.42.0.0/16".parse().unwrap(), 24).unwrap();
        tasks.push(tokio::spawn(node_ipam::run(client.clone(), ipam)));
        let lifecycle = NodeLifecycleConfig {
            monitor_period: Duration::from_millis(200),
            grace_period: opts.grace_period,
        };
        tasks.push(tokio::spawn(node_lifecycle::run(client.clone(), lifecycle)));
        if opts.scheduler {
            tasks.push(tokio::spawn(rkube_scheduler::run_with_stats(
                client.clone(),
                scheduler_config(),
                stats.clone(),
            )));
        }
        let controllers = opts.controllers.then(|| {
            rkube_controllers::ControllerManager::start(client.clone(), Default::default())
                .expect("controller manager")
        });
        let sim = SimNodes::start(
            client.clone(),
            SimNodeConfig {
                count: opts.nodes,
                cpu: opts.cpu.into(),
                memory: "8Gi".into(),
                heartbeat_interval: Duration::from_millis(300),
                ..Default::default()
            },
        )
        .await
        .expect("simulated nodes");
        let c = TestCluster {
            api,
            client,
            sim,
            stats,
            tasks,
            controllers,
        };
        let nodes = opts.nodes;
        c.eventually("every node has a pod CIDR", || async {
            let list = c.nodes().list(&ListParams::default()).await.ok()?;
            let with_cidr = list
                .items
                .iter()
                .filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some())
                .count();
            (with_cidr == nodes).then_some(())
        })
        .await;
        c
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// Polls `f` until it returns `Some`, for up to 20 seconds.
    pub async fn eventually<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a pod from JSON (namespace `default`).
    pub async fn create_pod(&self, pod: Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).expect("a pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("creating a pod")
    }

    /// Waits until the pod satisfies `f`.
    pub async fn wait_pod(&self, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
        self.eventually(&format!("pod {name} {what}"), || async {
            self.pods()
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(|p| f(p))
        })
        .await
    }

    /// Waits until the pod is bound; returns its node.
    pub async fn wait_bound(&self, name: &str) -> String {
        let p = self
            .wait_pod(name, "is bound", |p| node_of(p).is_some())
            .await;
        node_of(&p).unwrap()
    }

    /// The pod's `PodScheduled` condition message once it is False/Unschedulable.
    pub async fn wait_unschedulable(&self, name: &str) -> String {
        let p = self
            .wait_pod(name, "is unschedulable", |p| {
                condition(p, "PodScheduled").is_some_and(|c| {
                    c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
                })
            })
            .await;
        condition(&p, "PodScheduled")
            .and_then(|c| c.message.clone())
            .unwrap_or_default()
    }

    /// Events about an object, as `kubectl describe` finds them.
    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    pub async fn patch_node(&self, name: &str, patch: Value) {
        self.nodes()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patching a node");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

pub fn condition<'a>(p: &'a Pod, ty: &str) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

pub fn node_condition<'a>(
    n: &'a Node,
    ty: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

/// A pod spec with one container requesting `cpu`.
pub fn pod(name: &str, cpu: &str) -> Value {
    serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "nginx",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    })
}
