//! A pod's status as kubectl and the controllers read it: the phase (upstream's
//! `getPhase`), the conditions (PodReadyToStartContainers, Initialized,
//! ContainersReady, Ready, PodScheduled) with transition times kept while a
//! condition does not change, and the container states. Pure functions: the pod
//! worker gathers the facts.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Whether an init container runs for the pod's whole life (a native sidecar).
pub fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn last_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

fn find<'a>(list: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    list.iter().find(|s| s.name == name)
}

/// The pod phase from its container statuses (upstream's `getPhase`). `terminal` is
/// set once the pod will run nothing more (deleted, or a terminal decision).
pub fn phase(
    pod: &Pod,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "Pending";
    };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (mut pending_sidecars, mut pending_init, mut failed_init) = (0, 0, 0);
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(init, &c.name) else {
            if is_sidecar(c) {
                pending_sidecars += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        if is_sidecar(c) {
            if !running(s) || !s.started.unwrap_or(false) {
                pending_sidecars += 1;
            }
            continue;
        }
        if running(s) {
            pending_init += 1;
        } else if let Some(t) = terminated(s) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if waiting(s) {
            match last_terminated(s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut run, mut wait, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in &spec.containers {
        let Some(s) = find(regular, &c.name) else {
            unknown += 1;
            continue;
        };
        if running(s) {
            run += 1;
        } else if let Some(t) = terminated(s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if waiting(s) {
            if last_terminated(s).is_some() {
                stopped += 1;
            } else {
                wait += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    let regular_started = regular
        .iter()
        .any(|s| running(s) || terminated(s).is_some() || last_terminated(s).is_some());
    if pending_init > 0 || (pending_sidecars > 0 && !regular_started) || wait > 0 {
        return "Pending";
    }
    if run > 0 && unknown == 0 {
        return "Running";
    }
    if run == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// A condition, keeping the old transition time while its status is unchanged.
pub fn condition(
    old: Option<&PodStatus>,
    ty: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .and_then(|o| o.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == ty))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: ty.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

fn names(list: &[&str]) -> String {
    format!("[{}]", list.join(" "))
}

/// The kubelet's conditions of a pod.
pub struct Conditions {
    /// The sandbox and its network are up.
    pub sandbox_ready: bool,
    /// Every init container finished (and every sidecar started).
    pub initialized: bool,
    /// Init containers not done yet, by name.
    pub not_initialized: Vec<String>,
    /// Containers (and sidecars) not ready, by name.
    pub not_ready: Vec<String>,
    /// The pod is Succeeded or Failed.
    pub completed: bool,
}

/// The conditions the kubelet owns, plus the ones it keeps (PodScheduled, readiness
/// gates set by others), in upstream's order.
pub fn conditions(
    pod: &Pod,
    old: Option<&PodStatus>,
    c: &Conditions,
    now: &Time,
) -> Vec<PodCondition> {
    let mut out = Vec::new();
    let owned = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ];
    out.push(condition(
        old,
        "PodReadyToStartContainers",
        c.sandbox_ready,
        None,
        None,
        now,
    ));
    if c.initialized {
        out.push(condition(old, "Initialized", true, None, None, now));
    } else {
        let list: Vec<&str> = c.not_initialized.iter().map(String::as_str).collect();
        out.push(condition(
            old,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                names(&list)
            )),
            now,
        ));
    }
    let unready: Vec<&str> = c.not_ready.iter().map(String::as_str).collect();
    let (containers_ready, reason, message) = if c.completed {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                names(&unready)
            )),
        )
    };
    out.push(condition(
        old,
        "ContainersReady",
        containers_ready,
        reason,
        message.clone(),
        now,
    ));
    // Readiness gates: conditions others set must be True too.
    let existing = old.and_then(|o| o.conditions.as_ref());
    let gates: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .map(|g| g.condition_type.clone())
        .collect();
    let missing_gate = gates.iter().find(|g| {
        existing
            .and_then(|cs| cs.iter().find(|c| &c.type_ == *g))
            .is_none_or(|c| c.status != "True")
    });
    let ready = match (containers_ready, missing_gate) {
        (true, Some(g)) => condition(
            old,
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate \"{g}\" does not exist."
            )),
            now,
        ),
        _ => condition(old, "Ready", containers_ready, reason, message, now),
    };
    out.push(ready);
    match existing.and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled")) {
        Some(s) => out.push(s.clone()),
        None => out.push(condition(old, "PodScheduled", true, None, None, now)),
    }
    for other in existing.into_iter().flatten() {
        if !owned.contains(&other.type_.as_str()) {
            out.push(other.clone());
        }
    }
    out
}

