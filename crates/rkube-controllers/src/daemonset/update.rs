//! The DaemonSet decisions, free of I/O: which pods a node should have (one, the
//! oldest; failed and excess ones go) and which old pods a rolling update replaces
//! next, within maxUnavailable (delete first) or maxSurge (create first).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::placement::is_updated;
use crate::pod_util;

/// A node as the decisions see it.
pub struct NodeState<'a> {
    pub name: String,
    /// Whether the node should run a daemon pod now.
    pub should_run: bool,
    /// Whether a daemon pod already there may stay.
    pub should_continue: bool,
    /// The daemon pods on the node (bound or aimed at it).
    pub pods: Vec<&'a Pod>,
}

/// What one node needs.
#[derive(Debug, Default, PartialEq)]
pub struct NodePlan {
    pub create: bool,
    /// Pods to delete (excess, succeeded, or not wanted here).
    pub delete: Vec<String>,
    /// Failed pods to delete (subject to the failed-pod backoff).
    pub failed: Vec<String>,
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn created(p: &Pod) -> Option<Timestamp> {
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, then by name (upstream's `podByCreationTimestampAndPhase`, minus
/// the phase, which the running filter already settled).
fn by_age(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| name(a).cmp(&name(b)))
    });
}

/// Upstream's `podsShouldBeOnNode`.
pub fn plan_node(
    node: &NodeState,
    hash: &str,
    allows_surge: bool,
    min_ready: i32,
    now: Timestamp,
) -> NodePlan {
    let mut plan = NodePlan::default();
    if node.should_run && node.pods.is_empty() {
        plan.create = true;
        return plan;
    }
    if !node.should_continue {
        plan.delete = node
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| name(p))
            .collect();
        return plan;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for p in &node.pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match pod_util::phase(p) {
            "Failed" => plan.failed.push(name(p)),
            "Succeeded" => plan.delete.push(name(p)),
            _ => running.push(p),
        }
    }
    if running.len() <= 1 {
        return plan;
    }
    by_age(&mut running);
    if !allows_surge {
        plan.delete.extend(running[1..].iter().map(|p| name(p)));
        return plan;
    }
    // With surge, two pods may share a node: the oldest new one while it is not
    // available yet and the oldest old one while it is still ready.
    let (mut oldest_new, mut oldest_old) = (None, None);
    for p in running {
        let slot = if is_updated(p, hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete.push(name(p));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!pod_util::is_ready(old) || pod_util::is_available(new, min_ready, now))
    {
        plan.delete.push(name(old));
    }
    plan
}

