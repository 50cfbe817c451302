//! Scheduler benchmark: prints pods scheduled per second, creation-to-bound latency
//! and the peak memory of the process.
//!
//! By default it starts what `rkube server --simulated-nodes N` starts, in this
//! process (API server on SQLite in a temp dir, node IPAM, node lifecycle, the
//! scheduler, simulated nodes), then creates the pods from several concurrent
//! clients and follows them with a watch:
//!
//! ```text
//! cargo run --release -p rkube-scheduler --example sched-bench -- --nodes 1000 --pods 30000
//! cargo run --release -p rkube-scheduler --example sched-bench -- --backlog   # create first, then schedule
//! ```
//!
//! With `--kubeconfig` it drives a running server instead (start it with
//! `rkube server --simulated-nodes 1000 --cluster-cidr 10.64.0.0/14`; `--server-pid`
//! reports that process's memory). `--deployment` creates one Deployment of
//! `--replicas` pods and times it to full availability: that needs the server's
//! Deployment and ReplicaSet controllers (rkube-controllers), so use it with
//! `--kubeconfig` against `rkube server`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::{ApiServer, Config};
use rkube_scheduler::node_ipam::{self, NodeIpamConfig};
use rkube_scheduler::node_lifecycle::{self, NodeLifecycleConfig};
use rkube_scheduler::{SchedulerConfig, SchedulerStats};
use rkube_simnode::{SimNodeConfig, SimNodes};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Measures rkube's scheduler on simulated nodes")]
struct Args {
    /// Simulated nodes (in-process mode).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods to create.
    #[arg(long, default_value_t = 30_000)]
    pods: usize,
    /// Concurrent clients creating pods.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// `sqlite` (as rkube server) or `memory`.
    #[arg(long, default_value = "sqlite")]
    datastore: String,
    /// Create every pod first, then start the scheduler: pure scheduling throughput.
    #[arg(long)]
    backlog: bool,
    /// Pod CIDRs for the nodes (a /24 each: 1,000 nodes need a /14).
    #[arg(long, default_value = "10.64.0.0/14")]
    cluster_cidr: String,
    /// Bindings in flight at once.
    #[arg(long, default_value_t = 256)]
    bind_concurrency: usize,
    /// Drive a running server through this kubeconfig instead of starting one.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// With --kubeconfig: the server's PID, to report its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Time a Deployment of --replicas pods to full availability instead.
    #[arg(long)]
    deployment: bool,
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

const NS: &str = "bench";

/// Times in nanoseconds since the benchmark's start (0: not yet).
struct Timeline {
    start: Instant,
    created: Vec<AtomicU64>,
    bound: Vec<AtomicU64>,
    running: Vec<AtomicU64>,
    bound_count: AtomicUsize,
    running_count: AtomicUsize,
}

impl Timeline {
    fn new(n: usize) -> Timeline {
        let v = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Timeline {
            start: Instant::now(),
            created: v(),
            bound: v(),
            running: v(),
            bound_count: AtomicUsize::new(0),
            running_count: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos().max(1) as u64
    }
}

fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) used by a process so far.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn local(api: &Arc<ApiServer>, user: &str) -> Client {
    Client::new(
        api.local_service(UserInfo::new(user, &["system:masters"])),
        "default",
    )
}

/// Follows pods in the bench namespace; records when each is bound and Running.
async fn observe(client: Client, t: Arc<Timeline>) {
    let api: Api<Pod> = Api::namespaced(client, NS);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let p = match ev {
            Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
            _ => continue,
        };
        let Some(i) = p
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("p-"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|i| *i < t.bound.len())
        else {
            continue;
        };
        let now = t.now();
        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
            && t.bound[i]
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            t.bound_count.fetch_add(1, Ordering::Relaxed);
        }
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && t.running[i]
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            t.running_count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn pod_body(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "namespace": NS, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
    .expect("a pod")
}

async fn create_pods(clients: Vec<Client>, t: Arc<Timeline>, n: usize) -> Duration {
    let started = Instant::now();
    let workers = clients.len();
    let mut tasks = Vec::new();
    for (w, client) in clients.into_iter().enumerate() {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, NS);
            for i in (w..n).step_by(workers) {
                let body = pod_body(i);
                match api.create(&PostParams::default(), &body).await {
                    Ok(_) => t.created[i].store(t.now(), Ordering::Relaxed),
                    Err(e) => eprintln!("creating p-{i}: {e}"),
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    started.elapsed()
}

async fn wait_until(what: &str, deadline: Instant, f: impl Fn() -> bool) -> bool {
    while !f() {
        if Instant::now() > deadline {
            eprintln!("timed out waiting for {what}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn report(
    t: &Timeline,
    n: usize,
    clients: usize,
    create_time: Duration,
    sched_start_ns: Option<u64>,
) {
    let secs = |ns: u64| ns as f64 / 1e9;
    let bound: Vec<u64> = t
        .bound
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|v| *v > 0)
        .collect();
    let first = bound.iter().copied().min().unwrap_or(0);
    let last = bound.iter().copied().max().unwrap_or(0);
    println!(
        "pods created:           {n} in {:.2}s ({:.0} pods/s from {} clients)",
        create_time.as_secs_f64(),
        n as f64 / create_time.as_secs_f64(),
        clients
    );
    let from = sched_start_ns.unwrap_or(first);
    let span = secs(last.saturating_sub(from)).max(1e-9);
    println!(
        "pods scheduled:         {} in {:.2}s: {:.0} pods/s{}",
        bound.len(),
        span,
        bound.len() as f64 / span,
        if sched_start_ns.is_some() {
            " (from scheduler start, all pods pending)"
        } else {
            " (first to last binding)"
        }
    );
    // Busiest and median one-second windows.
    let mut per_sec = std::collections::BTreeMap::<u64, usize>::new();
    for b in &bound {
        *per_sec.entry(b / 1_000_000_000).or_default() += 1;
    }
    let mut rates: Vec<usize> = per_sec.values().copied().collect();
    rates.sort();
    if let Some(peak) = rates.last() {
        println!(
            "  per-second bindings:  peak {peak}, median {}",
            rates[rates.len() / 2]
        );
    }
    let lat = |to: &[AtomicU64]| -> Vec<f64> {
        let mut v: Vec<f64> = t
            .created
            .iter()
            .zip(to)
            .filter_map(|(c, b)| {
                let (c, b) = (c.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
                (c > 0 && b > 0).then(|| (b.saturating_sub(c)) as f64 / 1e6)
            })
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    if sched_start_ns.is_none() {
        let b = lat(&t.bound);
        println!(
            "creation -> bound:      p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&b, 0.5),
            percentile(&b, 0.99),
            percentile(&b, 1.0)
        );
    }
    let r = lat(&t.running);
    println!(
        "creation -> Running:    p50 {:.1} ms, p99 {:.1} ms ({} Running)",
        percentile(&r, 0.5),
        percentile(&r, 0.99),
        r.len()
    );
}

async fn deployment(client: Client, replicas: i32, deadline: Instant) -> Result<(), String> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench-deploy"}},
            "template": {"metadata": {"labels": {"app": "bench-deploy"}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}
    }))
    .expect("a deployment");
    let started = Instant::now();
    deploys
        .create(&PostParams::default(), &d)
        .await
        .map_err(|e| format!("creating the Deployment: {e}"))?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let mut saw_rs = false;
    loop {
        if !saw_rs {
            saw_rs = !rss
                .list(&ListParams::default())
                .await
                .map(|l| l.items.is_empty())
                .unwrap_or(true);
            if !saw_rs && started.elapsed() > Duration::from_secs(10) {
                return Err(
                    "no ReplicaSet appeared within 10s: this server runs no Deployment controller \
                    (run with --kubeconfig against rkube server with its controllers)"
                        .into(),
                );
            }
        }
        let d = deploys.get("bench").await.map_err(|e| e.to_string())?;
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available >= replicas {
            println!(
                "deployment of {replicas} replicas fully available in {:.2}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out with {available}/{replicas} available"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let dir = std::env::temp_dir().join(format!("rkube-sched-bench-{}", std::process::id()));
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let stats = Arc::new(SchedulerStats::default());
    let (clients, sched_client): (Vec<Client>, Option<Client>) = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).expect("reading the kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("kubeconfig");
            let client = Client::try_from(config).expect("client");
            let nodes: Api<Node> = Api::all(client.clone());
            let n = nodes
                .list(&ListParams::default())
                .await
                .expect("listing nodes")
                .items
                .len();
            println!("server: {} ({n} nodes)", path.display());
            ((0..args.clients).map(|_| client.clone()).collect(), None)
        }
        None => {
            std::fs::create_dir_all(&dir).expect("temp dir");
            let store: Arc<dyn rkube_store::Store> = match args.datastore.as_str() {
                "memory" => Arc::new(rkube_store::memory::MemoryStore::new()),
                _ => Arc::new(
                    rkube_store::sqlite::SqliteStore::open(dir.join("state.db")).expect("sqlite"),
                ),
            };
            let api = ApiServer::new(Config::default(), store)
                .await
                .expect("API server");
            let controllers = local(&api, "system:kube-controller-manager");
            let ipam = NodeIpamConfig::new(args.cluster_cidr.parse().expect("--cluster-cidr"), 24)
                .expect("cidr");
            keep.push(Box::new(AbortOnDrop(tokio::spawn(node_ipam::run(
                controllers.clone(),
                ipam,
            )))));
            keep.push(Box::new(AbortOnDrop(tokio::spawn(node_lifecycle::run(
                controllers,
                NodeLifecycleConfig::default(),
            )))));
            let t0 = Instant::now();
            let sim = SimNodes::start(
                local(&api, "system:node:simulated"),
                SimNodeConfig {
                    count: args.nodes,
                    ..Default::default()
                },
            )
            .await
            .expect("simulated nodes");
            keep.push(Box::new(sim));
            let nodes: Api<Node> = Api::all(local(&api, "bench"));
            let want = args.nodes;
            loop {
                let list = nodes.list(&ListParams::default()).await.expect("nodes");
                let ready = list
                    .items
                    .iter()
                    .filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some())
                    .count();
                if ready >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!(
                "in-process server ({} store), {} simulated nodes registered with pod CIDRs in {:.2}s",
                args.datastore,
                args.nodes,
                t0.elapsed().as_secs_f64()
            );
            let clients = (0..args.clients)
                .map(|i| local(&api, &format!("bench-{i}")))
                .collect();
            keep.push(Box::new(api.clone()));
            METRICS.set(api.clone()).ok();
            (clients, Some(local(&api, "system:kube-scheduler")))
        }
    };
    let admin = clients[0].clone();
    let nss: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    let _ = nss.create(&PostParams::default(), &ns).await;
    let start_scheduler = |keep: &mut Vec<Box<dyn std::any::Any>>| {
        if let Some(c) = &sched_client {
            let config = SchedulerConfig {
                bind_concurrency: args.bind_concurrency,
                ..Default::default()
            };
            keep.push(Box::new(AbortOnDrop(tokio::spawn(
                rkube_scheduler::run_with_stats(c.clone(), config, stats.clone()),
            ))));
        }
    };
    let pid = args
        .server_pid
        .map(|p| p.to_string())
        .unwrap_or_else(|| "self".into());
    let cpu_before = cpu_seconds(&pid).unwrap_or(0.0);

    if args.deployment {
        start_scheduler(&mut keep);
        if let Err(e) = deployment(admin, args.replicas, deadline).await {
            eprintln!("{e}");
            std::process::exit(1);
        }
    } else {
        let t = Arc::new(Timeline::new(args.pods));
        tokio::spawn(observe(admin.clone(), t.clone()));
        if !args.backlog {
            start_scheduler(&mut keep);
        }
        let create_time = create_pods(clients, t.clone(), args.pods).await;
        let sched_start = if args.backlog {
            let at = t.now();
            start_scheduler(&mut keep);
            Some(at)
        } else {
            None
        };
        let n = args.pods;
        wait_until("every pod bound", deadline, || {
            t.bound_count.load(Ordering::Relaxed) >= n
        })
        .await;
        wait_until("every pod Running", deadline, || {
            t.running_count.load(Ordering::Relaxed) >= n
        })
        .await;
        println!(
            "nodes: {}, pods: {n}{}",
            args.nodes,
            if args.backlog { ", backlog mode" } else { "" }
        );
        report(&t, n, args.clients, create_time, sched_start);
        if sched_client.is_some() {
            println!(
                "scheduler: {} scheduled, {} bound, {} binding errors, {} unschedulable attempts",
                stats.scheduled.load(Ordering::Relaxed),
                stats.bound.load(Ordering::Relaxed),
                stats.bind_errors.load(Ordering::Relaxed),
                stats.unschedulable.load(Ordering::Relaxed)
            );
        }
    }
    let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu_before;
    let who = if args.server_pid.is_some() {
        "server"
    } else {
        "process (server + clients)"
    };
    println!(
        "{who}: peak RSS {:.0} MiB, CPU {:.1}s",
        status_kb(&pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0,
        cpu
    );
    if let Some(api) = METRICS.get() {
        for l in api
            .metrics
            .render(api)
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total"))
        {
            println!("{l}");
        }
    }
    drop(keep);
    let _ = std::fs::remove_dir_all(&dir);
}

static METRICS: std::sync::OnceLock<Arc<ApiServer>> = std::sync::OnceLock::new();

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
