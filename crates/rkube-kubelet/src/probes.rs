//! Liveness, readiness and startup probes: one prober task per probe of each running
//! container, honouring every timing field (initial delay, period, timeout, success
//! and failure thresholds). Results go to [`ProbeResults`]; a change wakes the pod's
//! worker, which marks the container ready or restarts it.
//!
//! As upstream: readiness starts as failed, liveness as passed, startup as unknown;
//! while a startup probe has not passed, the other two do not run; every failed run
//! records an `Unhealthy` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Probe};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::events::{EventRecorder, EventType};
use crate::handlers::{self, Outcome, Target};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Restarts the container when it fails.
    Liveness,
    /// Takes the container out of Service endpoints while it fails.
    Readiness,
    /// Holds the other probes until it passes; restarts the container when it fails.
    Startup,
}

impl ProbeKind {
    fn word(&self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// A probe's current verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Not decided yet.
    Unknown,
    /// Passed.
    Success,
    /// Failed `failureThreshold` times in a row.
    Failure,
}

/// The verdicts of every probe of every container, by container ID.
#[derive(Default)]
pub struct ProbeResults {
    inner: Mutex<HashMap<(String, ProbeKind), ProbeResult>>,
}

impl ProbeResults {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, ProbeKind), ProbeResult>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verdict, if the container has that probe.
    pub fn get(&self, container_id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        self.lock().get(&(container_id.to_string(), kind)).copied()
    }

    /// Sets a verdict; whether it changed.
    pub fn set(&self, container_id: &str, kind: ProbeKind, r: ProbeResult) -> bool {
        self.lock().insert((container_id.to_string(), kind), r) != Some(r)
    }

    /// Forgets a container.
    pub fn forget(&self, container_id: &str) {
        self.lock().retain(|(id, _), _| id != container_id);
    }
}

/// What a container's probers need.
pub struct ProbeContext {
    /// Where probes go.
    pub target: Target,
    /// The pod (events, termination grace).
    pub pod: Arc<Pod>,
    /// Where verdicts go.
    pub results: Arc<ProbeResults>,
    /// Woken when a verdict changes.
    pub wake: Arc<Notify>,
    /// Events.
    pub events: EventRecorder,
    /// When the container started (initial delays count from it).
    pub started: Instant,
    /// Readiness as it was before the kubelet restarted, for an adopted container.
    pub was_ready: bool,
}

/// Runs one probe action once.
pub async fn run_once(p: &Probe, target: &Target) -> Outcome {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(a) = &p.exec {
        handlers::exec(a.command.as_deref().unwrap_or_default(), target, timeout).await
    } else if let Some(a) = &p.http_get {
        handlers::http_get(a, target, timeout).await
    } else if let Some(a) = &p.tcp_socket {
        handlers::tcp_socket(a, target, timeout).await
    } else if let Some(a) = &p.grpc {
        handlers::grpc(a, target, timeout).await
    } else {
        Outcome::Failure("probe has no handler".into())
    }
}

/// Starts the probers of a running container; abort the handles to stop them.
pub fn start(ctx: ProbeContext) -> Vec<AbortHandle> {
    let ctx = Arc::new(ctx);
    let c = &ctx.target.container;
    let id = &ctx.target.container_id;
    let mut handles = Vec::new();
    let has_startup = c.startup_probe.is_some();
    for (kind, probe) in [
        (ProbeKind::Startup, c.startup_probe.clone()),
        (ProbeKind::Liveness, c.liveness_probe.clone()),
        (ProbeKind::Readiness, c.readiness_probe.clone()),
    ] {
        let Some(probe) = probe else { continue };
        let initial = match kind {
            ProbeKind::Readiness if ctx.was_ready => ProbeResult::Success,
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Startup => ProbeResult::Unknown,
        };
        if ctx.results.get(id, kind).is_none() {
            ctx.results.set(id, kind, initial);
        }
        let ctx = ctx.clone();
        let task = tokio::spawn(async move { prober(ctx, kind, probe, has_startup).await });
        handles.push(task.abort_handle());
    }
    handles
}

async fn prober(ctx: Arc<ProbeContext>, kind: ProbeKind, p: Probe, has_startup: bool) {
    let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
    let delay = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let success_threshold = p.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
    let id = ctx.target.container_id.clone();
    let name = ctx.target.container.name.clone();
    tokio::time::sleep_until(ctx.started + delay).await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        let started = ctx.results.get(&id, ProbeKind::Startup) == Some(ProbeResult::Success);
        if kind == ProbeKind::Startup && started {
            return;
        }
        if kind != ProbeKind::Startup && has_startup && !started {
            tokio::time::sleep(period).await;
            continue;
        }
        let verdict = match run_once(&p, &ctx.target).await {
            Outcome::Success => {
                successes += 1;
                failures = 0;
                (successes >= success_threshold).then_some(ProbeResult::Success)
            }
            Outcome::Failure(msg) => {
                successes = 0;
                failures += 1;
                ctx.events.pod(
                    &ctx.pod,
                    Some(&name),
                    EventType::Warning,
                    "Unhealthy",
                    &format!("{} probe failed: {msg}", kind.word()),
                );
                (failures >= failure_threshold).then_some(ProbeResult::Failure)
            }
        };
        if let Some(v) = verdict
            && ctx.results.set(&id, kind, v)
        {
            ctx.wake.notify_one();
        }
        match (kind, verdict) {
            // The worker restarts the container; a new one gets new probers.
            (ProbeKind::Liveness | ProbeKind::Startup, Some(ProbeResult::Failure)) => return,
            (ProbeKind::Startup, Some(ProbeResult::Success)) => return,
            _ => {}
        }
        tokio::time::sleep(period).await;
    }
}
