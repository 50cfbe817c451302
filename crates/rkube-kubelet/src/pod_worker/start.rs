//! Starting and killing one container of a pod: image, environment, mounts, security
//! settings and cgroup limits become the runtime's `ContainerConfig`; then the
//! postStart hook and the probers. Killing runs the preStop hook within the grace
//! period first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Secret};
use rkube_runtime::{Capabilities, ContainerConfig, Mount, UserConfig};
use tokio::time::Instant;

use super::{Instance, PodWorker, labels};
use crate::env::{self, ConfigError};
use crate::events::EventType;
use crate::handlers::{self, Outcome, Target};
use crate::images::{self, PullOutcome};
use crate::probes::{self, ProbeContext};
use crate::status::is_sidecar;

/// Upstream's cap on termination messages.
const MAX_MESSAGE: usize = 4096;

/// The termination message of a stopped instance: its termination-log file, or the
/// end of its log when the policy is FallbackToLogsOnError and it failed.
pub(crate) fn termination_message(pod: &Pod, i: &Instance) -> String {
    let file =
        i.st.labels
            .get(labels::TERMINATION_LOG)
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
    let mut msg = String::from_utf8_lossy(&file[..file.len().min(MAX_MESSAGE)]).into_owned();
    let policy = pod
        .spec
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == i.name)
        .and_then(|c| c.termination_message_policy.clone());
    if msg.is_empty() && policy.as_deref() == Some("FallbackToLogsOnError") && i.exit_code() != 0 {
        msg = log_tail(&i.st.log_path, 80, 2048);
    }
    msg
}

/// The last `lines` lines (at most `bytes`) of a CRI log, as the container wrote them.
fn log_tail(path: &std::path::Path, lines: usize, bytes: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let mut out: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    let start = out.len().saturating_sub(lines);
    out.drain(..start);
    let joined = out.join("\n");
    let cut = joined.len().saturating_sub(bytes);
    let mut cut = cut;
    while !joined.is_char_boundary(cut) {
        cut += 1;
    }
    joined[cut..].to_string()
}

fn run_as_user(pod: &Pod, c: &Container) -> UserConfig {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let uid = csc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user))
        .map(|u| u as u32);
    let gid = csc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group))
        .map(|g| g as u32);
    let mut groups: Vec<u32> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = psc.and_then(|s| s.fs_group) {
        groups.push(fs as u32);
    }
    UserConfig {
        uid,
        gid,
        supplemental_groups: groups,
    }
}

fn run_as_non_root(pod: &Pod, c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.run_as_non_root)
        })
        .unwrap_or(false)
}

impl PodWorker {
    fn log_path(&self, name: &str, attempt: u32) -> PathBuf {
        self.ctx
            .config
            .pod_log_dir
            .join(format!(
                "{}_{}_{}",
                self.pod.metadata.namespace.as_deref().unwrap_or(""),
                self.pod.metadata.name.as_deref().unwrap_or(""),
                self.uid
            ))
            .join(name)
            .join(format!("{attempt}.log"))
    }

    async fn pull_secrets(&self) -> Vec<Secret> {
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut out = Vec::new();
        for r in self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
        {
            if let Ok(Some(s)) = self.ctx.objects.secret(ns, &r.name).await {
                out.push((*s).clone());
            }
        }
        out
    }

    fn fail_waiting(&mut self, c: &Container, reason: &str, message: String, event: bool) {
        if event {
            self.ctx.events.pod(
                &self.pod,
                Some(&c.name),
                EventType::Warning,
                "Failed",
                &format!("Error: {message}"),
            );
        }
        self.waiting
            .insert(c.name.clone(), (reason.to_string(), message));
        // Retried on a later pass; configuration errors may be fixed any moment.
        self.wake_at(Instant::now() + Duration::from_secs(2));
    }

