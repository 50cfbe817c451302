//! What a pod worker reports: the pod's status (to the status manager) and its
//! containers (to the registry the streaming server reads).

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Instance, PodWorker};
use crate::lookup::{ContainerRef, SandboxRef};
use crate::pod_registry::{ContainerEntry, PodEntry};
use crate::probes::{ProbeKind, ProbeResult};
use crate::status::{self, Conditions, is_sidecar};

/// The prefix of container IDs in statuses (`<runtime>://<id>`).
pub const CONTAINER_ID_SCHEME: &str = "rkube://";

fn time(rfc3339: Option<&str>) -> Option<Time> {
    rfc3339.and_then(|t| t.parse().ok()).map(Time)
}

fn terminated_state(i: &Instance) -> ContainerState {
    let (reason, exit_code) = if i.start_error.is_some() {
        ("StartError".to_string(), 128)
    } else if i.st.state == rkube_runtime::ContainerState::Unknown {
        ("ContainerStatusUnknown".to_string(), 137)
    } else {
        let r = if i.st.reason.is_empty() {
            "Error".to_string()
        } else {
            i.st.reason.clone()
        };
        (r, i.exit_code())
    };
    let message = i.message.clone().filter(|m| !m.is_empty()).or_else(|| {
        (i.st.state == rkube_runtime::ContainerState::Unknown)
            .then(|| "The container could not be located when the pod was terminated".to_string())
    });
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("{CONTAINER_ID_SCHEME}{}", i.id)),
            exit_code,
            reason: Some(reason),
            message,
            started_at: time(i.st.started_at.as_deref()),
            finished_at: time(i.st.finished_at.as_deref())
                .or_else(|| time(i.st.started_at.as_deref())),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

impl PodWorker {
    fn is_ready(&self, c: &Container, i: &Instance) -> bool {
        if !self.container_started(i) || self.terminal.is_some() {
            return false;
        }
        match c.readiness_probe {
            Some(_) => {
                self.ctx.probes.get(&i.id, ProbeKind::Readiness) == Some(ProbeResult::Success)
            }
            None => true,
        }
    }

