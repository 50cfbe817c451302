//! Store benchmark: prints write throughput and latency with concurrent writers, and
//! read latencies (get, full LIST of 10,000 keys, a 500-key page), per backend.
//!
//! ```sh
//! cargo run --release -p rkube-store --example store-bench -- --db /tmp/bench.db
//! ```
//!
//! Flags: `--db PATH` (a new SQLite file, and `PATH` with extension `disk.db` for
//! `sqlite-disk`; default: in a temp dir), `--backend
//! sqlite|sqlite-disk|memory|all` (`sqlite-disk`: without the in-memory copy of the
//! latest values, every read from SQLite), `--etcd URL` (also an etcd at URL, e.g. `http://127.0.0.1:2379`;
//! needs `--features etcd`; it writes under `/registry/` there), `--writers N` (16), `--creates N` (30000), `--value-size BYTES`
//! (2048, about a pod's JSON), `--list-keys N` (10000), `--runs N` (50).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rkube_store::conformance::TempDir;
use rkube_store::memory::MemoryStore;
use rkube_store::sqlite::{SqliteOptions, SqliteStore};
use rkube_store::{ListOptions, Store};

struct Config {
    db: Option<PathBuf>,
    etcd: Option<String>,
    backends: Vec<String>,
    writers: usize,
    creates: usize,
    value_size: usize,
    list_keys: usize,
    runs: usize,
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config {
        db: None,
        etcd: None,
        backends: vec!["sqlite".into(), "sqlite-disk".into(), "memory".into()],
        writers: 16,
        creates: 30_000,
        value_size: 2048,
        list_keys: 10_000,
        runs: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--db" => cfg.db = Some(PathBuf::from(value()?)),
            "--etcd" => cfg.etcd = Some(value()?),
            "--backend" => {
                cfg.backends = match value()?.as_str() {
                    "all" => vec!["sqlite".into(), "sqlite-disk".into(), "memory".into()],
                    b @ ("sqlite" | "sqlite-disk" | "memory") => vec![b.to_string()],
                    other => return Err(format!("unknown backend {other:?}")),
                }
            }
            "--writers" => cfg.writers = number(value()?)?.max(1),
            "--creates" => cfg.creates = number(value()?)?.max(1),
            "--value-size" => cfg.value_size = number(value()?)?,
            "--list-keys" => cfg.list_keys = number(value()?)?.max(1),
            "--runs" => cfg.runs = number(value()?)?.max(1),
            "-h" | "--help" => {
                return Err(
                    "usage: store-bench [--db PATH] [--backend sqlite|sqlite-disk|memory|all] [--etcd URL] \
                     [--writers N] [--creates N] [--value-size BYTES] [--list-keys N] [--runs N]"
                        .into(),
                );
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    if cfg.etcd.is_some() {
        if !cfg!(feature = "etcd") {
            return Err("--etcd needs the example built with --features etcd".into());
        }
        cfg.backends.push("etcd".into());
    }
    Ok(cfg)
}

#[cfg(feature = "etcd")]
async fn connect_etcd(url: &str) -> Arc<dyn Store> {
    match rkube_store::etcd::EtcdStore::connect(&[url]).await {
        Ok(store) => Arc::new(store),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_url: &str) -> Arc<dyn Store> {
    unreachable!("refused by parse_args")
}

#[tokio::main]
async fn main() {
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "{} writers, {} creates of {} B values, list of {} keys x {} runs, {} CPUs",
        cfg.writers,
        cfg.creates,
        cfg.value_size,
        cfg.list_keys,
        cfg.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for backend in &cfg.backends {
        let tmp = TempDir::new("bench");
        let (store, path): (Arc<dyn Store>, Option<PathBuf>) = match backend.as_str() {
            "sqlite" | "sqlite-disk" => {
                let path = match &cfg.db {
                    Some(db) if backend == "sqlite" => db.clone(),
                    Some(db) => db.with_extension("disk.db"),
                    None => tmp.path().join("state.db"),
                };
                if path.exists() {
                    eprintln!("{} exists: give a path to a new file", path.display());
                    std::process::exit(2);
                }
                let options = SqliteOptions {
                    latest_in_memory: backend == "sqlite",
                    ..Default::default()
                };
                let store = SqliteStore::open_with(&path, options).unwrap_or_else(|e| {
                    eprintln!("opening {}: {e}", path.display());
                    std::process::exit(1);
                });
                (Arc::new(store), Some(path))
            }
            "etcd" => {
                let url = cfg.etcd.as_deref().expect("--etcd");
                (connect_etcd(url).await, Some(PathBuf::from(url)))
            }
            _ => (Arc::new(MemoryStore::new()), None),
        };
        println!(
            "\n== {backend}{}",
            path.as_ref()
                .map_or(String::new(), |p| format!(" ({})", p.display()))
        );
        let path = path.filter(|_| backend != "etcd");
        // Compaction drops history for every user of a shared etcd: only locally.
        run(&cfg, store, backend != "etcd").await;
        if let Some(path) = path {
            let size = |suffix: &str| {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).map_or(0, |m| m.len())
            };
            println!(
                "  file size: db {:.1} MiB, wal {:.1} MiB",
                size("") as f64 / 1048576.0,
                size("-wal") as f64 / 1048576.0
            );
        }
    }
}

/// A root unique to this run, so runs against a shared etcd never collide.
fn run_root() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("/bench-{secs}-{}", std::process::id())
}

async fn create_pod(store: Arc<dyn Store>, root: Arc<str>, value: Bytes, w: usize, i: usize) {
    let key = format!("{root}/registry/pods/ns{w:02}/pod-{i:08}");
    store.create(&key, value).await.expect("create");
}

async fn update_pod(store: Arc<dyn Store>, root: Arc<str>, value: Bytes, w: usize, i: usize) {
    let key = format!("{root}/registry/pods/ns{w:02}/pod-{i:08}");
    let kv = store.get(&key).await.expect("get").expect("present");
    store
        .update(&key, value, kv.mod_revision)
        .await
        .expect("update");
}

async fn create_configmap(store: Arc<dyn Store>, root: Arc<str>, value: Bytes, w: usize, i: usize) {
    let key = format!("{root}/registry/configmaps/list/cm-{w:02}-{i:08}");
    store.create(&key, value).await.expect("create");
}

async fn run(cfg: &Config, store: Arc<dyn Store>, compact: bool) {
    let value = Bytes::from(vec![b'x'; cfg.value_size]);
    let root: Arc<str> = run_root().into();
    let ctx = (store.clone(), root.clone(), value);

    // Creates from concurrent writers, as API server handlers would issue them.
    let (elapsed, latencies) = concurrently(&ctx, cfg.writers, cfg.creates, create_pod).await;
    report("create", cfg.creates, elapsed, latencies);

    // Compare-and-swap updates of existing keys (status updates).
    let updates = cfg.creates.min(10_000);
    let (elapsed, latencies) = concurrently(&ctx, cfg.writers, updates, update_pod).await;
    report("get+update", updates, elapsed, latencies);

    // A prefix with exactly `list_keys` keys, then full LISTs of it.
    let prefix = format!("{root}/registry/configmaps/list/");
    let prefix = prefix.as_str();
    let (elapsed, _) = concurrently(&ctx, cfg.writers, cfg.list_keys, create_configmap).await;
    println!(
        "  (filled {} keys under {prefix} in {:.2}s)",
        cfg.list_keys,
        elapsed.as_secs_f64()
    );
    let mut lat = Vec::new();
    for _ in 0..cfg.runs {
        let t = Instant::now();
        let res = store.list(prefix, ListOptions::default()).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(res.kvs.len(), cfg.list_keys);
    }
    report_latency(&format!("list {} keys", cfg.list_keys), &mut lat);

    let mut lat = Vec::new();
    let head = store.current_revision().await.unwrap();
    for _ in 0..cfg.runs {
        let t = Instant::now();
        let res = store
            .list(
                prefix,
                ListOptions {
                    revision: Some(head),
                    limit: Some(500),
                    start_after: None,
                },
            )
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(res.kvs.len(), 500.min(cfg.list_keys));
    }
    report_latency("list page of 500", &mut lat);

    let mut lat = Vec::new();
    for i in 0..cfg.runs * 20 {
        let key = format!(
            "/registry/pods/ns00/pod-{:08}",
            i % (cfg.creates / cfg.writers).max(1)
        );
        let t = Instant::now();
        store.get(&key).await.unwrap();
        lat.push(t.elapsed());
    }
    report_latency("get", &mut lat);

    let mut lat = Vec::new();
    for _ in 0..cfg.runs {
        let t = Instant::now();
        store.count(prefix).await.unwrap();
        lat.push(t.elapsed());
    }
    report_latency(&format!("count {} keys", cfg.list_keys), &mut lat);

    if compact {
        let t = Instant::now();
        store.compact(head).await.unwrap();
        println!(
            "  compact (history of {head} revisions): {:.1} ms",
            ms(t.elapsed())
        );
    }
}

/// Runs `total` calls of `op(store, root, value, writer, i)` spread over `writers`
/// tasks; returns the wall time and every call's latency.
async fn concurrently<F, Fut>(
    (store, root, value): &(Arc<dyn Store>, Arc<str>, Bytes),
    writers: usize,
    total: usize,
    op: F,
) -> (Duration, Vec<Duration>)
where
    F: Fn(Arc<dyn Store>, Arc<str>, Bytes, usize, usize) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, root, value) = (store.clone(), root.clone(), value.clone());
            let n = total / writers + usize::from(w < total % writers);
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n);
                for i in 0..n {
                    let t = Instant::now();
                    op(store.clone(), root.clone(), value.clone(), w, i).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (start.elapsed(), all)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, n: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    println!(
        "  {name}: {:.0} ops/s ({n} in {:.2}s)",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    report_latency(&format!("{name} latency"), &mut latencies);
}

fn report_latency(name: &str, lat: &mut [Duration]) {
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "  {name}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(lat[lat.len() - 1])
    );
}
