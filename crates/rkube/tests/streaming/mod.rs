//! A small cluster for the kubelet's streaming tests, torn down on drop even when a
//! test fails: an API server over HTTPS on loopback, the kubelet's streaming server
//! (webhook authentication and authorization against that API server) finding pods
//! through a test `PodLookup`, real containers run by the node runtime with
//! `rkube shim` as their shim, images from the local test registry, and a
//! kubeconfig for the real kubectl.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::pki::{self, Pki};
use rkube_apiserver::{ApiServer, Config};
use rkube_kubelet::lookup::{ContainerRef, LookupError, PodLookup, SandboxRef};
use rkube_kubelet::streaming::{ServingTls, StreamingConfig, StreamingServer};
use rkube_runtime::{ContainerConfig, OciRuntime, Runtime, RuntimeConfig, SandboxConfig};
use serde_json::json;

pub const BUSYBOX: &str = "127.0.0.1:5000/rkube-test/busybox:1";
pub const HTTPD: &str = "127.0.0.1:5000/rkube-test/httpd:1";
pub const NODE: &str = "node-a";
/// The kubectl minors the tests run besides the dispatcher's.
pub const OLDER_KUBECTLS: [u32; 4] = [27, 29, 30, 32];

/// Why a root test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    let Some(dir) = kubectl_dir() else {
        return Some("needs kubectl on PATH".into());
    };
    // The older clients (SPDY) beside the dispatcher, as the Google Cloud SDK has them.
    for v in OLDER_KUBECTLS {
        if !dir.join(format!("kubectl.1.{v}")).exists() {
            return Some(format!(
                "needs kubectl.1.{v} beside kubectl in {}",
                dir.display()
            ));
        }
    }
    for tool in ["curl", "script"] {
        if std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_err()
        {
            return Some(format!("needs {tool}"));
        }
    }
    if std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5000".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_err()
    {
        return Some("needs the test registry on 127.0.0.1:5000 (scripts/test-images)".into());
    }
    None
}

/// Skips the calling test (with the reason printed) when it cannot run here.
#[macro_export]
macro_rules! require_node {
    () => {
        if let Some(why) = streaming::skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Where the kubectl binaries live (the dispatcher and its `kubectl.1.NN`).
pub fn kubectl_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.exists())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

pub fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// The pods this node runs, as the pod workers report them: set by the tests.
#[derive(Default)]
pub struct TestLookup {
    pods: Mutex<HashMap<(String, String), TestPod>>,
}

#[derive(Clone, Default)]
pub struct TestPod {
    pub containers: Vec<(String, ContainerRef)>,
    pub sandbox: Option<SandboxRef>,
}

impl PodLookup for TestLookup {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerRef, LookupError> {
        let pods = self.pods.lock().unwrap();
        let p = pods
            .get(&(namespace.to_string(), pod.to_string()))
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        match container {
            Some(c) => p
                .containers
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, r)| r.clone())
                .ok_or_else(|| LookupError::ContainerNotFound {
                    pod: pod.into(),
                    container: c.into(),
                }),
            None => match p.containers.as_slice() {
                [(_, only)] => Ok(only.clone()),
                all => Err(LookupError::Ambiguous {
                    pod: pod.into(),
                    choices: all
                        .iter()
                        .map(|(n, _)| n.clone())
                        .collect::<Vec<_>>()
                        .join(" "),
                }),
            },
        }
    }

    fn sandbox(&self, namespace: &str, pod: &str) -> Result<SandboxRef, LookupError> {
        self.pods
            .lock()
            .unwrap()
            .get(&(namespace.to_string(), pod.to_string()))
            .and_then(|p| p.sandbox.clone())
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })
    }
}

/// A container of a test pod.
#[derive(Clone, Default)]
pub struct Spec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

