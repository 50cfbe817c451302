//! Scheduling and simulated nodes through the real binary and the real kubectl.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

const BIG_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  containers:
  - name: app
    image: nginx
    resources:
      requests:
        cpu: "64"
"#;

/// Runs kubectl until its output satisfies `ok` (20 seconds at most).
fn kubectl_until(c: &Cluster, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = c.kubectl(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: kubectl {args:?} printed:\n{text}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn simulated_nodes_are_ready_and_run_pods() {
    let c = Cluster::start_with(&["--simulated-nodes", "3"]);
    let nodes = kubectl_until(&c, &["get", "nodes"], "3 nodes are Ready", |out| {
        out.lines().filter(|l| l.contains(" Ready ")).count() == 3
    });
    for n in ["sim-0", "sim-1", "sim-2"] {
        assert!(nodes.contains(n), "{nodes}");
    }
    let wide = c.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("127.1.0.1") && wide.contains("v1.33.0"),
        "{wide}"
    );

    let out = c.kubectl_ok(&["run", "p", "--image=nginx"]);
    assert!(out.contains("pod/p created"), "{out}");
    let phase = kubectl_until(
        &c,
        &[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.status.phase} {.status.podIP} {.spec.nodeName}",
        ],
        "pod p is Running with an IP",
        |out| out.starts_with("Running 10.42."),
    );
    let fields: Vec<&str> = phase.split_whitespace().collect();
    let (ip, node) = (fields[1], fields[2]);
    let cidr = c.kubectl_ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
    let prefix = cidr.trim_end_matches("0/24");
    assert!(
        ip.starts_with(prefix),
        "pod IP {ip} outside the node's {cidr}"
    );
    let wide = c.kubectl_ok(&["get", "pod", "-o", "wide"]);
    let line = wide
        .lines()
        .find(|l| l.starts_with("p "))
        .unwrap_or_default();
    for want in ["1/1", "Running", ip, node] {
        assert!(line.contains(want), "missing {want:?} in:\n{wide}");
    }
}

#[test]
fn describe_shows_why_a_pod_is_pending() {
    let c = Cluster::start_with(&["--simulated-nodes", "3"]);
    kubectl_until(&c, &["get", "nodes"], "3 nodes are Ready", |out| {
        out.lines().filter(|l| l.contains(" Ready ")).count() == 3
    });
    let out = c.kubectl_stdin(&["apply", "-f", "-"], BIG_POD);
    assert!(out.status.success(), "{out:?}");
    let described = kubectl_until(
        &c,
        &["describe", "pod", "big"],
        "describe shows the FailedScheduling event",
        |out| out.contains("FailedScheduling"),
    );
    let line = described
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .unwrap_or_default();
    for want in [
        "Warning",
        "default-scheduler",
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    ] {
        assert!(line.contains(want), "missing {want:?} in:\n{described}");
    }
    assert!(
        described.contains("Status:           Pending"),
        "{described}"
    );
    let status = c.kubectl_ok(&[
        "get",
        "pod",
        "big",
        "-o",
        "jsonpath={.status.conditions[0].reason}",
    ]);
    assert_eq!(status, "Unschedulable");
}

#[test]
fn bad_simulated_node_flags_are_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["server", "--simulated-nodes", "300", "--data-dir"])
        .arg(std::env::temp_dir().join(format!("rkube-test-badflags-{}", std::process::id())))
        .output()
        .expect("running rkube");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--simulated-nodes 300 needs a pod subnet per node"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args([
            "server",
            "--simulated-nodes",
            "1",
            "--simulated-node-memory",
            "lots",
            "--data-dir",
        ])
        .arg(std::env::temp_dir().join(format!("rkube-test-badflags2-{}", std::process::id())))
        .output()
        .expect("running rkube");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid --simulated-node-memory \"lots\""),
        "{err}"
    );
}
