//! `rkube-bench pods` (root): an `rkube server` whose node runs real containers from
//! the local test registry, on a bridge, CIDRs and directories of its own. Prints pod
//! startup latency as upstream's SLO measures it (creation to every container started,
//! seen through a watch) for `--pods` pods created at `--rate` per second, then for
//! as many created at once (a burst: the node's throughput), how fast a Deployment of `--replicas`
//! pods becomes Ready, and the server's memory with `--idle-pods` pods running.
//! Everything the node made is removed at the end, whatever happened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::process::{Server, rkube_binary};
use crate::stats::Samples;

/// Flags of `rkube-bench pods`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The rkube binary (default: beside this one).
    #[arg(long)]
    rkube: Option<PathBuf>,
    /// Pods whose startup latency is measured.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods per second created while startup latency is measured (upstream's SLO
    /// setting); 0 skips that phase.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Concurrent clients creating the burst of pods (all at once).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Replicas of the Deployment timed to full readiness.
    #[arg(long, default_value_t = 100)]
    replicas: i32,
    /// Pods running while the server's idle memory is read.
    #[arg(long, default_value_t = 20)]
    idle_pods: usize,
    /// The image every pod runs (`sleep`).
    #[arg(long, default_value = "127.0.0.1:5000/rkube-test/busybox:1")]
    image: String,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Keep the server's log here (it runs with this process's RUST_LOG).
    #[arg(long)]
    server_log: Option<PathBuf>,
}