impl Spec {
    pub fn sh(name: &str, script: &str) -> Spec {
        Spec {
            name: name.into(),
            image: BUSYBOX.into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        }
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    pub api: Arc<ApiServer>,
    pub client: kube::Client,
    pub kubelet_addr: SocketAddr,
    pub api_url: String,
    pub rt: Arc<OciRuntime>,
    pub rt_cfg: RuntimeConfig,
    pub lookup: Arc<TestLookup>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        // `RUST_LOG=rkube_kubelet=debug` shows what the kubelet side did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let tag = unique();
        let dir = std::env::temp_dir().join(format!("rkube-streaming-{tag}"));
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let pki = Pki::load_or_create(&dir.join("tls")).unwrap();
        let config = Config {
            kubelet_client: Some(rkube_apiserver::kubelet::KubeletClientConfig {
                ca_pem: pki.ca.cert_pem.clone(),
                client: pki.kubelet_client().unwrap(),
            }),
            ..Config::default()
        };
        let api = ApiServer::new(config, Arc::new(rkube_store::memory::MemoryStore::new()))
            .await
            .unwrap();
        let client = kube::Client::new(
            api.local_service(UserInfo::new("test-admin", &["system:masters"])),
            "default",
        );
        let mut rt_cfg = RuntimeConfig::new(dir.join("node"));
        rt_cfg.run_root = PathBuf::from(format!("/run/rkube-streaming-{tag}"));
        rt_cfg.cgroup_parent = format!("/rkube-streaming-{tag}");
        rt_cfg.shim = vec![env!("CARGO_BIN_EXE_rkube").into(), "shim".into()];
        // From here on, a failure still tears everything down.
        let mut c = Cluster {
            kubeconfig: dir.join("kubeconfig"),
            pki,
            dir,
            api,
            client,
            kubelet_addr: "127.0.0.1:0".parse().unwrap(),
            api_url: String::new(),
            rt: Arc::new(OciRuntime::new(rt_cfg.clone()).unwrap()),
            rt_cfg,
            lookup: Arc::new(TestLookup::default()),
            tasks: Vec::new(),
        };
        c.init().await;
        c
    }

