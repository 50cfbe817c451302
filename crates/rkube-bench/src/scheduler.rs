//! `rkube-bench scheduler`: an `rkube server --simulated-nodes N` process, pods
//! created by concurrent clients over HTTPS, followed by a watch: pods scheduled per
//! second, creation-to-bound and creation-to-Running latency, and the server's peak
//! memory and CPU time. `--deployment` instead times one Deployment of `--replicas`
//! pods to full availability (the server must run the Deployment and ReplicaSet
//! controllers: pass their flag with `--server-arg`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
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
    /// Concurrent clients creating pods.
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

/// When each pod was created, bound and Running (nanoseconds since the start; 0: not yet).
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

    /// Latencies from creation to `to`, for pods that have both.
    fn latencies(&self, to: &[AtomicU64]) -> Samples {
        let mut s = Samples::default();
        for (c, t) in self.created.iter().zip(to) {
            let (c, t) = (c.load(Ordering::Relaxed), t.load(Ordering::Relaxed));
            if c > 0 && t > 0 {
                s.push(Duration::from_nanos(t.saturating_sub(c)));
            }
        }
        s
    }
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
    .expect("a pod")
}

/// Follows the benchmark's pods; records when each is bound and Running.
async fn observe(api: Api<Pod>, t: Arc<Timeline>) -> anyhow::Result<()> {
    let mut stream = api
        .watch(&WatchParams::default().timeout(3600), "0")
        .await?
        .boxed();
    while let Some(ev) = stream.next().await {
        let p = match ev? {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
            _ => continue,
        };
        let Some(i) = p
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("p-")?.parse::<usize>().ok())
            .filter(|i| *i < t.bound.len())
        else {
            continue;
        };
        let now = t.now();
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        if bound
            && t.bound[i]
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            t.bound_count.fetch_add(1, Ordering::Relaxed);
        }
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running
            && t.running[i]
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            t.running_count.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn wait_for(what: &str, deadline: Instant, done: impl Fn() -> bool) -> anyhow::Result<()> {
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
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

    if args.deployment {
        deployment(&client, args.replicas, deadline).await?;
    } else {
        let t = Arc::new(Timeline::new(args.pods));
        let observer = tokio::spawn(observe(Api::namespaced(client.clone(), NS), t.clone()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..args.clients {
            let api: Api<Pod> = Api::namespaced(server.client().await?, NS);
            let (t, n, step) = (t.clone(), args.pods, args.clients);
            tasks.push(tokio::spawn(async move {
                for i in (w..n).step_by(step) {
                    api.create(&PostParams::default(), &pod(i)).await?;
                    t.created[i].store(t.now(), Ordering::Relaxed);
                }
                Ok::<(), kube::Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let created_in = started.elapsed();
        println!(
            "pods created: {} by {} clients in {:.2}s = {:.0} pods/s",
            args.pods,
            args.clients,
            created_in.as_secs_f64(),
            args.pods as f64 / created_in.as_secs_f64()
        );
        let mut sched_start = None;
        if args.backlog {
            // The same server and data, now with its scheduler.
            observer.abort();
            drop(server);
            flags.retain(|f| *f != "--disable-scheduler");
            server = Server::start(&rkube, &work, &flags).await?;
            sched_start = Some(t.now());
            tokio::spawn(observe(
                Api::namespaced(server.client().await?, NS),
                t.clone(),
            ));
        }
        let n = args.pods;
        wait_for("every pod bound", deadline, || {
            t.bound_count.load(Ordering::Relaxed) >= n
        })
        .await?;
        wait_for("every pod Running", deadline, || {
            t.running_count.load(Ordering::Relaxed) >= n
        })
        .await?;
        report(&t, sched_start);
    }
    let pid = server.child.id();
    println!(
        "server: peak RSS {:.0} MiB, {:.1} CPU seconds during the run",
        peak_rss_mib(pid),
        cpu_seconds(pid) - if args.backlog { 0.0 } else { cpu_before }
    );
    drop(server);
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn report(t: &Timeline, sched_start: Option<u64>) {
    let bound: Vec<u64> = t
        .bound
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|v| *v > 0)
        .collect();
    let first = bound.iter().copied().min().unwrap_or(0);
    let last = bound.iter().copied().max().unwrap_or(0);
    let from = sched_start.unwrap_or(first);
    let span = (last.saturating_sub(from) as f64 / 1e9).max(1e-9);
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
        *per_second.entry(b / 1_000_000_000).or_default() += 1;
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
        println!("creation -> bound:   {}", t.latencies(&t.bound).summary());
    }
    println!("creation -> Running: {}", t.latencies(&t.running).summary());
}

/// Times a Deployment to full availability.
async fn deployment(client: &kube::Client, replicas: i32, deadline: Instant) -> anyhow::Result<()> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench-deploy"}},
            "template": {"metadata": {"labels": {"app": "bench-deploy"}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}
    }))?;
    let started = Instant::now();
    deploys.create(&PostParams::default(), &d).await?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let mut saw_replicaset = false;
    loop {
        if !saw_replicaset {
            saw_replicaset = !rss.list(&ListParams::default()).await?.items.is_empty();
            anyhow::ensure!(
                saw_replicaset || started.elapsed() < Duration::from_secs(10),
                "no ReplicaSet appeared within 10s: the server runs no Deployment controller \
                 (give its controllers flag with --server-arg)"
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
