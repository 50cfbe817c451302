//! Pod sandboxes: a network, IPC and UTS namespace kept alive by bind mounts (as
//! `ip netns add` does), the files its containers share (`/etc/hosts`,
//! `/etc/hostname`, `/etc/resolv.conf`) and a shared `/dev/shm`.

use crate::config::SandboxConfig;
use crate::error::{RuntimeError, io_err, sys_err};
use crate::spec::SandboxParts;
use crate::state;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use std::fs;
use std::path::{Path, PathBuf};

/// The state of a sandbox (CRI's `PodSandboxState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SandboxState {
    /// Its namespaces exist; containers may join.
    Ready,
    /// Stopped: its containers were stopped; it awaits removal.
    NotReady,
}

/// A pod sandbox as the runtime reports it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    /// Sandbox ID.
    pub id: String,
    /// What it was created with.
    pub config: SandboxConfig,
    /// State.
    pub state: SandboxState,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The network namespace to hand to the pod network (`None` with host network).
    pub netns_path: Option<PathBuf>,
}

pub(crate) struct SandboxDir(pub PathBuf);

impl SandboxDir {
    fn record(&self) -> PathBuf {
        self.0.join("sandbox.json")
    }
    fn ns(&self, kind: &str) -> PathBuf {
        self.0.join("ns").join(kind)
    }

    pub(crate) fn load(&self, id: &str) -> Result<Sandbox, RuntimeError> {
        state::read_json::<Sandbox>(&self.record())
            .map_err(io_err(self.record()))?
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "sandbox",
                id: id.to_string(),
            })
    }

    pub(crate) fn save(&self, s: &Sandbox) -> Result<(), RuntimeError> {
        state::write_json(&self.record(), s).map_err(io_err(self.record()))
    }

    /// What a container of this sandbox takes from it.
    pub(crate) fn parts(&self, s: &Sandbox) -> SandboxParts {
        SandboxParts {
            netns: s.netns_path.clone(),
            ipcns: Some(self.ns("ipc")),
            utsns: Some(self.ns("uts")),
            host_network: s.config.host_network,
            hosts: Some(self.0.join("hosts")),
            hostname_file: Some(self.0.join("hostname")),
            resolv_conf: Some(self.0.join("resolv.conf")),
            shm: Some(self.0.join("shm")),
            hostname: Some(s.config.hostname.clone()).filter(|h| !h.is_empty()),
        }
    }

    /// Creates the sandbox's files, namespaces and /dev/shm. On error, whatever was
    /// made is undone.
    pub(crate) fn create(&self, id: &str, config: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let r = self.create_inner(id, config);
        if r.is_err() {
            self.destroy();
        }
        r
    }

    fn create_inner(&self, id: &str, config: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        fs::create_dir_all(self.0.join("ns")).map_err(io_err(&self.0))?;
        let hostname = if config.hostname.is_empty() {
            id.chars().take(12).collect()
        } else {
            config.hostname.clone()
        };
        write(&self.0.join("hostname"), &format!("{hostname}\n"))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        for (ip, names) in &config.hosts {
            hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        write(&self.0.join("hosts"), &hosts)?;
        let resolv = match &config.dns {
            Some(d) => {
                let mut s = String::new();
                if !d.searches.is_empty() {
                    s.push_str(&format!("search {}\n", d.searches.join(" ")));
                }
                for n in &d.servers {
                    s.push_str(&format!("nameserver {n}\n"));
                }
                if !d.options.is_empty() {
                    s.push_str(&format!("options {}\n", d.options.join(" ")));
                }
                s
            }
            None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        write(&self.0.join("resolv.conf"), &resolv)?;

        let shm = self.0.join("shm");
        fs::create_dir_all(&shm).map_err(io_err(&shm))?;
        let size = if config.shm_size == 0 {
            64 << 20
        } else {
            config.shm_size
        };
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={size}").as_str()),
        )
        .map_err(sys_err("mounting sandbox /dev/shm"))?;

        let mut kinds = vec![
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
        ];
        if !config.host_network {
            kinds.push(("net", CloneFlags::CLONE_NEWNET));
        }
        let targets: Vec<(String, PathBuf)> = kinds
            .iter()
            .map(|(k, _)| (k.to_string(), self.ns(k)))
            .collect();
        for (_, t) in &targets {
            fs::File::create(t).map_err(io_err(t))?;
        }
        let flags = kinds.iter().fold(CloneFlags::empty(), |a, (_, f)| a | *f);
        // Namespaces are per thread: a short-lived thread enters new ones, names them
        // by bind mounts, and exits; no other thread of the caller is touched.
        let h = hostname.clone();
        std::thread::spawn(move || -> Result<(), RuntimeError> {
            nix::sched::unshare(flags).map_err(sys_err("unshare sandbox namespaces"))?;
            nix::unistd::sethostname(&h).map_err(sys_err("sethostname"))?;
            if flags.contains(CloneFlags::CLONE_NEWNET) {
                loopback_up()?;
            }
            for (kind, target) in &targets {
                let src = format!("/proc/thread-self/ns/{kind}");
                mount(
                    Some(src.as_str()),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys_err(format!("binding {kind} namespace")))?;
            }
            Ok(())
        })
        .join()
        .map_err(|_| RuntimeError::Sys {
            what: "namespace thread panicked".into(),
            source: nix::Error::EIO,
        })??;

        let sandbox = Sandbox {
            id: id.to_string(),
            config: SandboxConfig { hostname, ..config },
            state: SandboxState::Ready,
            created_at: state::now_rfc3339(),
            netns_path: None,
        };
        let sandbox = Sandbox {
            netns_path: (!sandbox.config.host_network).then(|| self.ns("net")),
            ..sandbox
        };
        self.save(&sandbox)?;
        Ok(sandbox)
    }

    /// Unmounts the namespaces and /dev/shm and deletes the directory. Idempotent.
    pub(crate) fn destroy(&self) {
        for kind in ["net", "ipc", "uts"] {
            let _ = umount2(&self.ns(kind), MntFlags::MNT_DETACH);
        }
        let _ = umount2(&self.0.join("shm"), MntFlags::MNT_DETACH);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Brings `lo` up in the calling thread's network namespace (a new namespace has it
/// down), over netlink.
fn loopback_up() -> Result<(), RuntimeError> {
    use libcontainer::network::{link::LinkClient, wrapper::create_network_client};
    let net_err = |e: libcontainer::network::NetworkError| RuntimeError::Sys {
        what: format!("bringing lo up: {e}"),
        source: nix::Error::EIO,
    };
    let mut link = LinkClient::new(create_network_client()).map_err(net_err)?;
    let lo = link.get_by_name("lo").map_err(net_err)?;
    link.set_up(lo.header.index).map_err(net_err)
}

fn write(p: &Path, s: &str) -> Result<(), RuntimeError> {
    fs::write(p, s).map_err(io_err(p))
}
