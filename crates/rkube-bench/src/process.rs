//! Starting an `rkube server` process for a benchmark and reading its memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A server process on its own data dir; killed (by PID) on drop.
pub struct Server {
    pub child: Child,
    pub data_dir: PathBuf,
    /// From spawn to the first `/readyz` answering ok.
    pub ready_after: Duration,
}

/// The `rkube` binary beside this one (both built by `cargo build --release`).
pub fn rkube_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("rkube");
    anyhow::ensure!(
        sibling.exists(),
        "{} not found: build it with `cargo build --release --workspace --bins`, or pass --rkube",
        sibling.display()
    );
    Ok(sibling)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(16443)
}

impl Server {
    /// Starts a control-plane-only server (the API is measured: no node on the bench
    /// machine) and waits until `/readyz` is ok.
    pub async fn start(rkube: &Path, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Server> {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Server::start_with_node(rkube, data_dir, &args).await
    }

    /// Starts a server with exactly these extra flags (so with a node unless they say
    /// `--disable-agent`) and waits until `/readyz` is ok.
    pub async fn start_with_node(
        rkube: &Path,
        data_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data_dir)?;
        // A kubeconfig left by an earlier server names another port.
        let _ = std::fs::remove_file(data_dir.join("admin.kubeconfig"));
        let port = free_port();
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let started = Instant::now();
        let child = Command::new(rkube)
            .args([
                "server",
                "--bind-address",
                "127.0.0.1",
                "--https-port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", rkube.display()))?;
        let mut server = Server {
            child,
            data_dir: data_dir.to_path_buf(),

            ready_after: Duration::ZERO,
        };
        let deadline = started + Duration::from_secs(30);
        // The kubeconfig is written before the API serves; then poll /readyz.
        let mut client = None;
        let mut last_error = None;
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "server did not become ready: {last_error:?}"
            );
            if let Ok(Some(status)) = server.child.try_wait() {
                anyhow::bail!("server exited: {status}");
            }
            if client.is_none() && data_dir.join("admin.kubeconfig").exists() {
                match server.client().await {
                    Ok(c) => client = Some(c),
                    Err(e) => last_error = Some(format!("{e:#}")),
                }
            }
            if let Some(c) = &client {
                let req = http::Request::get("/readyz").body(Vec::new())?;
                match c.request_text(req).await {
                    Ok(body) if body == "ok" => {
                        server.ready_after = started.elapsed();
                        return Ok(server);
                    }
                    Ok(_) => {}
                    Err(e) => last_error = Some(format!("{:?}", anyhow::Error::from(e))),
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The server's own account of its start-up, from its log.
    pub fn logged_ready(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.data_dir.join("server.log")).ok()?;
        let line = log.lines().find(|l| l.contains("ready in"))?;
        let at = line.find("ready in")?;
        Some(line[at + 9..].split(':').next()?.trim().to_string())
    }

    /// Resident memory of the process, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_kib(self.child.id()) as f64 / 1024.0
    }

    /// A kube client over HTTPS with the admin kubeconfig.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.data_dir.join("admin.kubeconfig"))?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        config.read_timeout = Some(Duration::from_secs(600));
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