/// A container status with no instance yet: waiting with `reason`.
pub fn waiting_status(
    name: &str,
    image: &str,
    reason: &str,
    message: Option<String>,
) -> ContainerStatus {
    ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: String::new(),
        ready: false,
        started: Some(false),
        restart_count: 0,
        state: Some(ContainerState {
            waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str, init: bool) -> Pod {
        let mut spec =
            json!({"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]});
        if init {
            spec["initContainers"] = json!([{"name": "i"}]);
        }
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn st(
        name: &str,
        state: serde_json::Value,
        last: Option<serde_json::Value>,
    ) -> ContainerStatus {
        let mut v = json!({"name": name, "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": state});
        if let Some(l) = last {
            v["lastState"] = l;
        }
        serde_json::from_value(v).unwrap()
    }

    fn run() -> serde_json::Value {
        json!({"running": {}})
    }
    fn exited(code: i32) -> serde_json::Value {
        json!({"terminated": {"exitCode": code}})
    }
    fn wait() -> serde_json::Value {
        json!({"waiting": {"reason": "ContainerCreating"}})
    }

    #[test]
    fn phases() {
        let p = pod("Always", false);
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", run(), None), st("b", run(), None)],
                false
            ),
            "Running"
        );
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", run(), None), st("b", wait(), None)],
                false
            ),
            "Pending"
        );
        // Crash looping: waiting with a last termination counts as stopped.
        let crash = st(
            "b",
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            Some(exited(1)),
        );
        assert_eq!(
            phase(&p, &[], &[st("a", run(), None), crash], false),
            "Running"
        );
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", exited(0), None), st("b", exited(1), None)],
                false
            ),
            "Running"
        );
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", exited(0), None), st("b", exited(1), None)],
                true
            ),
            "Failed"
        );

        let p = pod("Never", false);
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", exited(0), None), st("b", exited(0), None)],
                false
            ),
            "Succeeded"
        );
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", exited(0), None), st("b", exited(2), None)],
                false
            ),
            "Failed"
        );
        let p = pod("OnFailure", false);
        assert_eq!(
            phase(
                &p,
                &[],
                &[st("a", exited(0), None), st("b", exited(2), None)],
                false
            ),
            "Running"
        );

        let p = pod("Never", true);
        assert_eq!(phase(&p, &[st("i", exited(1), None)], &[], false), "Failed");
        let p = pod("Always", true);
        assert_eq!(phase(&p, &[st("i", run(), None)], &[], false), "Pending");
        assert_eq!(
            phase(
                &p,
                &[st("i", exited(0), None)],
                &[st("a", run(), None), st("b", run(), None)],
                false
            ),
            "Running"
        );
    }

    #[test]
    fn conditions_keep_transition_times_and_foreign_types() {
        let p = pod("Always", false);
        let t0 = Time(jiff::Timestamp::from_second(1000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(2000).unwrap());
        let c = Conditions {
            sandbox_ready: true,
            initialized: true,
            not_initialized: vec![],
            not_ready: vec!["b".into()],
            completed: false,
        };
        let first = conditions(&p, None, &c, &t0);
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        let mut old = PodStatus {
            conditions: Some(first.clone()),
            ..Default::default()
        };
        old.conditions.as_mut().unwrap().push(PodCondition {
            type_: "example.com/gate".into(),
            status: "True".into(),
            ..Default::default()
        });
        let c2 = Conditions {
            not_ready: vec![],
            ..c
        };
        let second = conditions(&p, Some(&old), &c2, &t1);
        let get = |t: &str| second.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(get("Ready").last_transition_time, Some(t1.clone()));
        assert_eq!(get("Initialized").last_transition_time, Some(t0.clone()));
        assert_eq!(get("PodScheduled").status, "True");
        assert_eq!(get("example.com/gate").status, "True");
    }
}
