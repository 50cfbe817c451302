//! The controllers through the real kubectl, against `rkube server` as a process:
//! Deployments make ReplicaSets and pods, rollouts have a history and can be
//! undone, namespaces delete with everything in them. There is no kubelet here, so
//! the tests mark pods Running and Ready through the status subresource, as a
//! kubelet would.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

/// Marks every pod of the namespace that is not Ready yet Running and Ready.
fn mark_pods_ready(c: &Cluster, ns: &str) {
    let out = c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    for (i, line) in out.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let Some(name) = parts.next() else { continue };
        if parts.next() == Some("True") {
            continue;
        }
        let now = "2025-01-01T00:00:00Z";
        let status = format!(
            r#"{{"status":{{"phase":"Running","podIP":"10.42.0.{}","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{now}"}}]}}}}"#,
            i + 10
        );
        // A pod deleted meanwhile is fine.
        let _ = c.kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    }
}

/// Plays kubelet until `kubectl rollout status` says the rollout is done.
fn roll_out(c: &Cluster, ns: &str, deploy: &str) -> String {
    let mut status = c
        .kubectl_cmd()
        .args(["rollout", "status", deploy, "-n", ns, "--timeout=60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl rollout status");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(done) = status.try_wait().expect("waiting for kubectl") {
            let out = status.wait_with_output().expect("output");
            assert!(
                done.success(),
                "rollout status failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "rollout of {deploy} did not finish; log:\n{}",
            c.log()
        );
        mark_pods_ready(c, ns);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for(c: &Cluster, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_deployment_makes_a_replicaset_and_pods() {
    let c = Cluster::start();
    c.kubectl_ok(&[
        "create",
        "deployment",
        "nginx-depl",
        "--image=nginx:alpine",
        "--replicas=3",
    ]);
    wait_for(&c, "3 pods", || {
        c.kubectl_ok(&["get", "pods", "-l", "app=nginx-depl", "-o", "name"])
            .lines()
            .count()
            == 3
    });
    let rs = c.kubectl_ok(&["get", "rs"]);
    let lines: Vec<&str> = rs.lines().collect();
    assert_eq!(lines.len(), 2, "one ReplicaSet:\n{rs}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        &header[..4],
        ["NAME", "DESIRED", "CURRENT", "READY"],
        "{rs}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(row[0].starts_with("nginx-depl-"), "{rs}");
    assert_eq!(row[1], "3", "DESIRED in:\n{rs}");

    let out = roll_out(&c, "default", "deployment/nginx-depl");
    assert!(out.contains("successfully rolled out"), "{out}");
    let deploy = c.kubectl_ok(&["get", "deploy", "nginx-depl"]);
    let row: Vec<&str> = deploy.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[1..4],
        ["3/3", "3", "3"],
        "READY UP-TO-DATE AVAILABLE:\n{deploy}"
    );

    // A deleted pod is replaced.
    let victim = c.kubectl_ok(&["get", "pods", "-o", "jsonpath={.items[0].metadata.name}"]);
    c.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    wait_for(&c, "a replacement pod", || {
        let names = c.kubectl_ok(&["get", "pods", "-o", "name"]);
        names.lines().count() == 3 && !names.contains(&victim)
    });

    // kubectl describe shows the controller's events.
    let described = c.kubectl_ok(&["describe", "deployment", "nginx-depl"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(
        described.contains(&format!(
            "Scaled up replica set {} from 0 to 3",
            row_name(&rs)
        )),
        "{described}"
    );
    let described = c.kubectl_ok(&["describe", "rs", &row_name(&rs)]);
    assert!(
        described.contains("SuccessfulCreate") && described.contains("Created pod: nginx-depl-"),
        "{described}"
    );
}

fn row_name(table: &str) -> String {
    table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn rollout_history_undo_and_restart() {
    let c = Cluster::start();
    c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.26",
        "--replicas=2",
    ]);
    roll_out(&c, "default", "deployment/web");
    c.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    roll_out(&c, "default", "deployment/web");
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let rev1 = c.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains("nginx:1.26"), "{rev1}");

    let out = c.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    roll_out(&c, "default", "deployment/web");
    let image = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.26");
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    // Revision 1 came back as revision 3.
    assert_eq!(revisions, ["2", "3"], "{history}");
    assert_eq!(
        c.kubectl_ok(&["get", "rs", "-o", "name"]).lines().count(),
        2
    );

    // pause / resume / restart.
    c.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    c.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.kubectl_ok(&["get", "rs", "-o", "name"]).lines().count(),
        2,
        "paused: no new ReplicaSet"
    );
    c.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    roll_out(&c, "default", "deployment/web");
    c.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    roll_out(&c, "default", "deployment/web");
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(history.lines().any(|l| l.starts_with('5')), "{history}");
}

#[test]
fn deleting_a_namespace_returns_and_removes_everything() {
    let c = Cluster::start();
    c.kubectl_ok(&["create", "namespace", "x"]);
    c.kubectl_ok(&[
        "create",
        "deployment",
        "app",
        "--image=nginx",
        "--replicas=2",
        "-n",
        "x",
    ]);
    c.kubectl_ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=b",
        "-n",
        "x",
    ]);
    c.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "app",
        "--tcp=80:80",
        "-n",
        "x",
    ]);
    wait_for(&c, "the pods", || {
        c.kubectl_ok(&["get", "pods", "-n", "x", "-o", "name"])
            .lines()
            .count()
            == 2
    });
    // Every namespace gets a default ServiceAccount and the root CA.
    wait_for(&c, "the default service account", || {
        c.kubectl(&["get", "serviceaccount", "default", "-n", "x"])
            .status
            .success()
            && c.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", "x"])
                .status
                .success()
    });
    let started = Instant::now();
    let out = c
        .kubectl_cmd()
        .args(["delete", "namespace", "x", "--timeout=60s"])
        .output()
        .expect("kubectl delete namespace");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace \"x\" deleted"));
    assert!(started.elapsed() < Duration::from_secs(60));
    let err = c.kubectl_err(&["get", "namespace", "x"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // Nothing of it is left.
    let left = c.kubectl_ok(&["get", "all", "-n", "x", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}

/// A restarted server takes its own controller-manager lease back at once (its
/// identity is kept in the data dir), instead of waiting for the lease to expire.
#[test]
fn controllers_work_right_after_a_crash() {
    let mut c = Cluster::start();
    c.kubectl_ok(&[
        "create",
        "deployment",
        "app",
        "--image=nginx",
        "--replicas=1",
    ]);
    wait_for(&c, "the first pod", || {
        c.kubectl_ok(&["get", "pods", "-o", "name"]).lines().count() == 1
    });
    let before = holder(&c);
    assert!(!before.is_empty());
    c.restart();
    let started = Instant::now();
    c.kubectl_ok(&["scale", "deployment", "app", "--replicas=3"]);
    wait_for(&c, "the scaled pods", || {
        c.kubectl_ok(&["get", "pods", "-o", "name"]).lines().count() == 3
    });
    // Well within the 15s lease a new identity would have to wait out.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(holder(&c), before);
}

fn holder(c: &Cluster) -> String {
    c.kubectl_ok(&[
        "get",
        "lease",
        "kube-controller-manager",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}