const NS: &str = "bench";
const BRIDGE: &str = "rkbench0";
const NFT_PREFIX: &str = "rkbench";
const RUN_DIR: &str = "/run/rkube-bench";
const CGROUP_ROOT: &str = "/rkube-bench";
const CLUSTER_CIDR: &str = "10.140.0.0/16";
const SERVICE_CIDR: &str = "10.141.0.0/16";

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(is_root(), "rkube-bench pods runs a node: it needs root");
    anyhow::ensure!(
        !Path::new("/sys/class/net").join(BRIDGE).exists(),
        "bridge {BRIDGE} exists: another `rkube-bench pods` runs (or one was killed: \
         `ip link del {BRIDGE}`)"
    );
    let rkube = rkube_binary(args.rkube.as_deref())?;
    // Made here and removed at the end (under $TMPDIR).
    let dir = std::env::temp_dir().join(format!("rkube-bench-pods-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("resolv.conf"), "")?;
    let result = measure(&rkube, &dir, &args).await;
    if let Some(keep) = &args.server_log
        && let Err(e) = std::fs::copy(dir.join("data/server.log"), keep)
    {
        eprintln!("could not keep the server log in {}: {e}", keep.display());
    }
    teardown(&dir).await;
    result
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Uid:"))?;
            l.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

async fn measure(rkube: &Path, dir: &Path, args: &Args) -> anyhow::Result<()> {
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let (logs, resolv) = (s(dir.join("pod-logs")), s(dir.join("resolv.conf")));
    let flags = [
        "--node-name",
        "bench-node",
        "--cluster-cidr",
        CLUSTER_CIDR,
        "--service-cidr",
        SERVICE_CIDR,
        "--service-node-port-range",
        "31900-31919",
        "--pod-bridge",
        BRIDGE,
        "--nftables-prefix",
        NFT_PREFIX,
        "--run-dir",
        RUN_DIR,
        "--cgroup-root",
        CGROUP_ROOT,
        "--pod-log-dir",
        &logs,
        "--resolv-conf",
        &resolv,
        "--disable-pod-egress",
    ];
    let server = Server::start_with_node(rkube, &dir.join("data"), &flags).await?;
    let client = server.client().await?;
    let timeout = Duration::from_secs(args.timeout);
    wait_node_ready(&client, Instant::now() + timeout).await?;
    println!(
        "server with node ready in {:.0} ms; node Ready",
        server.ready_after.as_secs_f64() * 1000.0
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // The image is pulled once, so every measured pod starts from a local image.
    let warm = Arc::new(Watcher::start(pods.clone(), "warm").await?);
    pods.create(
        &PostParams::default(),
        &sleeper("warm-0", &args.image, "warm"),
    )
    .await?;
    warm.wait_started(1, Instant::now() + timeout).await?;
    delete_all(&pods, Instant::now() + timeout).await?;

    // Startup latency as upstream's SLO measures it: pods created at a steady rate
    // (its density test spaces its latency pods), each timed on its own.
    if args.rate > 0.0 {
        let every = Duration::from_secs_f64(1.0 / args.rate);
        let lat = Arc::new(Watcher::start(pods.clone(), "paced").await?);
        let started = Instant::now();
        let mut tick = tokio::time::interval(every);
        for i in 0..args.pods {
            tick.tick().await;
            let name = format!("paced-{i}");
            lat.created(&name);
            pods.create(
                &PostParams::default(),
                &sleeper(&name, &args.image, "paced"),
            )
            .await?;
        }
        lat.wait_started(args.pods, started + timeout).await?;
        let mut samples = lat.latencies();
        println!(
            "pod startup (creation → all containers started, via watch), {} pods created at {}/s from a local image: {}",
            args.pods,
            args.rate,
            samples.summary()
        );
        delete_all(&pods, Instant::now() + timeout).await?;
    }

    // The same number of pods at once: how the node copes with a burst.
    let lat = Arc::new(Watcher::start(pods.clone(), "latency").await?);
    let started = Instant::now();
    let mut creators = Vec::new();
    for c in 0..args.clients.max(1) {
        let (pods, lat, image) = (pods.clone(), lat.clone(), args.image.clone());
        let (n, clients) = (args.pods, args.clients.max(1));
        creators.push(tokio::spawn(async move {
            for i in (c..n).step_by(clients) {
                let name = format!("lat-{i}");
                lat.created(&name);
                pods.create(&PostParams::default(), &sleeper(&name, &image, "latency"))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for c in creators {
        c.await??;
    }
    lat.wait_started(args.pods, started + timeout).await?;
    let all = started.elapsed();
    let mut samples = lat.latencies();
    println!(
        "pod startup, all {} created at once by {} clients: {}",
        args.pods,
        args.clients.max(1),
        samples.summary()
    );
    println!(
        "  all {} running after {:.2} s ({:.1} pods/s)",
        args.pods,
        all.as_secs_f64(),
        args.pods as f64 / all.as_secs_f64()
    );
    let t = Instant::now();
    delete_all(&pods, Instant::now() + timeout).await?;
    println!(
        "  deleted (grace 0) and gone in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // A Deployment becoming Ready.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let t = Instant::now();
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": args.replicas,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": pod_spec(&args.image),
                    },
                },
            }))?,
        )
        .await?;
    wait_deployment_ready(&deployments, args.replicas, t + timeout).await?;
    let took = t.elapsed();
    println!(
        "Deployment of {} replicas: all Ready after {:.2} s ({:.1} pods/s)",
        args.replicas,
        took.as_secs_f64(),
        args.replicas as f64 / took.as_secs_f64()
    );
    deployments.delete("web", &DeleteParams::default()).await?;
    delete_all(&pods, Instant::now() + timeout).await?;

    // Memory with pods running and nothing happening.
    let idle = Arc::new(Watcher::start(pods.clone(), "idle").await?);
    for i in 0..args.idle_pods {
        pods.create(
            &PostParams::default(),
            &sleeper(&format!("idle-{i}"), &args.image, "idle"),
        )
        .await?;
    }
    idle.wait_started(args.idle_pods, Instant::now() + timeout)
        .await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let shims: Vec<u32> = processes_naming(dir)
        .into_iter()
        .filter(|p| *p != server.child.id())
        .collect();
    // Shims share the binary's pages: their proportional share adds up right.
    let shim_kib: u64 = shims.iter().map(|p| pss_kib(*p)).sum();
    println!(
        "idle with {} pods running: server RSS {:.1} MiB; {} shims {:.1} MiB PSS together",
        args.idle_pods,
        server.rss_mib(),
        shims.len(),
        shim_kib as f64 / 1024.0
    );
    // The kubelet removes the pods' containers, addresses and cgroups itself.
    delete_all(&pods, Instant::now() + timeout).await?;
    Ok(())
}

/// Proportional set size of a process in KiB (shared pages split among their users).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Pss:"))?;
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn pod_spec(image: &str) -> serde_json::Value {
    json!({
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}],
    })
}

fn sleeper(name: &str, image: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"phase": phase}},
        "spec": pod_spec(image),
    }))
    .expect("a pod")
}

