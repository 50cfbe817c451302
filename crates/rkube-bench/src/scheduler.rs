//! `rkube-bench scheduler`: an `rkube server --simulated-nodes N` process and pods
//! created by Deployments (or, with `--deployments 0`, by concurrent clients over
//! HTTPS), followed by a watch: pods scheduled per second, latency from a pod's
//! creation (its first sight on the watch, or its creationTimestamp's second when
//! the watch saw it late) to bound and to Running, and the server's
//! peak memory and CPU time. `--backlog` creates every pod before the scheduler
//! starts, to measure scheduling alone. `--deployment` instead times one Deployment
//! of `--replicas` pods to full availability.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde::Deserialize;
use serde_json::json;

use crate::process::{Server, rkube_binary};
use crate::stats::Samples;

/// Flags of `rkube-bench scheduler`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The rkube binary (default: beside this one).
    #[arg(long)]
    rkube: Option<PathBuf>,
    /// Where the server keeps its data (a temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods to create.
    #[arg(long, default_value_t = 30_000)]
    pods: usize,
    /// Deployments that create the pods (0: bare pods from `--clients` clients).
    #[arg(long, default_value_t = 30)]
    deployments: usize,
    /// Concurrent clients creating bare pods (with `--deployments 0`).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Create every pod before the scheduler runs (`--disable-scheduler`, then a
    /// restart with it): scheduling throughput with a full queue.
    #[arg(long)]
    backlog: bool,
    /// Time a Deployment of `--replicas` pods to full availability instead.
    #[arg(long)]
    deployment: bool,
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Extra flags for `rkube server` (repeat for several).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

const NS: &str = "bench";

/// What the benchmark reads of a pod from its watch (decoding whole pods would make
/// this process compete harder with the server for the CPUs).
#[derive(Clone, Deserialize)]
struct PodSeen {
    metadata: SeenMeta,
    #[serde(default)]
    spec: SeenSpec,
    #[serde(default)]
    status: SeenStatus,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenMeta {
    name: String,
    resource_version: String,
    creation_timestamp: Option<jiff::Timestamp>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenSpec {
    node_name: Option<String>,
}

#[derive(Clone, Default, Deserialize)]
struct SeenStatus {
    phase: Option<String>,
}

/// When each pod was created, bound and Running (since the start).
#[derive(Default, Clone, Copy)]
struct PodTimes {
    /// When the watch first saw the pod; when that is more than a second after
    /// its creationTimestamp (the watch fell behind), the middle of that second.
    created: Duration,
    bound: Option<Duration>,
    running: Option<Duration>,
}

/// The benchmark's pods as its watch saw them.
struct Timeline {
    start: Instant,
    start_wall: jiff::Timestamp,
    pods: Mutex<HashMap<String, PodTimes>>,
    seen: AtomicUsize,
    bound: AtomicUsize,
    running: AtomicUsize,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            start: Instant::now(),
            start_wall: jiff::Timestamp::now(),
            pods: Mutex::default(),
            seen: AtomicUsize::new(0),
            bound: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }
    }

    fn times(&self) -> Vec<PodTimes> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect()
    }

    fn record(&self, p: &PodSeen) {
        let now = self.start.elapsed();
        let stamped = p.metadata.creation_timestamp.and_then(|c| {
            let d = c.duration_since(self.start_wall);
            Duration::try_from(d).ok()
        });
        let created = match stamped {
            Some(c) if now > c + Duration::from_secs(1) => c + Duration::from_millis(500),
            _ => now,
        };
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let t = pods.entry(p.metadata.name.clone()).or_insert_with(|| {
            self.seen.fetch_add(1, Ordering::Relaxed);
            PodTimes {
                created,
                ..Default::default()
            }
        });
        if t.bound.is_none() && p.spec.node_name.is_some() {
            t.bound = Some(now);
            self.bound.fetch_add(1, Ordering::Relaxed);
        }
        if t.running.is_none() && p.status.phase.as_deref() == Some("Running") {
            t.running = Some(now);
            self.running.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Latencies from creation to `to`, for pods that have both.
fn latencies(times: &[PodTimes], to: impl Fn(&PodTimes) -> Option<Duration>) -> Samples {
    let mut s = Samples::default();
    for t in times {
        if let Some(at) = to(t) {
            s.push(at.saturating_sub(t.created));
        }
    }
    s
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
    .expect("a pod")
}

fn deployment_of(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}
    }))
    .expect("a deployment")
}

