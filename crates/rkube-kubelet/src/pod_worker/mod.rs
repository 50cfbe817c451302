//! One pod worker per pod on this node: a task that drives the pod's sandbox and
//! containers towards its spec and reports its status, until the pod is deleted and
//! everything of it is gone.
//!
//! Each pass (`sync`) reads the runtime's view of the pod's containers, then:
//! sandbox (a network namespace with an address) → volumes → init containers in
//! order → containers, restarting what the restart policy says with CrashLoopBackOff
//! delays and killing what failed its liveness or startup probe → status. A worker
//! wakes when the pod changes, a probe verdict changes, a ConfigMap or Secret it
//! mounts changes, a back-off ends, or every second to notice exited containers.
//!
//! All state lives in the runtime (container labels say which pod, container and
//! attempt they are), so a restarted kubelet adopts running containers unchanged.

pub mod labels;
mod start;
mod status;
mod terminate;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rkube_runtime::{ContainerState, ContainerStatus, Sandbox, SandboxConfig, SandboxState};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::backoff::{Backoff, go_duration};
use crate::events::EventType;
use crate::kubelet::Ctx;
use crate::probes::{ProbeKind, ProbeResult};
use crate::status::is_sidecar;
use crate::volumes::MountedVolume;

/// The latest pod from the API, or `None` once it is gone from the API.
pub type PodUpdate = Option<Arc<Pod>>;

/// What a restarted kubelet found in the runtime for one pod.
#[derive(Default, Clone)]
pub struct Adopted {
    /// Its sandboxes.
    pub sandboxes: Vec<Sandbox>,
    /// Its containers.
    pub containers: Vec<ContainerStatus>,
}

/// One container instance of the pod in the runtime.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub hash: String,
    pub sandbox_id: Option<String>,
    pub st: ContainerStatus,
    /// `repo@sha256:...` of its image, once looked up.
    pub image_id: Option<String>,
    /// The termination message, read once it exited.
    pub message: Option<String>,
    /// Why starting it failed, if it did.
    pub start_error: Option<String>,
}

impl Instance {
    pub fn from_status(st: ContainerStatus) -> Instance {
        Instance {
            id: st.id.clone(),
            name: labels_get(&st.labels, labels::CONTAINER_NAME).unwrap_or(st.name.clone()),
            attempt: labels::number(&st.labels, labels::RESTART_COUNT),
            hash: labels_get(&st.labels, labels::CONTAINER_HASH).unwrap_or_default(),
            sandbox_id: st.sandbox_id.clone(),
            st,
            image_id: None,
            message: None,
            start_error: None,
        }
    }

    pub fn running(&self) -> bool {
        self.st.state == ContainerState::Running
    }

    /// Done: exited, or started and lost (its shim is gone), or never started.
    pub fn finished(&self) -> bool {
        matches!(
            self.st.state,
            ContainerState::Exited | ContainerState::Unknown
        ) || (self.st.state == ContainerState::Created && self.start_error.is_some())
    }

    pub fn exit_code(&self) -> i32 {
        match self.st.state {
            ContainerState::Exited => self.st.exit_code.unwrap_or(0),
            ContainerState::Unknown => 137,
            _ => 128,
        }
    }

    pub fn finished_at(&self) -> Timestamp {
        self.st
            .finished_at
            .as_deref()
            .or(self.st.started_at.as_deref())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(Timestamp::now)
    }
}

fn labels_get(l: &std::collections::BTreeMap<String, String>, k: &str) -> Option<String> {
    l.get(k).cloned()
}

/// The pod's sandbox as the worker knows it.
#[derive(Clone, Debug)]
pub(crate) struct PodSandbox {
    pub id: String,
    pub ips: Vec<Ipv4Addr>,
    pub netns: Option<PathBuf>,
}

