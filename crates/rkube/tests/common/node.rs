//! Fixture for root tests of a whole node: `rkube server` with its agent, on a bridge,
//! nftables tables, CIDRs, NodePort range, run dir, cgroup and data dir of its own
//! (a numbered slot), so that several run in parallel. Dropping it kills the server
//! and removes everything the node made (container processes and shims, mounts,
//! veths, the bridge, routes, nftables tables, cgroups, directories), found by those
//! names, even when the test failed.
//!
//! Pods cannot connect out of the cluster (`--disable-pod-egress`) and the cluster
//! DNS has no upstream servers (an empty `--resolv-conf`): no test traffic leaves the
//! machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Cluster;

/// The local test registry's images (scripts/test-images).
pub const BUSYBOX: &str = "127.0.0.1:5000/rkube-test/busybox:1";
/// busybox httpd on :8080 serving "hello from rkube httpd".
pub const HTTPD: &str = "127.0.0.1:5000/rkube-test/httpd:1";

/// Where slots are claimed (one lock file each).
const SLOT_DIR: &str = "/run/rkube-e2e";
const SLOTS: u32 = 48;

/// Why a node test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    let ok = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg("http://127.0.0.1:5000/v2/")
        .output()
        .map(|o| o.stdout == b"200")
        .unwrap_or(false);
    if !ok {
        return Some(
            "the test registry on 127.0.0.1:5000 is not up (run scripts/test-images)".into(),
        );
    }
    None
}

/// A server with a node.
pub struct NodeCluster {
    pub cluster: Cluster,
    pub node: NodeNames,
}

/// What a node test's server is told to use, by name: what cleanup removes.
pub struct NodeNames {
    pub node_name: String,
    pub bridge: String,
    pub nft_prefix: String,
    pub run_dir: PathBuf,
    pub cgroup_root: String,
    /// The test's directory: the server's data dir, pod logs, resolv.conf.
    pub dir: PathBuf,
    pub log_dir: PathBuf,
    pub cluster_cidr: String,
    /// The first two octets of the cluster CIDR (`10.150.`): pod IPs start with it.
    pub pod_ip_prefix: String,
    pub service_cidr: String,
    /// The first NodePort of this node's range.
    pub node_port_base: u16,
    lock: PathBuf,
}

/// Claims a free slot: its lock file is made with our PID in it. A slot whose
/// lock names a process that is gone (a test killed before it could clean up) is
/// taken over and what that test left is removed first.
fn claim_slot() -> NodeNames {
    std::fs::create_dir_all(SLOT_DIR).expect("slot dir");
    let me = std::process::id();
    let create = |lock: &Path| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)?;
        write!(f, "{me}")
    };
    // A NodeNames is made only for a slot this process holds: dropping one removes
    // everything of its slot.
    for slot in 0..SLOTS {
        let lock = Path::new(SLOT_DIR).join(format!("{slot}.lock"));
        if create(&lock).is_ok() {
            if Path::new("/sys/class/net")
                .join(format!("rke2e{slot}"))
                .exists()
            {
                // Not a test's: leave the slot alone.
                let _ = std::fs::remove_file(&lock);
                continue;
            }
            return NodeNames::of_slot(slot, me);
        }
        let owner: Option<u32> = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let alive = owner.is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        let Some(owner) = owner.filter(|_| !alive) else {
            continue;
        };
        // Only one process wins the rename of a stale lock.
        let stale_lock = lock.with_extension(format!("stale-{me}"));
        if std::fs::rename(&lock, &stale_lock).is_err() || create(&lock).is_err() {
            continue;
        }
        let mut stale = NodeNames::of_slot(slot, owner);
        stale.lock = stale_lock;
        drop(stale); // removes what the dead test left, and its lock
        return NodeNames::of_slot(slot, me);
    }
    panic!("no free node test slot in {SLOT_DIR}");
}