/// Follows the benchmark namespace's pods; records when each is seen, bound and
/// Running. A watch the server ends (this process fell behind) is resumed from the
/// last resourceVersion seen, or started over when that is too old.
async fn observe(client: kube::Client, t: Arc<Timeline>) -> anyhow::Result<()> {
    let mut rv = "0".to_string();
    loop {
        let req = kube::core::Request::new(format!("/api/v1/namespaces/{NS}/pods"))
            .watch(&WatchParams::default().timeout(3600), &rv)?;
        let mut stream = client.request_events::<PodSeen>(req).await?.boxed();
        while let Some(ev) = stream.next().await {
            match ev? {
                WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => {
                    t.record(&p);
                    rv = p.metadata.resource_version;
                }
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(e) if e.code == 410 => {
                    rv = "0".into();
                    break;
                }
                WatchEvent::Error(e) => anyhow::bail!("the watch of pods failed: {}", e.message),
            }
        }
    }
}

/// The name and CPU seconds (user + system) in a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Option<(String, f64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let (open, close) = (s.find('(')?, s.rfind(')')?);
    let f: Vec<&str> = s.get(close + 2..)?.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some((
        s[open + 1..close].to_string(),
        (ticks(11) + ticks(12)) / 100.0,
    ))
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu(&format!("/proc/{pid}/stat")).map_or(0.0, |(_, cpu)| cpu)
}

/// CPU seconds a process's live threads have used, summed by thread name (the
/// server names the threads of its components: `kube-scheduler`, ...).
fn cpu_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = format!("{}/stat", task.path().display());
        if let Some((name, cpu)) = stat_cpu(&path) {
            *by_name.entry(name).or_insert(0.0) += cpu;
        }
    }
    by_name
}