/// The one new and one old pod of a node; `None` when there are more (the node
/// is cleaned up first).
fn new_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(p, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// What a rolling update does next.
#[derive(Debug, Default, PartialEq)]
pub struct UpdatePlan {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// The limits of a rolling update against the desired count; never both zero.
pub fn limits(
    surge: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    unavailable: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let surge = crate::deployment::util::scaled(surge, desired, true);
    let mut unavailable = crate::deployment::util::scaled(unavailable, desired, true);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// Upstream's `rollingUpdate`: without surge, delete old pods while no more than
/// `max_unavailable` nodes are unavailable; with surge, start new pods beside old
/// available ones (at most `max_surge` at once) and delete each old pod once its
/// replacement is available.
pub fn rolling_update(
    nodes: &[NodeState],
    hash: &str,
    max_surge: i32,
    max_unavailable: i32,
    min_ready: i32,
    now: Timestamp,
) -> UpdatePlan {
    let available = |p: &Pod| pod_util::is_available(p, min_ready, now);
    let mut plan = UpdatePlan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for n in nodes {
            let Some((new, old)) = new_and_old(&n.pods, hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        // Unavailable anyway: replacing it costs nothing.
                        plan.delete.push(name(old));
                    } else if unavailable < max_unavailable {
                        candidates.push(name(old));
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }
    let mut surging = 0;
    let mut candidates = Vec::new();
    for n in nodes {
        let Some((new, old)) = new_and_old(&n.pods, hash) else {
            surging += 1;
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !n.should_run {
                    plan.delete.push(name(old));
                } else if !available(old) {
                    plan.create_on.push(n.name.clone());
                } else if surging < max_surge {
                    candidates.push(n.name.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(name(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).max(0) as usize;
    plan.create_on.extend(candidates.into_iter().take(room));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, hash: &str, ready: bool, age: u32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"controller-revision-hash": hash},
                "creationTimestamp": format!("2025-01-01T00:00:{:02}Z", age)},
            "status": {"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready {"True"} else {"False"}, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        }))
        .unwrap()
    }

    fn node<'a>(name: &str, pods: Vec<&'a Pod>) -> NodeState<'a> {
        NodeState {
            name: name.into(),
            should_run: true,
            should_continue: true,
            pods,
        }
    }

    /// `n` ready pods of the old revision.
    fn old_pods(n: u32) -> Vec<Pod> {
        (0..n)
            .map(|i| pod(&format!("p{i}"), "old", true, i))
            .collect()
    }

    /// Node `n<i>` runs pod `i`.
    fn one_per_node(pods: &[Pod]) -> Vec<NodeState<'_>> {
        pods.iter()
            .enumerate()
            .map(|(i, p)| node(&format!("n{i}"), vec![p]))
            .collect()
    }

    fn now() -> Timestamp {
        "2025-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn a_node_keeps_its_oldest_pod() {
        let (a, b) = (pod("a", "h", true, 1), pod("b", "h", true, 2));
        let plan = plan_node(&node("n", vec![&b, &a]), "h", false, 0, now());
        assert_eq!(plan.delete, ["b"]);
        assert!(!plan.create);
        assert!(plan_node(&node("n", vec![]), "h", false, 0, now()).create);
        let mut failed = pod("f", "h", false, 1);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let plan = plan_node(&node("n", vec![&failed]), "h", false, 0, now());
        assert_eq!(plan.failed, ["f"]);
        let mut gone = node("n", vec![&a]);
        gone.should_run = false;
        gone.should_continue = false;
        assert_eq!(plan_node(&gone, "h", false, 0, now()).delete, ["a"]);
    }

    #[test]
    fn with_surge_the_old_pod_goes_once_the_new_one_is_available() {
        let old = pod("old", "h1", true, 1);
        let waiting = pod("new", "h2", false, 2);
        let up = pod("new", "h2", true, 2);
        assert!(
            plan_node(&node("n", vec![&old, &waiting]), "h2", true, 0, now())
                .delete
                .is_empty()
        );
        assert_eq!(
            plan_node(&node("n", vec![&old, &up]), "h2", true, 0, now()).delete,
            ["old"]
        );
    }

    #[test]
    fn without_surge_at_most_max_unavailable_old_pods_go() {
        let pods = old_pods(4);
        let nodes = one_per_node(&pods);
        let plan = rolling_update(&nodes, "new", 0, 1, 0, now());
        assert_eq!(plan.delete.len(), 1);
        assert!(plan.create_on.is_empty());
        let plan = rolling_update(&nodes, "new", 0, 2, 0, now());
        assert_eq!(plan.delete.len(), 2);
        // A node already replacing (no pod yet) uses up the budget.
        let mut busy = one_per_node(&pods);
        busy[0].pods.clear();
        assert!(
            rolling_update(&busy, "new", 0, 1, 0, now())
                .delete
                .is_empty()
        );
        // An unavailable old pod is replaced regardless.
        let sick = pod("sick", "old", false, 0);
        let nodes = vec![node("a", vec![&sick]), node("b", vec![&pods[1]])];
        let plan = rolling_update(&nodes, "new", 0, 1, 0, now());
        assert_eq!(plan.delete, ["sick", "p1"]);
    }

    #[test]
    fn with_surge_new_pods_come_first_within_max_surge() {
        let pods = old_pods(3);
        let nodes = one_per_node(&pods);
        let plan = rolling_update(&nodes, "new", 1, 0, 0, now());
        assert_eq!(plan.create_on, ["n0"]);
        assert!(plan.delete.is_empty());
        let surged = pod("s0", "new", false, 5);
        let mut nodes = nodes;
        nodes[0].pods.push(&surged);
        let plan = rolling_update(&nodes, "new", 1, 0, 0, now());
        assert!(plan.create_on.is_empty(), "{plan:?}");
        let ready = pod("s0", "new", true, 5);
        nodes[0].pods[1] = &ready;
        let plan = rolling_update(&nodes, "new", 1, 0, 0, now());
        assert_eq!(plan.delete, ["p0"]);
        assert_eq!(plan.create_on, ["n1"]);
    }

    #[test]
    fn limits_round_up_and_are_never_both_zero() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let pct = IntOrString::String("25%".into());
        assert_eq!(limits(None, Some(&pct), 10), (0, 3));
        assert_eq!(
            limits(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 4),
            (0, 1)
        );
    }
}