/// A pod worker's state.
pub(crate) struct PodWorker {
    pub ctx: Arc<Ctx>,
    pub uid: String,
    pub pod: Arc<Pod>,
    pub updates: watch::Receiver<PodUpdate>,
    pub wake: Arc<Notify>,
    /// Set by the kubelet when a ConfigMap or Secret the pod mounts changed.
    pub volumes_dirty: Arc<AtomicBool>,
    pub sandbox: Option<PodSandbox>,
    /// Every instance of every container, newest first per name.
    pub instances: Vec<Instance>,
    pub backoff: Backoff,
    pub probers: HashMap<String, Vec<AbortHandle>>,
    /// Why a container is waiting (image pull errors, config errors...), by name.
    pub waiting: HashMap<String, (String, String)>,
    pub start_time: Option<Time>,
    pub volumes: HashMap<String, MountedVolume>,
    pub mount_errors: Vec<String>,
    pub volumes_due: bool,
    pub volumes_synced: Option<Instant>,
    /// The pod will run nothing more (Succeeded, Failed, or past its deadline).
    pub terminal: Option<(String, Option<String>, Option<String>)>,
    /// Readiness before a kubelet restart, by container ID (adopted containers).
    pub was_ready: HashMap<String, bool>,
    /// When to look again at the latest (back-off ends).
    pub next_wake: Option<Instant>,
    /// The attempt number of the next sandbox.
    pub next_sandbox_attempt: u32,
    /// The pod's addresses as last known (kept in the status once it stopped).
    pub last_ips: Vec<Ipv4Addr>,
    /// Sandboxes stopped but not removed (a finished pod's; stale adopted ones).
    pub stopped_sandboxes: Vec<PodSandbox>,
    /// Adopted running containers still need their probers.
    pub adopted_probers: bool,
}

/// How often running containers are checked for exits.
const RELIST: Duration = Duration::from_secs(1);
/// How often volumes are refreshed when nothing announced a change (tokens).
const VOLUME_RESYNC: Duration = Duration::from_secs(60);

