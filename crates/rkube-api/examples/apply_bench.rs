//! Prints what managed fields cost per write: server-side applies of a changed
//! Deployment, no-op re-applies, and the bookkeeping of plain updates (status
//! writes of a controller): `cargo run --release -p rkube-api --example apply_bench`.
//! Figures are CPU time of this thread (Linux schedstat), so a busy machine
//! does not inflate them.

use rkube_api::apply::{FieldManager, ResetFields};
use rkube_api::resource::GroupVersionKind;
use rkube_api::schema::builtin;
use serde_json::{Value, json};

const ROUNDS: u32 = 2000;

/// A Deployment with `containers` containers, each with env, ports and resources.
fn deployment(replicas: u32, containers: usize) -> Value {
    let containers: Vec<Value> = (0..containers)
        .map(|i| {
            json!({
                "name": format!("c{i}"),
                "image": format!("registry.local/app-{i}:1.0"),
                "ports": [{"containerPort": 8000 + i, "name": "http"}],
                "env": (0..8).map(|e| json!({"name": format!("VAR_{e}"), "value": "x"})).collect::<Vec<_>>(),
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            })
        })
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

/// CPU time this thread has run, in nanoseconds.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Microseconds of CPU per round since `start` (from [`cpu_ns`]).
fn per_op(start: u64) -> f64 {
    (cpu_ns() - start) as f64 / 1e3 / f64::from(ROUNDS)
}

fn main() {
    let catalog = builtin();
    let root = catalog
        .kind_schema(&GroupVersionKind::new("apps", "v1", "Deployment"))
        .expect("Deployment is built in");
    let main = FieldManager {
        catalog,
        root,
        api_version: "apps/v1",
        kind: "Deployment",
        subresource: None,
        reset: ResetFields::Status,
        custom: false,
    };
    let status = FieldManager {
        subresource: Some("status"),
        reset: ResetFields::AllButStatus,
        ..main
    };
    let now = jiff::Timestamp::now();
    for containers in [1, 5, 20] {
        let mut live = main
            .apply(None, &deployment(1, containers), "kubectl", false, now)
            .expect("first apply");

        let start = cpu_ns();
        for i in 0..ROUNDS {
            live = main
                .apply(
                    Some(&live),
                    &deployment(1 + i % 3, containers),
                    "kubectl",
                    false,
                    now,
                )
                .expect("apply");
        }
        let changed = per_op(start);

        let same = deployment(
            live["spec"]["replicas"].as_u64().unwrap_or(1) as u32,
            containers,
        );
        let start = cpu_ns();
        for _ in 0..ROUNDS {
            main.apply(Some(&live), &same, "kubectl", false, now)
                .expect("apply");
        }
        let unchanged = per_op(start);

        let start = cpu_ns();
        for i in 0..ROUNDS {
            let mut new = live.clone();
            new["status"] = json!({"replicas": i, "observedGeneration": i});
            status.update(Some(&live), &mut new, "kube-controller-manager", now);
            live = new;
        }
        let update = per_op(start);

        let size = serde_json::to_vec(&live).map(|v| v.len()).unwrap_or(0);
        println!(
            "{containers:>2} containers ({size:>6} B object): apply changed {changed:>7.1} µs, apply unchanged {unchanged:>7.1} µs, status update {update:>7.1} µs"
        );
    }
}
