//! Which pods a ReplicaSet deletes first when it scales down, in upstream's order:
//! unscheduled before scheduled, Pending before Unknown before Running, not ready
//! before ready, lower `controller.kubernetes.io/pod-deletion-cost` first, pods
//! doubled up on a node with related pods first, ready for less time first (on a
//! logarithmic scale), more container restarts first, newer first (logarithmic too).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use crate::pod_util;

/// The annotation users set to steer scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn node(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(p: &Pod) -> u8 {
    match pod_util::phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn created(p: &Pod) -> Option<Timestamp> {
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// floor(log2(age in nanoseconds)), or -1 for no age.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.duration_since(t).as_nanos();
    if d > 0 { (d as f64).log2() as i64 } else { -1 }
}

/// "t1 should go first" for times where a later (or missing) one goes first.
fn newer_first(
    t1: Option<Timestamp>,
    t2: Option<Timestamp>,
    now: Timestamp,
    uid1: &str,
    uid2: &str,
) -> Option<Ordering> {
    if t1 == t2 {
        return None;
    }
    match (t1, t2) {
        (None, _) => Some(Ordering::Less),
        (_, None) => Some(Ordering::Greater),
        (Some(a), Some(b)) => {
            let diff = log_rank(a, now) - log_rank(b, now);
            Some(match diff.cmp(&0) {
                Ordering::Equal => uid1.cmp(uid2),
                o => o,
            })
        }
    }
}

/// Orders `pods` so the first ones are the ones to delete; `rank` is, per pod, how
/// many related pods share its node.
pub fn compare(a: &Pod, ra: usize, b: &Pod, rb: usize, now: Timestamp) -> Ordering {
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let (pa, pb) = (phase_ordinal(a), phase_ordinal(b));
    if pa != pb {
        return pa.cmp(&pb);
    }
    let (ready_a, ready_b) = (pod_util::is_ready(a), pod_util::is_ready(b));
    if ready_a != ready_b {
        return if ready_a {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    let (ca, cb) = (deletion_cost(a), deletion_cost(b));
    if ca != cb {
        return ca.cmp(&cb);
    }
    if ra != rb {
        return rb.cmp(&ra);
    }
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    if ready_a
        && ready_b
        && let Some(o) = newer_first(
            pod_util::ready_since(a),
            pod_util::ready_since(b),
            now,
            &uid(a),
            &uid(b),
        )
    {
        return o;
    }
    let (rsa, rsb) = (max_restarts(a), max_restarts(b));
    if rsa != rsb {
        return rsb.cmp(&rsa);
    }
    newer_first(created(a), created(b), now, &uid(a), &uid(b)).unwrap_or(Ordering::Equal)
}

/// The `n` pods to delete from `pods`, given the pods of related ReplicaSets (the
/// same Deployment's) for the doubled-up rank.
pub fn pods_to_delete(
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    n: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if n >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| pod_util::is_active(p)) {
        let node = node(p);
        if !node.is_empty() {
            *on_node.entry(node).or_insert(0) += 1;
        }
    }
    let mut ranked: Vec<(usize, &Arc<Pod>)> = pods
        .iter()
        .map(|p| (on_node.get(node(p)).copied().unwrap_or(0), p))
        .collect();
    ranked.sort_by(|(ra, a), (rb, b)| compare(a, *ra, b, *rb, now));
    ranked.into_iter().take(n).map(|(_, p)| p.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, ready: Option<&str>, created: &str) -> Arc<Pod> {
        let mut conditions = vec![];
        if let Some(t) = ready {
            conditions.push(json!({"type": "Ready", "status": "True", "lastTransitionTime": t}));
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase, "conditions": conditions},
            }))
            .unwrap(),
        )
    }

    fn names(p: &[Arc<Pod>]) -> Vec<String> {
        p.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    const NOW: &str = "2025-01-01T12:00:00Z";

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first() {
        let now: Timestamp = NOW.parse().unwrap();
        let pods = vec![
            pod(
                "running-ready",
                "n1",
                "Running",
                Some("2025-01-01T10:00:00Z"),
                "2025-01-01T09:00:00Z",
            ),
            pod("running", "n1", "Running", None, "2025-01-01T09:00:00Z"),
            pod("pending", "n1", "Pending", None, "2025-01-01T09:00:00Z"),
            pod("unscheduled", "", "Pending", None, "2025-01-01T09:00:00Z"),
        ];
        assert_eq!(
            names(&pods_to_delete(&pods, &pods, 3, now)),
            ["unscheduled", "pending", "running"]
        );
    }

    #[test]
    fn doubled_up_and_newer_pods_go_first() {
        let now: Timestamp = NOW.parse().unwrap();
        let a = pod(
            "alone",
            "n1",
            "Running",
            Some("2025-01-01T11:59:00Z"),
            "2025-01-01T11:00:00Z",
        );
        let b = pod(
            "crowded",
            "n2",
            "Running",
            Some("2025-01-01T08:00:00Z"),
            "2025-01-01T07:00:00Z",
        );
        let c = pod(
            "crowded-2",
            "n2",
            "Running",
            Some("2025-01-01T08:00:00Z"),
            "2025-01-01T07:00:00Z",
        );
        let got = pods_to_delete(&[a.clone(), b.clone()], &[a.clone(), b.clone(), c], 1, now);
        assert_eq!(names(&got), ["crowded"]);
        // Same rank: the pod ready for less time goes.
        let old = pod(
            "old",
            "n1",
            "Running",
            Some("2025-01-01T01:00:00Z"),
            "2025-01-01T00:00:00Z",
        );
        let new = pod(
            "new",
            "n2",
            "Running",
            Some("2025-01-01T11:59:00Z"),
            "2025-01-01T11:58:00Z",
        );
        assert_eq!(names(&pods_to_delete(&[old, new], &[], 1, now)), ["new"]);
    }

    #[test]
    fn deletion_cost_is_honoured() {
        let now: Timestamp = NOW.parse().unwrap();
        let mut cheap = (*pod(
            "cheap",
            "n1",
            "Running",
            Some("2025-01-01T01:00:00Z"),
            "2025-01-01T00:00:00Z",
        ))
        .clone();
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-10".to_string())].into());
        let dear = pod(
            "dear",
            "n2",
            "Running",
            Some("2025-01-01T11:59:00Z"),
            "2025-01-01T11:58:00Z",
        );
        assert_eq!(
            names(&pods_to_delete(&[dear, Arc::new(cheap)], &[], 1, now)),
            ["cheap"]
        );
    }
}