impl PodWorker {
    pub fn new(
        ctx: Arc<Ctx>,
        pod: Arc<Pod>,
        updates: watch::Receiver<PodUpdate>,
        wake: Arc<Notify>,
        volumes_dirty: Arc<AtomicBool>,
        adopted: Adopted,
    ) -> PodWorker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut instances: Vec<Instance> = adopted
            .containers
            .into_iter()
            .map(Instance::from_status)
            .collect();
        sort_instances(&mut instances);
        let as_pod_sandbox = |s: &Sandbox| PodSandbox {
            id: s.id.clone(),
            ips: Vec::new(),
            netns: s.netns_path.clone(),
        };
        let sandbox = adopted
            .sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .max_by_key(|s| labels::number(&s.config.labels, labels::SANDBOX_ATTEMPT))
            .map(as_pod_sandbox);
        let stopped_sandboxes: Vec<PodSandbox> = adopted
            .sandboxes
            .iter()
            .filter(|s| sandbox.as_ref().is_none_or(|k| k.id != s.id))
            .map(as_pod_sandbox)
            .collect();
        let next_sandbox_attempt = adopted
            .sandboxes
            .iter()
            .map(|s| labels::number(&s.config.labels, labels::SANDBOX_ATTEMPT) + 1)
            .max()
            .unwrap_or(0);
        let old_status = pod.status.clone().unwrap_or_default();
        let mut was_ready = HashMap::new();
        for cs in old_status
            .container_statuses
            .iter()
            .flatten()
            .chain(old_status.init_container_statuses.iter().flatten())
        {
            if let Some(id) = cs
                .container_id
                .as_deref()
                .and_then(|i| i.split("://").nth(1))
            {
                was_ready.insert(id.to_string(), cs.ready);
            }
        }
        let terminal = match old_status.phase.as_deref() {
            Some(p @ ("Succeeded" | "Failed")) => Some((
                p.to_string(),
                old_status.reason.clone(),
                old_status.message.clone(),
            )),
            _ => None,
        };
        if !instances.is_empty() {
            // Adopted after a restart: the API already has this status.
            ctx.status.seed(&uid, old_status.clone());
        }
        PodWorker {
            ctx,
            uid,
            start_time: old_status.start_time.clone(),
            pod,
            updates,
            wake,
            volumes_dirty,
            sandbox,
            instances,
            backoff: Backoff::crash_loop(),
            probers: HashMap::new(),
            waiting: HashMap::new(),
            volumes: HashMap::new(),
            mount_errors: Vec::new(),
            volumes_due: true,
            volumes_synced: None,
            terminal,
            was_ready,
            next_wake: None,
            next_sandbox_attempt,
            last_ips: Vec::new(),
            stopped_sandboxes,
            adopted_probers: true,
        }
    }

    pub fn name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or("")
        )
    }

    /// Runs the worker until the pod is gone and cleaned up.
    pub async fn run(mut self) {
        loop {
            let update = self.updates.borrow_and_update().clone();
            let pod = match update {
                Some(p) => p,
                None => {
                    // Gone from the API without us finishing it (force deletion).
                    self.terminate(Duration::from_secs(2), false).await;
                    return;
                }
            };
            self.pod = pod;
            if self.pod.metadata.deletion_timestamp.is_some() {
                let grace = self
                    .pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or_else(|| {
                        self.pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                    })
                    .unwrap_or(30)
                    .max(0) as u64;
                self.terminate(Duration::from_secs(grace), true).await;
                return;
            }
            if let Err(e) = self.sync().await {
                tracing::warn!(pod = %self.name(), error = %e, "pod sync failed");
                self.next_wake = Some(Instant::now() + Duration::from_secs(1));
            }
            let any_running = self.instances.iter().any(|i| !i.finished());
            let relist = (any_running || self.terminal.is_none()).then(|| Instant::now() + RELIST);
            let volume_resync = self
                .volumes_synced
                .map(|t| t + VOLUME_RESYNC)
                .filter(|_| self.terminal.is_none());
            let deadline = [relist, self.next_wake.take(), volume_resync]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                r = self.updates.changed() => if r.is_err() {
                    // The kubelet is shutting down; containers keep running.
                    return;
                },
                _ = self.wake.notified() => {}
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if volume_resync.is_some_and(|v| Instant::now() >= v) {
                        self.volumes_due = true;
                    }
                }
            }
        }
    }

    fn spec_containers(&self) -> (Vec<Container>, Vec<Container>) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        (spec.init_containers.unwrap_or_default(), spec.containers)
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// The newest instance of a container.
    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The instance before the newest.
    pub fn previous(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().filter(|i| i.name == name).nth(1)
    }

    /// Re-reads the runtime state of instances that may have changed; an instance
    /// that stopped loses its probers and gets its termination message read.
    async fn refresh_instances(&mut self) {
        let mut changed = false;
        for i in self.instances.iter_mut() {
            if i.finished() && i.message.is_some() {
                continue;
            }
            if let Ok(st) = self.ctx.runtime.container_status(&i.id).await {
                if st.state != i.st.state {
                    changed = true;
                }
                i.st = st;
            }
            if i.finished() && i.message.is_none() {
                i.message = Some(start::termination_message(&self.pod, i));
            }
        }
        let stopped: Vec<String> = self
            .instances
            .iter()
            .filter(|i| i.finished())
            .map(|i| i.id.clone())
            .collect();
        for id in stopped {
            if let Some(handles) = self.probers.remove(&id) {
                for h in handles {
                    h.abort();
                }
            }
        }
        if changed {
            sort_instances(&mut self.instances);
        }
    }

    /// One pass towards the spec; writes the status at the end.
    async fn sync(&mut self) -> Result<(), crate::kubelet::KubeletError> {
        self.refresh_instances().await;
        if self.start_time.is_none() {
            self.start_time = Some(Time(Timestamp::now()));
        }
        if self.terminal.is_none() {
            self.check_active_deadline();
        }
        if self.terminal.is_some() {
            self.stop_everything().await;
            self.publish();
            return Ok(());
        }
        if !self.stopped_sandboxes.is_empty() {
            // Left over from before a restart: the pod runs in one sandbox only.
            for sb in std::mem::take(&mut self.stopped_sandboxes) {
                self.remove_sandbox(&sb).await;
            }
        }
        self.ensure_sandbox().await?;
        if self.adopted_probers {
            self.adopted_probers = false;
            self.restart_adopted_probers();
        }
        if self.volumes_dirty.swap(false, Ordering::SeqCst) {
            self.volumes_due = true;
        }
        if self.volumes_due || self.volumes_synced.is_none() {
            self.sync_volumes().await;
        }
        if self.sandbox.is_some() && self.mount_errors.is_empty() {
            self.sync_containers().await;
        }
        self.gc_instances().await;
        // Containers started in this pass get theirs before their first status.
        self.resolve_image_ids().await;
        self.publish();
        Ok(())
    }

    fn check_active_deadline(&mut self) {
        let Some(deadline) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
        else {
            return;
        };
        let Some(start) = &self.start_time else {
            return;
        };
        let age = Timestamp::now().as_second() - start.0.as_second();
        if age >= deadline {
            self.ctx.events.pod(
                &self.pod,
                None,
                EventType::Normal,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            );
            self.terminal = Some((
                "Failed".into(),
                Some("DeadlineExceeded".into()),
                Some("Pod was active on the node longer than the specified deadline".into()),
            ));
        }
    }

    /// Makes sure the pod has a ready sandbox with its network set up.
    async fn ensure_sandbox(&mut self) -> Result<(), crate::kubelet::KubeletError> {
        if let Some(sb) = &self.sandbox {
            let alive = match self.ctx.runtime.pod_sandbox_status(&sb.id).await {
                Ok(s) => s.state == SandboxState::Ready,
                Err(_) => false,
            };
            if alive {
                if sb.ips.is_empty() {
                    // Adopted: the pod network hands back the same address.
                    let sb = sb.clone();
                    let ips = self.setup_network(&sb).await?;
                    if let Some(s) = &mut self.sandbox {
                        s.ips = ips;
                    }
                }
                return Ok(());
            }
            tracing::info!(pod = %self.name(), sandbox = %sb.id, "sandbox is gone; making a new one");
            let old = sb.clone();
            self.remove_sandbox(&old).await;
        }
        // A new sandbox: every container starts again inside it.
        let running: Vec<Instance> = self
            .instances
            .iter()
            .filter(|i| !i.finished())
            .cloned()
            .collect();
        for i in running {
            self.kill_instance(&i, Duration::from_secs(2), None).await;
        }
        let attempt = self.next_sandbox_attempt;
        self.next_sandbox_attempt += 1;
        let pod = self.pod.clone();
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let mut sb_labels = labels::pod_labels(&pod);
        sb_labels.insert(labels::SANDBOX_ATTEMPT.into(), attempt.to_string());
        let config = SandboxConfig {
            name: format!(
                "{}_{}_{}_{attempt}",
                pod.metadata.name.as_deref().unwrap_or(""),
                pod.metadata.namespace.as_deref().unwrap_or(""),
                self.uid
            ),
            hostname: crate::hosts::uts_hostname(&pod, &self.ctx.config.cluster_domain),
            dns: Some(crate::dns::pod_dns(&pod, &self.ctx.dns)),
            hosts: Vec::new(),
            host_network,
            shm_size: 0,
            labels: sb_labels,
        };
        let created = self
            .ctx
            .runtime
            .run_pod_sandbox(config)
            .await
            .map_err(|e| {
                self.ctx.events.pod(
                    &pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                );
                crate::kubelet::KubeletError::Runtime(e)
            })?;
        let sb = PodSandbox {
            id: created.id.clone(),
            ips: Vec::new(),
            netns: created.netns_path.clone(),
        };
        match self.setup_network(&sb).await {
            Ok(ips) => {
                self.sandbox = Some(PodSandbox { ips, ..sb });
                self.volumes_due = true;
                Ok(())
            }
            Err(e) => {
                self.ctx.events.pod(
                    &pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                );
                self.remove_sandbox(&sb).await;
                Err(e)
            }
        }
    }

    /// Wires the sandbox to the pod network (or the host's) and writes /etc/hosts.
    async fn setup_network(
        &self,
        sb: &PodSandbox,
    ) -> Result<Vec<Ipv4Addr>, crate::kubelet::KubeletError> {
        let ips = match &sb.netns {
            Some(ns) => {
                let ip = self.ctx.network.setup(&sb.id, ns).await?;
                vec![ip.ip]
            }
            None => vec![self.ctx.config.node_ip],
        };
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let hosts = if host_network {
            let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            crate::hosts::host_network_hosts_file(&self.pod, &node)
        } else {
            crate::hosts::pod_hosts_file(&self.pod, &ips, &self.ctx.config.cluster_domain)
        };
        let dir = self.ctx.volumes.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir).map_err(|e| crate::kubelet::KubeletError::Io {
            what: format!("creating {}", dir.display()),
            source: e,
        })?;
        let path = dir.join("etc-hosts");
        std::fs::write(&path, hosts).map_err(|e| crate::kubelet::KubeletError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })?;
        Ok(ips)
    }

    pub(crate) async fn remove_sandbox(&mut self, sb: &PodSandbox) {
        if sb.netns.is_some()
            && let Err(e) = self.ctx.network.teardown(&sb.id).await
        {
            tracing::warn!(pod = %self.name(), error = %e, "pod network teardown failed");
        }
        if let Err(e) = self.ctx.runtime.remove_pod_sandbox(&sb.id).await {
            tracing::warn!(pod = %self.name(), error = %e, "removing the sandbox failed");
        }
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|i| i.sandbox_id.as_deref() == Some(sb.id.as_str()))
            .map(|i| i.id.clone())
            .collect();
        for id in &gone {
            self.ctx.probes.forget(id);
        }
        // The runtime removed the sandbox's containers; their last state is kept
        // only as far as the status needs (the newest instance of each name).
        let mut seen = std::collections::HashSet::new();
        self.instances
            .retain(|i| !gone.contains(&i.id) || seen.insert(i.name.clone()));
        for i in self.instances.iter_mut() {
            if gone.contains(&i.id) && !i.finished() {
                i.st.state = ContainerState::Unknown;
            }
        }
        self.sandbox = self.sandbox.take().filter(|s| s.id != sb.id);
    }

    /// Probers for containers that ran before the kubelet restarted; initial delays
    /// count from when the container really started.
    fn restart_adopted_probers(&mut self) {
        let running: Vec<Instance> = self
            .instances
            .iter()
            .filter(|i| i.running())
            .cloned()
            .collect();
        for i in running {
            let Some(c) = self.container_spec(&i.name) else {
                continue;
            };
            let age =
                i.st.started_at
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .and_then(|t| Timestamp::now().duration_since(t).try_into().ok())
                    .unwrap_or(Duration::ZERO);
            let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            self.start_probers(&c, &i, started);
        }
    }

    /// Looks up the `repo@digest` image IDs of instances that lack one.
    async fn resolve_image_ids(&mut self) {
        for i in self.instances.iter_mut().filter(|i| i.image_id.is_none()) {
            let id = i.st.image_id.to_string();
            let found = self.ctx.runtime.image_status(&id).await.ok().flatten();
            i.image_id = Some(
                found
                    .and_then(|img| img.repo_digests.first().cloned())
                    .unwrap_or(id),
            );
        }
    }

    /// Sets up (or refreshes) the pod's volumes.
    async fn sync_volumes(&mut self) {
        let facts = self.facts();
        let (vols, failures) = self.ctx.volumes.setup(&self.pod, &facts).await;
        self.volumes = vols;
        self.mount_errors = failures.iter().map(|f| f.to_string()).collect();
        for f in &failures {
            self.ctx.events.pod(
                &self.pod,
                None,
                EventType::Warning,
                "FailedMount",
                &f.to_string(),
            );
        }
        self.volumes_due = false;
        self.volumes_synced = Some(Instant::now());
        if !failures.is_empty() {
            // Retried soon, as upstream's volume manager does.
            self.volumes_due = true;
            self.wake_at(Instant::now() + Duration::from_secs(2));
        }
    }

    pub(crate) fn facts(&self) -> crate::fieldpath::PodFacts {
        let r = &self.ctx.resources;
        crate::fieldpath::PodFacts {
            pod_ips: self
                .sandbox
                .as_ref()
                .map(|s| s.ips.clone())
                .unwrap_or_default(),
            host_ip: Some(self.ctx.config.node_ip),
            node_cpu_milli: r.cpu_milli,
            node_memory: r.allocatable_memory,
            node_ephemeral_storage: r.allocatable_ephemeral_storage,
        }
    }

    pub(crate) fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    /// Whether a finished container is started again under the restart policy.
    fn should_restart(&self, c: &Container, i: &Instance) -> bool {
        if is_sidecar(c) {
            return true;
        }
        match self.restart_policy().as_str() {
            "Always" => true,
            "OnFailure" => i.exit_code() != 0,
            _ => false,
        }
    }

    fn backoff_key(&self, c: &Container) -> String {
        format!("{}/{}", c.name, labels::container_hash(c))
    }

    /// Starts `c` unless its back-off says wait; true if it runs now.
    async fn start_or_back_off(&mut self, c: &Container, init: bool) -> bool {
        if let Some(last) = self.latest(&c.name).filter(|i| i.finished()).cloned() {
            let key = self.backoff_key(c);
            let finished = last.finished_at();
            if let Some((left, delay)) = self.backoff.wait_left(&key, finished, Timestamp::now()) {
                let msg = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    go_duration(delay),
                    c.name,
                    self.pod.metadata.name.as_deref().unwrap_or(""),
                    self.pod.metadata.namespace.as_deref().unwrap_or(""),
                    self.uid
                );
                if self.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    self.ctx.events.pod(
                        &self.pod,
                        Some(&c.name),
                        EventType::Warning,
                        "BackOff",
                        &format!(
                            "Back-off restarting failed container {} in pod {}_{}({})",
                            c.name,
                            self.pod.metadata.name.as_deref().unwrap_or(""),
                            self.pod.metadata.namespace.as_deref().unwrap_or(""),
                            self.uid
                        ),
                    );
                }
                self.waiting
                    .insert(c.name.clone(), ("CrashLoopBackOff".into(), msg));
                self.wake_at(Instant::now() + left);
                return false;
            }
            self.backoff.next(&key, finished);
        }
        self.start_container(c, init).await
    }

    /// Init containers in order, then the regular containers.
    async fn sync_containers(&mut self) {
        let (inits, regular) = self.spec_containers();
        // Init containers: each must finish (sidecars: start) before the next.
        for c in &inits {
            let latest = self.latest(&c.name).cloned();
            if is_sidecar(c) {
                match latest {
                    Some(i) if i.running() => {
                        if self.probe_failed(&i, ProbeKind::Startup)
                            || self.probe_failed(&i, ProbeKind::Liveness)
                        {
                            self.kill_for_probe(&i).await;
                            self.start_or_back_off(c, true).await;
                            return;
                        }
                        if !self.container_started(&i) {
                            return;
                        }
                    }
                    _ => {
                        self.start_or_back_off(c, true).await;
                        return;
                    }
                }
                continue;
            }
            match latest {
                Some(i) if i.running() => return,
                Some(i) if i.finished() && i.exit_code() == 0 => continue,
                Some(i) if i.finished() => {
                    if self.restart_policy() == "Never" {
                        self.terminal = Some(("Failed".into(), None, None));
                        return;
                    }
                    self.start_or_back_off(c, true).await;
                    return;
                }
                _ => {
                    self.start_or_back_off(c, true).await;
                    return;
                }
            }
        }
        for c in &regular {
            let latest = self.latest(&c.name).cloned();
            match latest {
                Some(i) if i.running() => {
                    if self.probe_failed(&i, ProbeKind::Startup)
                        || self.probe_failed(&i, ProbeKind::Liveness)
                    {
                        self.kill_for_probe(&i).await;
                    } else if !i.hash.is_empty() && i.hash != labels::container_hash(c) {
                        let msg =
                            format!("Container {} definition changed, will be restarted", c.name);
                        self.kill_instance(&i, self.grace(), Some(&msg)).await;
                    } else {
                        continue;
                    }
                    let Some(i) = self.latest(&c.name).cloned() else {
                        continue;
                    };
                    if self.should_restart(c, &i) {
                        self.start_or_back_off(c, false).await;
                    }
                }
                Some(i) if i.finished() => {
                    if self.should_restart(c, &i) {
                        self.start_or_back_off(c, false).await;
                    }
                }
                Some(_) => {}
                None => {
                    self.start_container(c, false).await;
                }
            }
        }
        // With nothing left to run, the pod is done (sidecars are stopped then).
        let policy = self.restart_policy();
        if policy != "Always"
            && !regular.is_empty()
            && regular.iter().all(|c| {
                self.latest(&c.name)
                    .is_some_and(|i| i.finished() && !self.should_restart(c, i))
            })
        {
            let all_ok = regular
                .iter()
                .all(|c| self.latest(&c.name).is_some_and(|i| i.exit_code() == 0));
            let phase = if all_ok { "Succeeded" } else { "Failed" };
            self.terminal = Some((phase.into(), None, None));
            self.stop_everything().await;
        }
    }

    fn probe_failed(&self, i: &Instance, kind: ProbeKind) -> bool {
        self.ctx.probes.get(&i.id, kind) == Some(ProbeResult::Failure)
    }

    /// Running, and its startup probe (if any) passed.
    pub(crate) fn container_started(&self, i: &Instance) -> bool {
        i.running()
            && !matches!(
                self.ctx.probes.get(&i.id, ProbeKind::Startup),
                Some(ProbeResult::Unknown | ProbeResult::Failure)
            )
    }

    async fn kill_for_probe(&mut self, i: &Instance) {
        let kind = if self.probe_failed(i, ProbeKind::Startup) {
            ProbeKind::Startup
        } else {
            ProbeKind::Liveness
        };
        let (word, probe) = {
            let c = self.container_spec(&i.name);
            match kind {
                ProbeKind::Startup => ("startup", c.and_then(|c| c.startup_probe)),
                _ => ("liveness", c.and_then(|c| c.liveness_probe)),
            }
        };
        let grace = probe
            .and_then(|p| p.termination_grace_period_seconds)
            .map(|g| Duration::from_secs(g.max(0) as u64))
            .unwrap_or_else(|| self.grace());
        let msg = format!(
            "Container {} failed {word} probe, will be restarted",
            i.name
        );
        self.kill_instance(i, grace, Some(&msg)).await;
    }

    pub(crate) fn container_spec(&self, name: &str) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
    }

    /// The pod's termination grace period.
    pub(crate) fn grace(&self) -> Duration {
        Duration::from_secs(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64,
        )
    }

    /// Removes old instances: the newest two of each container are kept (the
    /// current one and the previous, for `lastState` and `logs --previous`).
    async fn gc_instances(&mut self) {
        let mut per_name: HashMap<String, usize> = HashMap::new();
        let mut doomed = Vec::new();
        for i in &self.instances {
            let n = per_name.entry(i.name.clone()).or_default();
            *n += 1;
            if *n > 2 && i.finished() {
                doomed.push(i.clone());
            }
        }
        for i in doomed {
            let _ = self.ctx.runtime.remove_container(&i.id).await;
            let _ = std::fs::remove_file(&i.st.log_path);
            self.ctx.probes.forget(&i.id);
            self.instances.retain(|x| x.id != i.id);
        }
    }
}

/// Newest first per name: by attempt, then creation time.
pub(crate) fn sort_instances(v: &mut [Instance]) {
    v.sort_by(|a, b| {
        b.attempt
            .cmp(&a.attempt)
            .then_with(|| b.st.created_at.cmp(&a.st.created_at))
    });
}
