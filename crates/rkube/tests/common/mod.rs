//! Test fixture: an `rkube server` process on its own data dir and port, and the real
//! `kubectl` pointed at it. The server is killed (by PID) when the fixture drops.

#![allow(dead_code)]

pub mod node;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `rkube server`.
pub struct Cluster {
    pub data_dir: PathBuf,
    pub port: u16,
    pub kubeconfig: PathBuf,
    /// A private HOME for kubectl, so its discovery cache starts empty.
    pub home: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
}

/// Runs a command with `input` on its stdin; returns its output.
pub fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running a command");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("command output")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rkube-test-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

impl Cluster {
    /// Starts a server with the default (SQLite) datastore and waits until ready.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Starts a control-plane-only server (no node: these tests need no root) with
    /// extra `rkube server` flags.
    pub fn start_with(extra: &[&str]) -> Cluster {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Cluster::start_args(&args)
    }

    /// Starts a server with exactly these extra `rkube server` flags.
    pub fn start_args(extra: &[&str]) -> Cluster {
        Cluster::start_in(unique_dir("server"), extra)
    }

    /// Starts a server on `data_dir` with exactly these extra `rkube server` flags.
    pub fn start_in(data_dir: PathBuf, extra: &[&str]) -> Cluster {
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let home = data_dir.join("home");
        std::fs::create_dir_all(&home).expect("home dir");
        let mut c = Cluster {
            kubeconfig: data_dir.join("admin.kubeconfig"),
            data_dir,
            port: free_port(),
            home,
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.data_dir.join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--https-port")
            .arg(self.port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting rkube server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until `/readyz` answers ok (and the kubeconfig exists).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rkube server did not become ready; log:\n{}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Kills the server with SIGKILL (a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A `kubectl` command with this cluster's kubeconfig and a private HOME.
    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    /// Runs kubectl and returns its output (whatever the exit code).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd()
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl, which must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, which must fail; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with a YAML document on stdin (`-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut cmd = self.kubectl_cmd();
        cmd.args(args);
        run_with_stdin(cmd, input)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A kubeconfig for another user: a client certificate from the cluster's CA
    /// with `user` as CN and `groups` as O.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        use rkube_apiserver::pki::{self, Pki};
        let pki = Pki::load_or_create(&self.data_dir.join("tls")).expect("cluster CA");
        let cert = pki.issue_client(user, groups).expect("client certificate");
        let path = self
            .data_dir
            .join(format!("{}.kubeconfig", user.replace(':', "_")));
        let server = format!("https://127.0.0.1:{}", self.port);
        pki::write_kubeconfig(&path, &server, &pki.ca.cert_pem, &cert, user).expect("kubeconfig");
        path
    }

    /// Runs kubectl with another kubeconfig (see `kubeconfig_for`).
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_cmd()
            .env("KUBECONFIG", kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

impl Cluster {
    /// A kube-rs client for this cluster (HTTPS with the admin certificate).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }
}

impl Cluster {
    /// `kubectl get <what> -o json`, parsed, as the server has it (managed fields too).
    pub fn get_json(&self, what: &[&str]) -> serde_json::Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&self.kubectl_ok(&args)).expect("kubectl printed JSON")
    }

    /// Writes a file into the cluster's test directory and returns its path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.data_dir.join(name);
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
}

/// kubectl's standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl's standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
