//! `rkube-bench api`: the API server's start-up time, idle memory, create
//! throughput with concurrent clients, LIST of many objects and watch fan-out.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

use crate::process::{Server, rkube_binary};
use crate::stats::Samples;

/// Flags of `rkube-bench api`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The rkube binary (default: beside this one).
    #[arg(long)]
    rkube: Option<PathBuf>,
    /// Where servers keep their data (a temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Concurrent clients creating ConfigMaps.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// ConfigMaps to create in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    /// Objects in the LIST run.
    #[arg(long, default_value_t = 10_000)]
    list_objects: usize,
    /// Watchers in the fan-out run.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Start-ups to time.
    #[arg(long, default_value_t = 5)]
    starts: usize,
}

fn configmap(name: String) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name);
    cm.data = Some([("key".to_string(), "value".to_string())].into());
    cm
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_string());
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let rkube = rkube_binary(args.rkube.as_deref())?;
    let tmp;
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("rkube-bench-api-{}", std::process::id()));
            tmp.clone()
        }
    };
    println!(
        "rkube-bench api ({}; {} CPUs)",
        rkube.display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // Start-up: a fresh data dir (first start makes the CA and certificates), then a
    // restart on the same data.
    let mut first = Samples::default();
    let mut again = Samples::default();
    let mut logged = Vec::new();
    for i in 0..args.starts {
        let dir = work.join(format!("start-{i}"));
        let s = Server::start(&rkube, &dir, &[]).await?;
        first.push(s.ready_after);
        logged.extend(s.logged_ready());
        drop(s);
        let s = Server::start(&rkube, &dir, &[]).await?;
        again.push(s.ready_after);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "start to /readyz ok, fresh data dir:    {}",
        first.summary()
    );
    println!(
        "start to /readyz ok, existing data dir: {}",
        again.summary()
    );
    println!("  (the server's own log: ready in {})", logged.join(", "));

    let dir = work.join("load");
    let server = Server::start(&rkube, &dir, &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("idle RSS after start: {:.1} MiB", server.rss_mib());
    let client = server.client().await?;

    // Create throughput.
    create_namespace(&client, "bench-create").await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await?, "bench-create");
        let next = next.clone();
        let total = args.creates;
        tasks.push(tokio::spawn(async move {
            let mut lat = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<Samples, kube::Error>(lat);
                }
                let t = Instant::now();
                api.create(&PostParams::default(), &configmap(format!("cm-{i}")))
                    .await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Samples::default();
    for t in tasks {
        lat.extend(t.await??);
    }
    let took = started.elapsed();
    println!(
        "creates: {} ConfigMaps by {} clients in {:.2} s = {:.0} creates/s; latency {}",
        args.creates,
        args.clients,
        took.as_secs_f64(),
        args.creates as f64 / took.as_secs_f64(),
        lat.summary()
    );

    // LIST of many objects: a namespace holding exactly `list_objects`.
    create_namespace(&client, "bench-list").await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench-list");
    let per_task = args.list_objects.div_ceil(args.clients);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let api = api.clone();
        let n = args.list_objects;
        tasks.push(tokio::spawn(async move {
            for i in c * per_task..((c + 1) * per_task).min(n) {
                api.create(&PostParams::default(), &configmap(format!("cm-{i}")))
                    .await?;
            }
            Ok::<(), kube::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut lists = Samples::default();
    let mut count = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        lists.push(t.elapsed());
        count = l.items.len();
    }
    println!(
        "LIST of {count} ConfigMaps (consistent read, decoded by the client): {}",
        lists.summary()
    );
    let raw = http::Request::get("/api/v1/namespaces/bench-list/configmaps").body(Vec::new())?;
    let mut raw_lists = Samples::default();
    let mut bytes = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let body = client.request_text(raw.clone()).await?;
        raw_lists.push(t.elapsed());
        bytes = body.len();
    }
    println!(
        "LIST of {count} ConfigMaps, {:.1} MiB of JSON, not decoded: {}",
        bytes as f64 / 1048576.0,
        raw_lists.summary()
    );

    // Watch fan-out: many watchers, one write, time until every watcher saw it.
    create_namespace(&client, "bench-watch").await?;
    let wapi: Api<ConfigMap> = Api::namespaced(client.clone(), "bench-watch");
    let rv = wapi
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let wapi = wapi.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = wapi
                .watch(&WatchParams::default().timeout(290), &rv)
                .await?
                .boxed();
            while let Some(ev) = stream.next().await {
                if let WatchEvent::Added(cm) = ev? {
                    let _ = tx.send((cm.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
            Ok::<(), kube::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fanout = Samples::default();
    for i in 0..20 {
        let name = format!("fan-{i}");
        let t = Instant::now();
        wapi.create(&PostParams::default(), &configmap(name.clone()))
            .await?;
        let mut seen = 0;
        let mut last = t;
        while seen < args.watchers {
            let (n, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("watchers ended"))?;
            if n == name {
                seen += 1;
                last = last.max(at);
            }
        }
        fanout.push(last - t);
    }
    for w in watchers {
        w.abort();
    }
    println!(
        "watch fan-out to {} watchers (create until the last saw it): {}",
        args.watchers,
        fanout.summary()
    );
    println!("RSS after the load: {:.1} MiB", server.rss_mib());
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