/// Creation and all-containers-started times of one phase's pods.
struct Watcher {
    created: Mutex<HashMap<String, Instant>>,
    started: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn start(pods: Api<Pod>, phase: &str) -> anyhow::Result<Watcher> {
        let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let seen = started.clone();
        let params = WatchParams::default()
            .labels(&format!("phase={phase}"))
            .timeout(3600);
        let mut stream = pods.watch(&params, "0").await?.boxed();
        let task = tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev else {
                    continue;
                };
                let wanted = p.spec.as_ref().map_or(0, |s| s.containers.len());
                let running = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .map_or(0, |cs| {
                        cs.iter()
                            .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                            .count()
                    });
                if wanted > 0 && running == wanted {
                    let name = p.metadata.name.unwrap_or_default();
                    seen.lock()
                        .expect("lock")
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        });
        Ok(Watcher {
            created: Mutex::default(),
            started,
            task,
        })
    }

    fn created(&self, name: &str) {
        self.created
            .lock()
            .expect("lock")
            .insert(name.to_string(), Instant::now());
    }

    async fn wait_started(&self, n: usize, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let have = self.started.lock().expect("lock").len();
            if have >= n {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {have} of {n} pods started in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn latencies(&self) -> Samples {
        let created = self.created.lock().expect("lock");
        let started = self.started.lock().expect("lock");
        let mut s = Samples::default();
        for (name, c) in created.iter() {
            if let Some(t) = started.get(name) {
                s.push(t.saturating_duration_since(*c));
            }
        }
        s
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_node_ready(client: &kube::Client, deadline: Instant) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        if let Some(node) = nodes.get_opt("bench-node").await? {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the node did not become Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_deployment_ready(
    deployments: &Api<Deployment>,
    replicas: i32,
    deadline: Instant,
) -> anyhow::Result<()> {
    let params = WatchParams::default()
        .fields("metadata.name=web")
        .timeout(3600);
    let mut stream = deployments.watch(&params, "0").await?.boxed();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("the Deployment did not become Ready in time"))?;
        let Some(ev) = ev else {
            anyhow::bail!("the Deployment watch ended");
        };
        if let WatchEvent::Added(d) | WatchEvent::Modified(d) = ev? {
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready >= replicas {
                return Ok(());
            }
        }
    }
}

/// Deletes every pod of the namespace at once and waits until they are gone (the
/// kubelet has stopped and removed their containers).
async fn delete_all(pods: &Api<Pod>, deadline: Instant) -> anyhow::Result<()> {
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await?;
    loop {
        let left = pods.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{left} pods were not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes whose command line names a path under `dir` (the server and its shims).
fn processes_naming(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|arg| Path::new(std::str::from_utf8(arg).unwrap_or("")).starts_with(dir));
        if ours && pid != std::process::id() {
            out.push(pid);
        }
    }
    out
}

/// Kills the server, the shims and the containers, then removes the node's mounts,
/// network, cgroups and directories (by the names this benchmark gave them).
async fn teardown(dir: &Path) {
    for _ in 0..50 {
        let mut pids = processes_naming(dir);
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let root = ctrl.path().join(CGROUP_ROOT.trim_start_matches('/'));
            for cg in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let procs =
                    std::fs::read_to_string(cg.path().join("cgroup.procs")).unwrap_or_default();
                pids.extend(procs.lines().filter_map(|l| l.parse::<u32>().ok()));
            }
        }
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|m| m.starts_with(dir) || m.starts_with(RUN_DIR))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&m)
            .status();
    }
    let brif = Path::new("/sys/class/net").join(BRIDGE).join("brif");
    let quiet = |cmd: &str, args: &[&str]| {
        let _ = std::process::Command::new(cmd)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status();
    };
    for port in std::fs::read_dir(&brif).into_iter().flatten().flatten() {
        quiet("ip", &["link", "del", &port.file_name().to_string_lossy()]);
    }
    quiet("ip", &["route", "del", "blackhole", CLUSTER_CIDR]);
    quiet("ip", &["link", "del", BRIDGE]);
    for t in ["proxy", "podnet"] {
        quiet(
            "nft",
            &["delete", "table", "ip", &format!("{NFT_PREFIX}-{t}")],
        );
    }
    for ctrl in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let root = ctrl.path().join(CGROUP_ROOT.trim_start_matches('/'));
        for cg in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(cg.path());
        }
        let _ = std::fs::remove_dir(&root);
    }
    let _ = std::fs::remove_dir_all(RUN_DIR);
    let _ = std::fs::remove_dir_all(dir);
}