    async fn init(&mut self) {
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let ca = self.pki.ca.cert_pem.clone();
        let serving = self
            .pki
            .issue_server("kube-apiserver", &["localhost".into()], &loopback)
            .unwrap();
        let tls = rkube_apiserver::serve::server_config(&serving, &ca).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_addr = listener.local_addr().unwrap();
        self.api_url = format!("https://{api_addr}");
        self.tasks
            .push(tokio::spawn(rkube_apiserver::serve::serve_https(
                self.api.clone(),
                listener,
                tls,
            )));
        let admin = self.pki.issue_client("admin", &["system:masters"]).unwrap();
        pki::write_kubeconfig(&self.kubeconfig, &self.api_url, &ca, &admin, "admin").unwrap();

        let kubelet_cert = self.pki.kubelet_serving(NODE, &loopback).unwrap();
        let tls = ServingTls {
            cert_pem: kubelet_cert.cert_pem,
            key_pem: kubelet_cert.key_pem,
            client_ca_pem: ca,
        };
        // The node agent's own client of the API server, as `rkube server` gives it.
        let node_client = kube::Client::new(
            self.api.local_service(UserInfo::new(
                &format!("system:node:{NODE}"),
                &["system:masters"],
            )),
            "default",
        );
        let config =
            StreamingConfig::new("127.0.0.1:0".parse().unwrap(), NODE, tls).webhook(node_client);
        let server = StreamingServer::bind(config, self.lookup.clone(), self.rt.clone())
            .await
            .unwrap();
        self.kubelet_addr = server.local_addr();
        self.tasks.push(tokio::spawn(server.run()));

        for image in [BUSYBOX, HTTPD] {
            self.rt.pull_image(image, None).await.unwrap();
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap(),
            )
            .await
            .unwrap();
        nodes
            .patch_status(
                NODE,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": NODE},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_addr.port()}},
                }})),
            )
            .await
            .unwrap();
    }

    /// Creates and starts a container (in `sandbox` when given); its reference.
    pub async fn start_container(&self, spec: &Spec, sandbox: Option<&str>) -> ContainerRef {
        let id = self
            .rt
            .create_container(
                sandbox,
                ContainerConfig {
                    name: spec.name.clone(),
                    image: spec.image.clone(),
                    command: spec.command.clone(),
                    stdin: spec.stdin,
                    stdin_once: spec.stdin_once,
                    tty: spec.tty,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.rt.start_container(&id).await.unwrap();
        let status = self.rt.container_status(&id).await.unwrap();
        ContainerRef {
            id,
            log_path: status.log_path,
            previous_log_path: None,
            tty: spec.tty,
            stdin: spec.stdin,
        }
    }

    /// Runs a pod: its containers on this node (with a sandbox when asked), the
    /// Pod in the API bound to the node and reported Running.
    pub async fn run_pod(&self, name: &str, specs: &[Spec], with_sandbox: bool) -> TestPod {
        let sandbox = if with_sandbox {
            let sb = self
                .rt
                .run_pod_sandbox(SandboxConfig {
                    name: format!("{name}_default"),
                    hostname: name.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            Some(SandboxRef {
                id: sb.id.clone(),
                netns_path: sb.netns_path.clone().unwrap(),
            })
        } else {
            None
        };
        let mut pod = TestPod {
            containers: Vec::new(),
            sandbox: sandbox.clone(),
        };
        for s in specs {
            let r = self
                .start_container(s, sandbox.as_ref().map(|s| s.id.as_str()))
                .await;
            pod.containers.push((s.name.clone(), r));
        }
        self.set_pod(name, pod.clone());
        self.create_pod_object(name, specs).await;
        let statuses: Vec<_> = pod
            .containers
            .iter()
            .map(|(n, r)| {
                json!({
                    "name": n, "ready": true, "restartCount": 0, "image": BUSYBOX, "imageID": "",
                    "containerID": format!("rkube://{}", r.id),
                    "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
                })
            })
            .collect();
        self.set_pod_status(
            name,
            json!({"phase": "Running", "containerStatuses": statuses}),
        )
        .await;
        pod
    }

    pub fn set_pod(&self, name: &str, pod: TestPod) {
        self.lookup
            .pods
            .lock()
            .unwrap()
            .insert(("default".into(), name.into()), pod);
    }

    pub async fn create_pod_object(&self, name: &str, specs: &[Spec]) {
        let containers: Vec<_> = specs
            .iter()
            .map(|s| {
                json!({"name": s.name, "image": s.image, "command": s.command,
                       "stdin": s.stdin, "stdinOnce": s.stdin_once, "tty": s.tty})
            })
            .collect();
        let pods: Api<Pod> = Api::default_namespaced(self.client.clone());
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"nodeName": NODE, "containers": containers},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    }

    /// A kubeconfig for another user: a client certificate of the cluster CA.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let path = self.dir.join(format!("{user}.kubeconfig"));
        let cert = self.pki.issue_client(user, groups).unwrap();
        pki::write_kubeconfig(&path, &self.api_url, &self.pki.ca.cert_pem, &cert, user).unwrap();
        path
    }

    /// A new ServiceAccount in `default`, and a token of it.
    pub async fn service_account_token(&self, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::default_namespaced(self.client.clone());
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        let request: TokenRequest =
            serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap()
            .status
            .expect("a token")
            .token
    }

    /// A Service selecting the pods labelled `app=<name>`.
    pub async fn create_service(&self, name: &str, port: u16, target_port: u16) {
        let services: Api<Service> = Api::default_namespaced(self.client.clone());
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"selector": {"app": name},
                             "ports": [{"port": port, "targetPort": target_port}]},
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }

    pub async fn set_pod_status(&self, name: &str, status: serde_json::Value) {
        let pods: Api<Pod> = Api::default_namespaced(self.client.clone());
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
    }

    /// Waits until a container's CRI log contains `needle`.
    pub async fn wait_log(&self, r: &ContainerRef, needle: &str) {
        for _ in 0..500 {
            if std::fs::read_to_string(&r.log_path)
                .unwrap_or_default()
                .contains(needle)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{needle:?} never appeared in {}",
            std::fs::read_to_string(&r.log_path).unwrap_or_default()
        );
    }

    /// A kubectl command (`version` picks `kubectl.1.<version>`, else the dispatcher).
    pub fn kubectl(&self, version: Option<u32>, args: &[&str]) -> tokio::process::Command {
        let dir = kubectl_dir().expect("kubectl");
        let bin = match version {
            Some(v) => dir.join(format!("kubectl.1.{v}")),
            None => dir.join("kubectl"),
        };
        let mut c = tokio::process::Command::new(bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.join("home"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion (failing the test after a minute).
    pub async fn run(&self, version: Option<u32>, args: &[&str]) -> Out {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            self.kubectl(version, args).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within a minute"))
        .unwrap();
        Out::from(out)
    }

    /// Runs kubectl with `input` on its stdin.
    pub async fn run_with_input(&self, version: Option<u32>, args: &[&str], input: &[u8]) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .kubectl(version, args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within a minute"))
            .unwrap();
        writer.await.unwrap();
        Out::from(out)
    }

    /// Runs a shell command line in a terminal (`terminal::run`); the kubectl
    /// binaries are on its PATH.
    pub async fn run_in_terminal(&self, line: &str, input: &[u8]) -> Out {
        let path = format!(
            "{}:{}",
            kubectl_dir().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let envs = vec![
            (
                "KUBECONFIG".into(),
                self.kubeconfig.clone().into_os_string(),
            ),
            ("HOME".into(), self.dir.join("home").into_os_string()),
            ("PATH".into(), path.into()),
        ];
        let (line, input) = (line.to_string(), input.to_vec());
        let screen =
            match tokio::task::spawn_blocking(move || crate::terminal::run(&line, envs, &input))
                .await
            {
                Ok(s) => s,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
        Out {
            code: screen.code,
            stdout: String::from_utf8_lossy(&screen.shown).into_owned(),
            stderr: String::from_utf8_lossy(&screen.stderr).into_owned(),
            raw: screen.shown,
        }
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub raw: Vec<u8>,
}

impl From<std::process::Output> for Out {
    fn from(o: std::process::Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            raw: o.stdout,
        }
    }
}

impl Out {
    /// Asserts success; the stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "failed: {self:?}");
        self.stdout
    }
}

fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Remove every container and sandbox through the runtime (it kills, unmounts
        // and deletes cgroups), on a runtime of its own: this may run during a panic.
        let rt = self.rt.clone();
        let _ = std::thread::spawn(move || {
            let Ok(tokio_rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            tokio_rt.block_on(async {
                for c in rt.list_containers().await.unwrap_or_default() {
                    if let Some(pid) = c.pid {
                        kill_pid(pid);
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_secs(20), rt.remove_container(&c.id))
                            .await;
                }
                for s in rt.list_pod_sandboxes().await.unwrap_or_default() {
                    let _ = rt.remove_pod_sandbox(&s.id).await;
                }
            });
        })
        .join();
        // What is left in the test's cgroups, then the cgroups.
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = ctrl
                .path()
                .join(self.rt_cfg.cgroup_parent.trim_start_matches('/'));
            if !parent.is_dir() {
                continue;
            }
            // The container cgroups (directories; the rest are the parent's files).
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if !child.path().is_dir() {
                    continue;
                }
                if let Ok(procs) = std::fs::read_to_string(child.path().join("cgroup.procs")) {
                    procs
                        .lines()
                        .filter_map(|l| l.parse().ok())
                        .for_each(kill_pid);
                }
                for _ in 0..50 {
                    if std::fs::remove_dir(child.path()).is_ok() || !child.path().exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
        let containers = self.rt_cfg.root.join("containers");
        for e in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
        for e in std::fs::read_dir(self.rt_cfg.root.join("sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in ["ns/net", "ns/ipc", "ns/uts", "shm"] {
                let _ = nix::mount::umount2(&e.path().join(f), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.rt_cfg.run_root);
    }
}
