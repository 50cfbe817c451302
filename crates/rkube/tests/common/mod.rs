//! A real `rkube server` process for tests, driven with the real `kubectl`.
//!
//! ```ignore
//! let Some(cluster) = Cluster::start() else { return };
//! cluster.apply_manifest("deploy.yaml", YAML, &["--server-side"]);
//! let out = cluster.kubectl(&["get", "deploy", "web", "-o", "json"]);
//! ```
//!
//! Each cluster has its own data directory and loopback port; the server is
//! killed (by its PID) and the directory removed when the `Cluster` is dropped.
#![allow(dead_code)] // Each test binary uses its own part of the fixture.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where tests expect kubectl.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// How long a server may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A running `rkube server` on 127.0.0.1.
pub struct Cluster {
    /// The server's `--data-dir` (also holds the kubectl home and test files).
    pub data_dir: PathBuf,
    pub port: u16,
    /// `<data-dir>/admin.kubeconfig`.
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    child: Child,
}

impl Cluster {
    /// Starts a server, or returns None (printing why) when kubectl is missing.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(&[])
    }

    /// Starts a server with extra `rkube server` flags.
    pub fn start_with(extra_args: &[&str]) -> Option<Cluster> {
        if !Path::new(KUBECTL).exists() {
            eprintln!("skipped: {KUBECTL} is not installed");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "rkube-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let data_dir = dir.join("data");
        std::fs::create_dir_all(dir.join("home")).expect("creating the test directory");
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).expect("creating the server log");
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("server")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--https-port", &port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting rkube server");
        let cluster = Cluster {
            kubeconfig: data_dir.join("admin.kubeconfig"),
            data_dir,
            port,
            dir,
            child,
        };
        cluster.wait_ready();
        Some(cluster)
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if self.kubeconfig.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!(
                    "rkube server was not ready within {READY_TIMEOUT:?}; its log:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server wrote to stdout and stderr so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs kubectl against this cluster (own `HOME`, so no shared cache).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl with `input` on its standard input (`-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("kubectl's stdin")
            .write_all(input.as_bytes())
            .expect("writing to kubectl");
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs kubectl and returns its standard output; panics when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get <what> -o json`, parsed, as the server has it (with
    /// `managedFields`, which kubectl hides unless asked).
    pub fn get_json(&self, what: &[&str]) -> serde_json::Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&self.kubectl_ok(&args)).expect("kubectl printed JSON")
    }

    /// Writes a file into the cluster's test directory and returns its path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("writing a test file");
        path
    }

    /// Writes `yaml` to `name` and runs `kubectl apply -f <file> <flags>`.
    pub fn apply_manifest(&self, name: &str, yaml: &str, flags: &[&str]) -> Output {
        let path = self.write_file(name, yaml);
        let path = path.to_string_lossy().into_owned();
        let mut args = vec!["apply", "-f", path.as_str()];
        args.extend_from_slice(flags);
        self.kubectl(&args)
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.join("home"));
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Child::kill signals exactly this process, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

/// kubectl's standard error, for assertions on its messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl's standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