    /// Pulls, creates and starts container `c`; true if it runs.
    pub(crate) async fn start_container(&mut self, c: &Container, init: bool) -> bool {
        let pod = self.pod.clone();
        let Some(sb) = self.sandbox.clone() else {
            return false;
        };
        // Image.
        let policy = images::pull_policy(
            c.image.as_deref().unwrap_or(""),
            c.image_pull_policy.as_deref(),
        );
        let image = c.image.clone().unwrap_or_default();
        let creds = images::credentials_for(&image, &self.pull_secrets().await);
        let needs_pull = policy == "Always"
            || (policy == "IfNotPresent"
                && !matches!(self.ctx.runtime.image_status(&image).await, Ok(Some(_))));
        if needs_pull {
            self.ctx.events.pod(
                &pod,
                Some(&c.name),
                EventType::Normal,
                "Pulling",
                &format!("Pulling image \"{image}\""),
            );
        }
        let key = self.uid.clone();
        let pulled = self.ctx.images.ensure(&key, &image, &policy, &creds).await;
        let img = match pulled {
            Ok((img, outcome)) => {
                let msg = match outcome {
                    PullOutcome::Present => {
                        format!("Container image \"{image}\" already present on machine")
                    }
                    PullOutcome::Pulled { took, size } => format!(
                        "Successfully pulled image \"{image}\" in {:.3}s. Image size: {size} bytes.",
                        took.as_secs_f64()
                    ),
                };
                self.ctx
                    .events
                    .pod(&pod, Some(&c.name), EventType::Normal, "Pulled", &msg);
                img
            }
            Err(e) => {
                let backing_off = matches!(e, images::ImagePullError::ImagePullBackOff(_));
                let reason = if backing_off { "BackOff" } else { "Failed" };
                self.ctx.events.pod(
                    &pod,
                    Some(&c.name),
                    if backing_off {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    },
                    reason,
                    &e.to_string(),
                );
                let r = e.reason().to_string();
                self.fail_waiting(c, &r, e.to_string(), false);
                return false;
            }
        };
        // Environment and mounts.
        let facts = self.facts();
        let services = self.service_env_sources();
        let env = match env::container_env(&pod, c, &self.ctx.objects, &facts, &services).await {
            Ok(e) => e,
            Err(ConfigError(m)) => {
                self.fail_waiting(c, "CreateContainerConfigError", m, true);
                return false;
            }
        };
        if run_as_non_root(&pod, c) {
            let uid = run_as_user(&pod, c).uid;
            let image_user = img.config.user.split(':').next().unwrap_or("").to_string();
            let root = match uid {
                Some(u) => u == 0,
                None => image_user.is_empty() || image_user == "0" || image_user == "root",
            };
            if root {
                self.fail_waiting(
                    c,
                    "CreateContainerConfigError",
                    "container has runAsNonRoot and image will run as root".into(),
                    true,
                );
                return false;
            }
        }
        let mut mounts = match crate::volumes::mounts::container_mounts(c, &self.volumes, &env) {
            Ok(m) => m,
            Err(ConfigError(m)) => {
                self.fail_waiting(c, "CreateContainerConfigError", m, true);
                return false;
            }
        };
        let pod_dir = self.ctx.volumes.pod_dir(&self.uid);
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(Mount {
                host_path: pod_dir.join("etc-hosts"),
                container_path: "/etc/hosts".into(),
                read_only: false,
            });
        }
        let attempt = self.latest(&c.name).map_or(0, |i| i.attempt + 1);
        let termination_log = pod_dir
            .join("containers")
            .join(&c.name)
            .join(format!("{:08x}", rand::random::<u32>()));
        let mut cl = labels::pod_labels(&pod);
        cl.insert(labels::CONTAINER_NAME.into(), c.name.clone());
        cl.insert(labels::RESTART_COUNT.into(), attempt.to_string());
        cl.insert(labels::CONTAINER_HASH.into(), labels::container_hash(c));
        cl.insert(
            labels::CONTAINER_TYPE.into(),
            if is_sidecar(c) {
                "sidecar"
            } else if init {
                "init"
            } else {
                "regular"
            }
            .into(),
        );
        cl.insert(
            labels::TERMINATION_LOG.into(),
            termination_log.display().to_string(),
        );
        let sc = c.security_context.clone().unwrap_or_default();
        let caps = sc.capabilities.clone().unwrap_or_default();
        let config = ContainerConfig {
            name: c.name.clone(),
            image: image.clone(),
            command: env::expand_command(c.command.as_deref().unwrap_or_default(), &env),
            args: env::expand_command(c.args.as_deref().unwrap_or_default(), &env),
            env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            user: run_as_user(&pod, c),
            mounts,
            termination_log: Some(termination_log),
            termination_message_path: Some(
                c.termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
            ),
            read_only_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
            privileged: sc.privileged.unwrap_or(false),
            capabilities: Capabilities {
                add: caps.add.unwrap_or_default(),
                drop: caps.drop.unwrap_or_default(),
            },
            no_new_privs: sc.allow_privilege_escalation == Some(false),
            resources: crate::qos::container_resources(&pod, c, self.ctx.resources.memory),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            log_path: Some(self.log_path(&c.name, attempt)),
            labels: cl,
        };
        if let Some(dir) = config.log_path.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let id = match self
            .ctx
            .runtime
            .create_container(Some(&sb.id), config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.fail_waiting(c, "CreateContainerError", e.to_string(), true);
                return false;
            }
        };
        self.ctx.events.pod(
            &pod,
            Some(&c.name),
            EventType::Normal,
            "Created",
            &format!("Created container: {}", c.name),
        );
        self.waiting.remove(&c.name);
        let started = self.ctx.runtime.start_container(&id).await;
        let st = match self.ctx.runtime.container_status(&id).await {
            Ok(st) => st,
            Err(e) => {
                self.fail_waiting(c, "RunContainerError", e.to_string(), true);
                return false;
            }
        };
        let mut inst = super::Instance::from_status(st);
        if let Err(e) = started {
            let msg = e.to_string();
            self.ctx.events.pod(
                &pod,
                Some(&c.name),
                EventType::Warning,
                "Failed",
                &format!("Error: {msg}"),
            );
            inst.start_error = Some(msg.clone());
            inst.message = Some(msg);
            self.instances.insert(0, inst);
            super::sort_instances(&mut self.instances);
            return false;
        }
        self.ctx.events.pod(
            &pod,
            Some(&c.name),
            EventType::Normal,
            "Started",
            &format!("Started container {}", c.name),
        );
        self.instances.insert(0, inst.clone());
        super::sort_instances(&mut self.instances);
        self.start_probers(c, &inst, Instant::now());
        // postStart runs before the next container starts, as upstream.
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let target = self.target(c, &inst.id);
            if let Outcome::Failure(msg) = run_hook(&h, &target, None).await {
                let text = format!("PostStartHook failed: {msg}");
                self.ctx.events.pod(
                    &pod,
                    Some(&c.name),
                    EventType::Warning,
                    "FailedPostStartHook",
                    &text,
                );
                self.kill_instance(&inst, self.grace(), Some(&text)).await;
                return false;
            }
        }
        true
    }

    /// Services whose variables containers get: the pod's namespace (with
    /// `enableServiceLinks`) and the `kubernetes` Service.
    fn service_env_sources(&self) -> Vec<Arc<k8s_openapi::api::core::v1::Service>> {
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut out: Vec<_> = if links {
            self.ctx.objects.services_in(ns)
        } else {
            Vec::new()
        };
        if ns != "default" || !links {
            out.extend(
                self.ctx
                    .objects
                    .services_in("default")
                    .into_iter()
                    .filter(|s| s.metadata.name.as_deref() == Some("kubernetes")),
            );
        }
        out
    }

    pub(crate) fn target(&self, c: &Container, container_id: &str) -> Target {
        let ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().copied())
            .unwrap_or(self.ctx.config.node_ip);
        Target {
            ip: ip.into(),
            container_id: container_id.to_string(),
            container: c.clone(),
            runtime: self.ctx.runtime.clone(),
        }
    }

    pub(crate) fn start_probers(&mut self, c: &Container, i: &Instance, started: Instant) {
        if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
            return;
        }
        let ctx = ProbeContext {
            target: self.target(c, &i.id),
            pod: self.pod.clone(),
            results: self.ctx.probes.clone(),
            wake: self.wake.clone(),
            events: self.ctx.events.clone(),
            started,
            was_ready: self.was_ready.get(&i.id).copied().unwrap_or(false),
        };
        let handles = probes::start(ctx);
        self.probers.insert(i.id.clone(), handles);
    }

    /// Stops a running instance: preStop within the grace period, then the stop
    /// signal, then SIGKILL when the grace period is over.
    pub(crate) async fn kill_instance(
        &mut self,
        i: &Instance,
        grace: Duration,
        message: Option<&str>,
    ) {
        let pod = self.pod.clone();
        let msg = message
            .map(str::to_string)
            .unwrap_or_else(|| format!("Stopping container {}", i.name));
        self.ctx
            .events
            .pod(&pod, Some(&i.name), EventType::Normal, "Killing", &msg);
        if let Some(handles) = self.probers.remove(&i.id) {
            for h in handles {
                h.abort();
            }
        }
        let left = match self.container_spec(&i.name) {
            Some(c) if i.running() => {
                let target = self.target(&c, &i.id);
                pre_stop(&self.ctx.events, &pod, &c, &target, grace).await
            }
            _ => grace,
        };
        if let Err(e) = self.ctx.runtime.stop_container(&i.id, left).await {
            tracing::warn!(pod = %self.name(), container = %i.name, error = %e, "stopping a container failed");
        }
        if let Ok(st) = self.ctx.runtime.container_status(&i.id).await
            && let Some(x) = self.instances.iter_mut().find(|x| x.id == i.id)
        {
            x.st = st;
            if x.finished() && x.message.is_none() {
                x.message = Some(termination_message(&pod, x));
            }
        }
    }
}

