//! Benchmark: how fast the controllers bring a large Deployment up, roll it over
//! and clean it away, against an in-process API server, with a stand-in kubelet
//! that marks each pod Ready as soon as it appears. Prints figures.
//!
//! `cargo run --release -p rkube-controllers --example deployment_bench -- [--replicas N] [--sqlite]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::{ApiServer, Config};
use rkube_controllers::{ControllerManager, ControllerManagerConfig};
use serde_json::json;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Marks pods Ready as they appear (up to 64 writes at once).
fn kubelet(client: Client, marked: Arc<AtomicUsize>) {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut events = watcher::watcher(pods.clone(), watcher::Config::default()).boxed();
        let mut n = 0u32;
        while let Some(Ok(ev)) = events.next().await {
            let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                continue;
            };
            let ready = rkube_controllers::pod_util::is_ready(&p);
            if ready || p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            n += 1;
            let ip = format!("10.{}.{}.{}", 42 + n / 65000, (n / 250) % 250, n % 250 + 2);
            let (pods, sem, marked) = (pods.clone(), sem.clone(), marked.clone());
            let name = p.metadata.name.clone().unwrap_or_default();
            let permit = sem.acquire_owned().await.expect("semaphore");
            tokio::spawn(async move {
                let now = jiff::Timestamp::now().to_string();
                let status = json!({"status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                if pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .is_ok()
                {
                    marked.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
    });
}

async fn wait(what: &str, started: Instant, mut done: impl AsyncFnMut() -> bool) -> Duration {
    loop {
        if done().await {
            let t = started.elapsed();
            println!("{what:<48} {:>8.2} s", t.as_secs_f64());
            return t;
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("{what}: gave up after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn complete(d: &Api<Deployment>, replicas: i32) -> bool {
    let Ok(d) = d.get("bench").await else {
        return false;
    };
    let s = d.status.unwrap_or_default();
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.replicas == Some(replicas)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let replicas: i32 = args
        .iter()
        .position(|a| a == "--replicas")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1000);
    let sqlite = args.iter().any(|a| a == "--sqlite");
    let dir = std::env::temp_dir().join(format!("rkube-deployment-bench-{}", std::process::id()));
    let store: Arc<dyn rkube_store::Store> = if sqlite {
        std::fs::create_dir_all(&dir).expect("bench dir");
        Arc::new(rkube_store::sqlite::SqliteStore::open(dir.join("state.db")).expect("sqlite"))
    } else {
        Arc::new(rkube_store::memory::MemoryStore::new())
    };
    let api = ApiServer::new(Config::default(), store)
        .await
        .expect("API server");
    let client = |user: &str| {
        Client::new(
            api.local_service(UserInfo::new(user, &["system:masters"])),
            "default",
        )
    };
    let manager = ControllerManager::start(
        client("system:kube-controller-manager"),
        ControllerManagerConfig {
            controllers: vec![
                "deployment".into(),
                "replicaset".into(),
                "garbage-collector".into(),
            ],
            ..Default::default()
        },
    )
    .expect("controller manager");
    let admin = client("bench");
    let marked = Arc::new(AtomicUsize::new(0));
    kubelet(client("system:node:bench"), marked.clone());
    println!(
        "deployment_bench: {replicas} replicas, {} store, maxSurge 25%, maxUnavailable 25%",
        if sqlite { "sqlite" } else { "memory" }
    );
    let ds: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}}
    }))
    .unwrap();
    let lp = ListParams::default().labels("app=bench");
    let started = Instant::now();
    ds.create(&PostParams::default(), &deploy)
        .await
        .expect("create");
    let created = wait("all pods created", started, async || {
        pods.list_metadata(&lp)
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
            >= replicas as usize
    })
    .await;
    let available = wait("deployment fully available", started, async || {
        complete(&ds, replicas).await
    })
    .await;
    println!(
        "{:<48} {:>8.0} pods/s",
        "pod creation rate",
        f64::from(replicas) / created.as_secs_f64()
    );
    let _ = available;

    let started = Instant::now();
    ds.patch(
        "bench",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})),
    )
    .await
    .expect("update");
    let rolled = wait("rolling update complete", started, async || {
        complete(&ds, replicas).await
    })
    .await;
    println!(
        "{:<48} {:>8.0} pods/s",
        "pods replaced per second",
        f64::from(replicas) / rolled.as_secs_f64()
    );

    let started = Instant::now();
    ds.delete("bench", &DeleteParams::background())
        .await
        .expect("delete");
    wait(
        "deployment deleted, all pods collected",
        started,
        async || {
            pods.list_metadata(&lp)
                .await
                .map(|l| l.items.is_empty())
                .unwrap_or(false)
        },
    )
    .await;
    println!(
        "{:<48} {:>8}",
        "pods marked ready by the stand-in kubelet",
        marked.load(Ordering::Relaxed)
    );
    println!(
        "{:<48} {:>8.1} MiB",
        "peak RSS (API server + controllers)",
        peak_rss_mib()
    );
    manager.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