impl NodeCluster {
    /// Starts a server with a node and waits until the node is Ready.
    pub fn start() -> NodeCluster {
        if let Some(why) = skip_reason() {
            panic!("this test {why}");
        }
        // From here on, dropping `node` removes whatever the server made.
        let node = claim_slot();
        let _ = std::fs::remove_dir_all(&node.dir);
        std::fs::create_dir_all(&node.dir).expect("test dir");
        let resolv = node.dir.join("resolv.conf");
        std::fs::write(&resolv, "").expect("resolv.conf");
        let ports = format!("{}-{}", node.node_port_base, node.node_port_base + 19);
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let (run_dir, log_dir, resolv) = (s(&node.run_dir), s(&node.log_dir), s(&resolv));
        let args: Vec<&str> = vec![
            "--node-name",
            &node.node_name,
            "--cluster-cidr",
            &node.cluster_cidr,
            "--service-cidr",
            &node.service_cidr,
            "--service-node-port-range",
            &ports,
            "--pod-bridge",
            &node.bridge,
            "--nftables-prefix",
            &node.nft_prefix,
            "--run-dir",
            &run_dir,
            "--cgroup-root",
            &node.cgroup_root,
            "--pod-log-dir",
            &log_dir,
            "--resolv-conf",
            &resolv,
            "--disable-pod-egress",
            "--kubelet-port",
            "0",
        ];
        let cluster = Cluster::start_in(node.dir.join("data"), &args);
        let c = NodeCluster { cluster, node };
        c.wait_node_ready();
        c
    }

    /// Runs kubectl, which must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }

    /// `kubectl get ... -o json`.
    pub fn get(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&args)).expect("kubectl printed JSON")
    }

    /// `kubectl get ... -o json`, or None when kubectl fails (the object is
    /// missing), for polling an object that may be gone a moment.
    pub fn get_opt(&self, what: &[&str]) -> Option<Value> {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        let out = self.cluster.kubectl(&args);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl printed JSON"))
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) {
        let out = self.cluster.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls `f` until it gives a value, failing the test (with the server log) after
    /// `secs` seconds.
    pub fn wait_for<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let pods = self.cluster.kubectl(&["get", "pods", "-A", "-o", "wide"]);
                let events = self.cluster.kubectl(&["get", "events", "-A"]);
                panic!(
                    "timed out after {secs}s waiting for {what}\npods:\n{}\nevents:\n{}\nserver log (tail):\n{}",
                    String::from_utf8_lossy(&pods.stdout),
                    String::from_utf8_lossy(&events.stdout),
                    tail(&self.cluster.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the Node is Ready.
    pub fn wait_node_ready(&self) {
        self.wait_for("the node to be Ready", 60, || {
            let out = self
                .cluster
                .kubectl(&["get", "node", &self.node.node_name, "-o", "json"]);
            let node: Value = serde_json::from_slice(&out.stdout).ok()?;
            let ready = node["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(())
        });
    }

    /// The pods matching `selector` in the default namespace.
    pub fn pods(&self, selector: &str) -> Vec<Value> {
        self.get(&["pods", "-l", selector])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits for `n` pods matching `selector`, all Running and Ready (and none
    /// terminating); returns them.
    pub fn wait_running(&self, selector: &str, n: usize) -> Vec<Value> {
        self.wait_for(&format!("{n} ready pods with {selector}"), 90, || {
            let pods = self.pods(selector);
            let ready = pods.len() == n
                && pods.iter().all(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["phase"] == "Running"
                        && p["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                });
            ready.then_some(pods)
        })
    }

    /// The log lines (text only) of a container of a pod in the default namespace, as
    /// the kubelet wrote them, every attempt in order.
    pub fn container_log(&self, pod: &str, container: &str) -> String {
        let mut out = String::new();
        let prefix = format!("default_{pod}_");
        for dir in std::fs::read_dir(&self.node.log_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if !dir.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join(container))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort_by_key(|p| {
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            for f in files {
                for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
                    // CRI format: time stream tag text.
                    if let Some(text) = line.splitn(4, ' ').nth(3) {
                        out.push_str(text);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// Runs `script` in a busybox pod named `name` (restartPolicy Never) and returns
    /// its output once it exited 0.
    pub fn run_script(&self, name: &str, script: &str) -> String {
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", script],
                }],
            },
        });
        self.apply(&pod.to_string());
        let phase = self.wait_for(&format!("pod {name} to finish"), 90, || {
            let p = self.get(&["pod", name]);
            match p["status"]["phase"].as_str() {
                Some(ph @ ("Succeeded" | "Failed")) => Some(ph.to_string()),
                _ => None,
            }
        });
        let log = self.container_log(name, "main");
        assert_eq!(phase, "Succeeded", "pod {name} failed; its output:\n{log}");
        log
    }

    /// The node's InternalIP.
    pub fn node_ip(&self) -> String {
        let node = self.get(&["node", &self.node.node_name]);
        node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .and_then(|a| a["address"].as_str())
            .expect("the node has an InternalIP")
            .to_string()
    }

    /// Kills the server (SIGKILL, as a crash) and starts it again on the same state.
    pub fn crash_and_restart(&mut self) {
        self.cluster.restart();
        self.wait_node_ready();
    }
}

impl NodeNames {
    /// The names of `slot` as the test process `pid` uses them.
    fn of_slot(slot: u32, pid: u32) -> NodeNames {
        let tag = format!("rke2e{slot}");
        let dir = std::env::temp_dir().join(format!("rkube-e2e-{slot}-{pid}"));
        NodeNames {
            node_name: format!("e2e-node-{slot}"),
            bridge: tag.clone(),
            nft_prefix: tag,
            run_dir: PathBuf::from(format!("/run/rkube-e2e-{slot}")),
            cgroup_root: format!("/rkube-e2e-{slot}"),
            log_dir: dir.join("pod-logs"),
            dir,
            cluster_cidr: format!("10.{}.0.0/16", 150 + slot),
            pod_ip_prefix: format!("10.{}.", 150 + slot),
            service_cidr: format!("10.{}.0.0/16", 200 + slot),
            node_port_base: 31000 + slot as u16 * 20,
            lock: Path::new(SLOT_DIR).join(format!("{slot}.lock")),
        }
    }

    /// Every process in the node's container cgroups.
    fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let root = ctrl.path().join(self.cgroup_root.trim_start_matches('/'));
            walk_dirs(&root, &mut |d| {
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    pids.extend(procs.lines().filter_map(|l| l.parse::<i32>().ok()));
                }
            });
        }
        pids.sort();
        pids.dedup();
        pids
    }

    /// The server and the shims of this node: processes whose command line names this
    /// node's test dir or run dir (never a process picked by a broad name).
    fn own_pids(&self) -> Vec<i32> {
        let marks = [self.run_dir.clone(), self.dir.clone()];
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let ours = cmdline
                .split(|b| *b == 0)
                .map(|arg| Path::new(std::str::from_utf8(arg).unwrap_or("")))
                .any(|arg| marks.iter().any(|m| arg.starts_with(m)));
            if ours {
                pids.push(pid);
            }
        }
        pids
    }

    /// Removes everything the node made; the server must be dead.
    fn cleanup(&self) {
        // Processes: containers (by cgroup), the shims and a server left running by a
        // killed test, until none is left.
        for _ in 0..50 {
            let pids: Vec<i32> = self
                .cgroup_pids()
                .into_iter()
                .chain(self.own_pids())
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Mounts below the node's directories, deepest first.
        let roots = [self.dir.clone(), self.run_dir.clone()];
        let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
            .filter(|m| roots.iter().any(|r| m.starts_with(r)))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        // Network: the bridge's ports, the bridge, the routes, the tables.
        let brif = Path::new("/sys/class/net").join(&self.bridge).join("brif");
        for port in std::fs::read_dir(&brif).into_iter().flatten().flatten() {
            ip(&["link", "del", &port.file_name().to_string_lossy()]);
        }
        ip(&["route", "del", &self.service_cidr, "dev", &self.bridge]);
        ip(&["route", "del", "blackhole", &self.cluster_cidr]);
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            ip(&["link", "del", &self.bridge]);
        }
        for table in ["proxy", "podnet"] {
            let _ = Command::new("nft")
                .args([
                    "delete",
                    "table",
                    "ip",
                    &format!("{}-{table}", self.nft_prefix),
                ])
                .stderr(std::process::Stdio::null())
                .status();
        }
        // Cgroups, children first.
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let root = ctrl.path().join(self.cgroup_root.trim_start_matches('/'));
            let mut dirs = Vec::new();
            walk_dirs(&root, &mut |d| dirs.push(d.to_path_buf()));
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                for _ in 0..20 {
                    if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        // A failed test's directory (server log, state) stays for a look: it holds
        // nothing mounted any more.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = std::fs::remove_file(&self.lock);
    }
}

fn walk_dirs(dir: &Path, f: &mut dyn FnMut(&Path)) {
    if !dir.is_dir() {
        return;
    }
    f(dir);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&e.path(), f);
        }
    }
}

fn ip(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status();
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        self.cluster.kill();
        self.node.cleanup();
    }
}

impl Drop for NodeNames {
    fn drop(&mut self) {
        self.cleanup();
    }
}