/// Runs the container's preStop hook (if any) within `grace`; what is left of the
/// grace period for the stop signal (at least 2 s after a hook, as upstream).
pub(crate) async fn pre_stop(
    events: &crate::events::EventRecorder,
    pod: &Pod,
    c: &Container,
    target: &Target,
    grace: Duration,
) -> Duration {
    let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
        return grace;
    };
    let started = std::time::Instant::now();
    if let Outcome::Failure(m) = run_hook(&h, target, Some(grace)).await {
        events.pod(
            pod,
            Some(&c.name),
            EventType::Warning,
            "FailedPreStopHook",
            &format!("PreStopHook failed: {m}"),
        );
    }
    grace
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(2))
}

/// Runs a lifecycle hook (exec, httpGet, sleep); `budget` bounds it (preStop).
pub(crate) async fn run_hook(
    h: &LifecycleHandler,
    t: &Target,
    budget: Option<Duration>,
) -> Outcome {
    // Hooks have no timeout of their own; a generous one keeps a hung hook from
    // blocking the pod forever.
    let timeout = budget.unwrap_or(Duration::from_secs(120));
    let run = async {
        if let Some(a) = &h.exec {
            handlers::exec(a.command.as_deref().unwrap_or_default(), t, timeout).await
        } else if let Some(a) = &h.http_get {
            handlers::http_get(a, t, timeout).await
        } else if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            Outcome::Success
        } else if let Some(a) = &h.tcp_socket {
            handlers::tcp_socket(a, t, timeout).await
        } else {
            Outcome::Success
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(o) => o,
        Err(_) => Outcome::Failure(format!("hook did not finish within {}s", timeout.as_secs())),
    }
}