    /// The status of one container. `blocked`: its turn has not come (regular
    /// containers while init containers run).
    fn container_status(&self, c: &Container, blocked: bool) -> ContainerStatus {
        let image = c.image.clone().unwrap_or_default();
        let waiting = self.waiting.get(&c.name);
        let Some(i) = self.latest(&c.name) else {
            let (reason, message) = match waiting {
                Some((r, m)) => (r.as_str(), Some(m.clone())),
                None if blocked => ("PodInitializing", None),
                None => ("ContainerCreating", None),
            };
            return status::waiting_status(&c.name, &image, reason, message);
        };
        let previous = self.previous(&c.name);
        let last_of = |p: Option<&Instance>| p.filter(|p| p.finished()).map(terminated_state);
        let (state, last_state) = if i.running() {
            let st = ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(i.st.started_at.as_deref()),
                }),
                ..Default::default()
            };
            (st, last_of(previous))
        } else if i.finished() {
            match waiting {
                // Waiting to run again (CrashLoopBackOff, an image error...).
                Some((r, m)) if self.terminal.is_none() => {
                    (waiting_state(r, Some(m.clone())), Some(terminated_state(i)))
                }
                _ => (terminated_state(i), last_of(previous)),
            }
        } else {
            (waiting_state("ContainerCreating", None), last_of(previous))
        };
        ContainerStatus {
            name: c.name.clone(),
            image: if i.st.image_ref.is_empty() {
                image
            } else {
                i.st.image_ref.clone()
            },
            image_id: i
                .image_id
                .clone()
                .unwrap_or_else(|| i.st.image_id.to_string()),
            container_id: Some(format!("{CONTAINER_ID_SCHEME}{}", i.id)),
            ready: i.running() && self.is_ready(c, i),
            started: Some(self.container_started(i)),
            restart_count: i.attempt as i32,
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        }
    }

    /// Computes the status, hands it to the status manager, and publishes the pod's
    /// containers for the streaming server.
    pub(crate) fn publish(&mut self) {
        let (inits, regular) = self.spec_containers();
        let pending_init: Vec<String> = inits
            .iter()
            .filter(|c| match self.latest(&c.name) {
                Some(i) if is_sidecar(c) => !self.container_started(i),
                Some(i) => !(i.finished() && i.exit_code() == 0),
                None => true,
            })
            .map(|c| c.name.clone())
            .collect();
        let regular_started = regular.iter().any(|c| self.latest(&c.name).is_some());
        let initialized = pending_init.is_empty() || regular_started;
        let init_statuses: Vec<ContainerStatus> = inits
            .iter()
            .map(|c| self.container_status(c, false))
            .collect();
        let statuses: Vec<ContainerStatus> = regular
            .iter()
            .map(|c| self.container_status(c, !initialized))
            .collect();
        let (phase, reason, message) = match &self.terminal {
            Some((p, r, m)) if !p.is_empty() => (p.clone(), r.clone(), m.clone()),
            Some((_, r, m)) => (
                status::phase(&self.pod, &init_statuses, &statuses, true).to_string(),
                r.clone(),
                m.clone(),
            ),
            None => (
                status::phase(&self.pod, &init_statuses, &statuses, false).to_string(),
                None,
                None,
            ),
        };
        if self.terminal.is_none() && (phase == "Succeeded" || phase == "Failed") {
            self.terminal = Some((phase.clone(), None, None));
        }
        let completed = phase == "Succeeded" || phase == "Failed";
        let mut not_ready: Vec<String> = inits
            .iter()
            .filter(|c| is_sidecar(c))
            .filter(|c| {
                init_statuses
                    .iter()
                    .find(|s| s.name == c.name)
                    .is_some_and(|s| !s.ready)
            })
            .map(|c| c.name.clone())
            .collect();
        not_ready.extend(statuses.iter().filter(|s| !s.ready).map(|s| s.name.clone()));
        let ips = match &self.sandbox {
            Some(sb) if !sb.ips.is_empty() => sb.ips.clone(),
            _ => self.last_ips.clone(),
        };
        let now = Time(jiff::Timestamp::now());
        let old = self.pod.status.clone();
        let conditions = status::conditions(
            &self.pod,
            old.as_ref(),
            &Conditions {
                sandbox_ready: self.sandbox.as_ref().is_some_and(|s| !s.ips.is_empty()),
                initialized,
                not_initialized: pending_init,
                not_ready,
                completed,
            },
            &now,
        );
        let host_ip = self.ctx.config.node_ip.to_string();
        let status = PodStatus {
            phase: Some(phase),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ip: ips.first().map(|i| i.to_string()),
            pod_ips: (!ips.is_empty())
                .then(|| ips.iter().map(|i| PodIP { ip: i.to_string() }).collect()),
            start_time: self.start_time.clone(),
            qos_class: Some(crate::qos::pod_qos(&self.pod).as_str().to_string()),
            init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
            container_statuses: Some(statuses),
            reason,
            message,
            nominated_node_name: old.as_ref().and_then(|o| o.nominated_node_name.clone()),
            ..Default::default()
        };
        self.ctx.status.set(&self.pod, status);
        self.publish_registry(&inits, &regular);
    }

    fn publish_registry(&self, inits: &[Container], regular: &[Container]) {
        let entry_for = |c: &Container| {
            let current = self.latest(&c.name).map(|i| ContainerRef {
                id: i.id.clone(),
                log_path: i.st.log_path.clone(),
                previous_log_path: self
                    .previous(&c.name)
                    .map(|p| p.st.log_path.clone())
                    .filter(|p| p.exists()),
                tty: c.tty.unwrap_or(false),
                stdin: c.stdin.unwrap_or(false),
            });
            ContainerEntry {
                name: c.name.clone(),
                running: self.latest(&c.name).is_some_and(|i| i.running()),
                current,
            }
        };
        let entry = PodEntry {
            uid: self.uid.clone(),
            sandbox: self.sandbox.as_ref().map(|sb| SandboxRef {
                id: sb.id.clone(),
                netns_path: sb
                    .netns
                    .clone()
                    .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/ns/net")),
            }),
            containers: inits.iter().chain(regular).map(entry_for).collect(),
            default_container: self
                .pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubectl.kubernetes.io/default-container").cloned()),
            regular: regular.iter().map(|c| c.name.clone()).collect(),
        };
        self.ctx.registry.publish(
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or(""),
            entry,
        );
    }
}