/// The CPU seconds each thread used since `before`, largest first.
fn thread_summary(now: BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> String {
    let mut used: Vec<(String, f64)> = now
        .into_iter()
        .map(|(name, cpu)| {
            let spent = cpu - before.get(&name).copied().unwrap_or(0.0);
            (name, spent)
        })
        .filter(|(_, spent)| *spent >= 0.05)
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used.iter()
        .map(|(name, spent)| format!("{name} {spent:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            l.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Waits until `n` nodes have a pod CIDR (registered and given their IP range).
async fn wait_nodes(client: &kube::Client, n: usize, deadline: Instant) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some())
            .count();
        if ready >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {n} nodes got a pod CIDR"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let rkube = rkube_binary(args.rkube.as_deref())?;
    let work = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rkube-bench-sched-{}", std::process::id()))
    });
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let nodes = args.nodes.to_string();
    // A /24 per node: 1,000 nodes need a /14.
    let mut flags: Vec<&str> = vec![
        "--simulated-nodes",
        &nodes,
        "--cluster-cidr",
        "10.64.0.0/14",
    ];
    flags.extend(args.server_args.iter().map(String::as_str));
    if args.backlog {
        flags.push("--disable-scheduler");
    }
    println!(
        "rkube-bench scheduler ({}; {} CPUs): {} simulated nodes",
        rkube.display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.nodes
    );
    let mut server = Server::start(&rkube, &work, &flags).await?;
    let client = server.client().await?;
    let t0 = Instant::now();
    wait_nodes(&client, args.nodes, deadline).await?;
    println!(
        "nodes registered with pod CIDRs {:.2}s after the server was ready",
        t0.elapsed().as_secs_f64()
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    nss.create(&PostParams::default(), &ns).await?;
    let cpu_before = cpu_seconds(server.child.id());
    let threads_before = cpu_by_thread(server.child.id());

    if args.deployment {
        deployment(&client, args.replicas, deadline).await?;
    } else {
        let n = args.pods;
        let t = Arc::new(Timeline::new());
        let mut observer = Observer::start(client.clone(), t.clone());
        let started = Instant::now();
        if args.deployments > 0 {
            let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
            let d = args.deployments;
            for k in 0..d {
                let replicas = n / d + usize::from(k < n % d);
                deploys
                    .create(
                        &PostParams::default(),
                        &deployment_of(&format!("d-{k}"), replicas as i32),
                    )
                    .await?;
            }
        } else {
            create_pods(&server, n, args.clients, deadline).await?;
        }
        observer
            .wait_for("every pod created", deadline, || {
                t.seen.load(Ordering::Relaxed) >= n
            })
            .await?;
        let created_in = started.elapsed();
        println!(
            "pods created: {n} {} in {:.2}s = {:.0} pods/s",
            if args.deployments > 0 {
                format!("by {} Deployments", args.deployments)
            } else {
                format!("by {} clients", args.clients)
            },
            created_in.as_secs_f64(),
            n as f64 / created_in.as_secs_f64()
        );
        let mut sched_start = None;
        if args.backlog {
            // The same server and data, now with its scheduler.
            drop(observer);
            drop(server);
            flags.retain(|f| *f != "--disable-scheduler");
            server = Server::start(&rkube, &work, &flags).await?;
            sched_start = Some(t.start.elapsed());
            observer = Observer::start(server.client().await?, t.clone());
        }
        observer
            .wait_for("every pod bound", deadline, || {
                t.bound.load(Ordering::Relaxed) >= n
            })
            .await?;
        observer
            .wait_for("every pod Running", deadline, || {
                t.running.load(Ordering::Relaxed) >= n
            })
            .await?;
        report(&t.times(), sched_start);
    }
    let pid = server.child.id();
    println!(
        "server: peak RSS {:.0} MiB, {:.1} CPU seconds during the run",
        peak_rss_mib(pid),
        cpu_seconds(pid) - if args.backlog { 0.0 } else { cpu_before }
    );
    let before = if args.backlog {
        BTreeMap::new()
    } else {
        threads_before
    };
    println!(
        "server CPU seconds by thread: {}",
        thread_summary(cpu_by_thread(pid), &before)
    );
    drop(server);
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Creates bare pods `p-0`... from concurrent clients.
async fn create_pods(
    server: &Server,
    n: usize,
    clients: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for w in 0..clients {
        let api: Api<Pod> = Api::namespaced(server.client().await?, NS);
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(clients) {
                anyhow::ensure!(Instant::now() < deadline, "timed out creating pods");
                api.create(&PostParams::default(), &pod(i)).await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The watch of the benchmark's pods, stopped on drop.
struct Observer(tokio::task::JoinHandle<anyhow::Result<()>>);

impl Observer {
    fn start(client: kube::Client, t: Arc<Timeline>) -> Observer {
        Observer(tokio::spawn(observe(client, t)))
    }

    /// Waits until `done`, failing if the watch ends first.
    async fn wait_for(
        &mut self,
        what: &str,
        deadline: Instant,
        done: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        while !done() {
            anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            if self.0.is_finished() {
                let end = (&mut self.0).await?;
                end?;
                anyhow::bail!("the watch of pods ended while waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn report(times: &[PodTimes], sched_start: Option<Duration>) {
    let bound: Vec<Duration> = times.iter().filter_map(|t| t.bound).collect();
    let first = bound.iter().copied().min().unwrap_or_default();
    let last = bound.iter().copied().max().unwrap_or_default();
    let from = sched_start.unwrap_or(first);
    let span = last.saturating_sub(from).as_secs_f64().max(1e-9);
    println!(
        "pods scheduled: {} in {:.2}s = {:.0} pods/s ({})",
        bound.len(),
        span,
        bound.len() as f64 / span,
        if sched_start.is_some() {
            "from the scheduler's start, every pod waiting"
        } else {
            "first to last binding"
        }
    );
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for b in &bound {
        *per_second.entry(b.as_secs()).or_default() += 1;
    }
    let mut rates: Vec<usize> = per_second.values().copied().collect();
    rates.sort();
    if let Some(peak) = rates.last() {
        println!(
            "  bindings per second: peak {peak}, median {}",
            rates[rates.len() / 2]
        );
    }
    if sched_start.is_none() {
        println!(
            "creation -> bound:   {}",
            latencies(times, |t| t.bound).summary()
        );
    }
    println!(
        "creation -> Running: {}",
        latencies(times, |t| t.running).summary()
    );
}

/// Times one Deployment to full availability.
async fn deployment(client: &kube::Client, replicas: i32, deadline: Instant) -> anyhow::Result<()> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    deploys
        .create(&PostParams::default(), &deployment_of("bench", replicas))
        .await?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let mut saw_replicaset = false;
    loop {
        if !saw_replicaset {
            saw_replicaset = !rss.list(&ListParams::default()).await?.items.is_empty();
            anyhow::ensure!(
                saw_replicaset || started.elapsed() < Duration::from_secs(10),
                "no ReplicaSet appeared within 10s: is the server's Deployment controller disabled?"
            );
        }
        let d = deploys.get("bench").await?;
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available >= replicas {
            println!(
                "Deployment of {replicas} replicas fully available in {:.2}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out with {available}/{replicas} available"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
