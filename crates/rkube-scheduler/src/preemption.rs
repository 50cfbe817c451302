//! DefaultPreemption: when no node fits a pod, find a node where evicting pods of
//! lower priority would make it fit, with the least harm (lowest highest victim
//! priority, then fewest and least important victims), and nominate the pod there.

use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::{Code, CycleState, Diagnosis, reason_histogram};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::schedule_one::Framework;

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// What preemption decided.
#[derive(Debug, Clone)]
pub enum Preemption {
    /// Evict `victims` from `node`; the pod is nominated there.
    Nominate {
        node: String,
        victims: Vec<Arc<PodInfo>>,
    },
    /// No node helps; the message follows `preemption: ` in the pod's condition.
    NotPossible(String),
}

/// Upstream's reason a pod may not preempt, if any.
fn ineligible(pod: &PodInfo, cache: &Cache) -> Option<&'static str> {
    if pod.preempt_never {
        return Some("not eligible due to preemptionPolicy=Never.");
    }
    // Victims of an earlier round are still terminating on the nominated node: wait.
    if let Some(n) = pod.nominated_node.as_deref().and_then(|n| cache.node(n))
        && n.pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority)
    {
        return Some("not eligible due to a terminating pod on the nominated node.");
    }
    None
}

/// Runs preemption for a pod that fit nowhere.
pub fn preempt(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    cache: &Cache,
    diagnosis: &Diagnosis,
) -> Preemption {
    if let Some(reason) = ineligible(pod, cache) {
        return Preemption::NotPossible(format!("preemption: {reason}"));
    }
    let all = cache.node_count();
    let mut reasons: Vec<&'static str> = Vec::with_capacity(all);
    let mut best: Option<(Candidate, String)> = None;
    // Nodes rejected for reasons eviction cannot fix are not candidates; a PreFilter
    // rejection rules out every node.
    let rejected_for_good = |name: &str| {
        diagnosis.pre_filter.is_some()
            || diagnosis
                .node_status
                .iter()
                .any(|(n, s)| n == name && s.code == Code::UnschedulableAndUnresolvable)
    };
    for node in cache.nodes() {
        if rejected_for_good(&node.name) {
            reasons.push(NOT_HELPFUL);
            continue;
        }
        match select_victims(fw, state, pod, node) {
            None => reasons.push(NO_VICTIMS),
            Some(c) => {
                if best.as_ref().is_none_or(|(b, _)| c.better_than(b)) {
                    best = Some((c, node.name.clone()));
                }
            }
        }
    }
    match best {
        Some((c, node)) => Preemption::Nominate {
            node,
            victims: c.victims,
        },
        None => Preemption::NotPossible(format!(
            "preemption: 0/{all} nodes are available: {}.",
            reason_histogram(reasons.into_iter())
        )),
    }
}

/// The pods to evict on one node.
#[derive(Debug, Clone)]
struct Candidate {
    victims: Vec<Arc<PodInfo>>,
}

impl Candidate {
    /// The ordering key: highest victim priority, sum of priorities, count.
    fn key(&self) -> (i64, i64, usize) {
        let highest = self
            .victims
            .iter()
            .map(|v| i64::from(v.priority))
            .max()
            .unwrap_or(i64::MIN);
        let sum = self
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + (1 << 31))
            .sum();
        (highest, sum, self.victims.len())
    }

    fn better_than(&self, other: &Candidate) -> bool {
        self.key() < other.key()
    }
}

/// Removes every lower-priority pod, checks the pod fits, then puts back as many as
/// possible, most important first; what could not go back are the victims.
fn select_victims(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Option<Candidate> {
    let mut node = node.clone();
    let mut state = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    for v in &potential {
        node.remove_pod(&v.uid);
        for f in &fw.filters {
            f.remove_pod(&mut state, pod, v, &node);
        }
    }
    if fw.filter(&state, pod, &node).is_err() {
        return None;
    }
    potential.sort_by_key(|v| std::cmp::Reverse(v.priority));
    let mut victims = Vec::new();
    for v in potential {
        node.add_pod(v.clone());
        for f in &fw.filters {
            f.add_pod(&mut state, pod, &v, &node);
        }
        if fw.filter(&state, pod, &node).is_err() {
            node.remove_pod(&v.uid);
            for f in &fw.filters {
                f.remove_pod(&mut state, pod, &v, &node);
            }
            victims.push(v);
        }
    }
    Some(Candidate { victims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::cache;
    use crate::pod_info::testing::pod;
    use crate::schedule_one::ScheduleError;
    use serde_json::json;
    use std::collections::HashMap;

    fn running(name: &str, node: &str, priority: i32, cpu: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name}, "spec": {"nodeName": node, "priority": priority, "containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
    }

    fn run(c: &Cache, p: &PodInfo) -> Preemption {
        let mut fw = Framework::default();
        match fw.schedule(p, c, HashMap::new(), None) {
            Err((ScheduleError::Fit(e), state)) => preempt(&fw, &state, p, c, &e.diagnosis),
            other => panic!("expected no fit, got {:?}", other.map(|(p, _)| p)),
        }
    }

    #[test]
    fn evicts_the_fewest_least_important_pods() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![
                running("a-low", "a", 0, "2"),
                running("a-mid", "a", 5, "2"),
                running("b-low1", "b", 0, "1"),
                running("b-low2", "b", 0, "1"),
                running("b-high", "b", 100, "2"),
            ],
        );
        let Preemption::Nominate { node, victims } = run(&c, &running("p", "", 10, "2")) else {
            panic!("preemption should find victims");
        };
        // a: evicting a-low (priority 0) suffices; b needs both low pods.
        assert_eq!(node, "a");
        let names: Vec<&str> = victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["a-low"]);
    }

    #[test]
    fn explains_when_nothing_helps() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(
                    json!({"metadata": {"name": "b"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
                ),
            ],
            vec![running("a-high", "a", 100, "4")],
        );
        let Preemption::NotPossible(msg) = run(&c, &running("p", "", 10, "1")) else {
            panic!("nothing should be evicted");
        };
        assert_eq!(
            msg,
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let mut never = running("p", "", 1000, "1");
        never.preempt_never = true;
        let Preemption::NotPossible(msg) = run(&c, &never) else {
            panic!()
        };
        assert_eq!(
            msg,
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
