//! Where a DaemonSet's pods belong: which nodes should run one (and which may keep
//! one they have), the tolerations upstream adds to every daemon pod, and the node
//! affinity that ties a new pod to its node for the scheduler to bind.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::controller_ref::controller_ref;
use crate::history::CONTROLLER_REVISION_HASH;
use crate::node_util;

/// The deprecated label with the DaemonSet generation a pod was made from.
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The tolerations every daemon pod gets: it keeps running on a node that is not
/// ready or unreachable, and is placed on nodes under pressure or cordoned.
pub fn default_tolerations(spec: &PodSpec) -> Vec<(&'static str, &'static str)> {
    let mut t = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        t.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    t
}

/// Adds the default tolerations the spec does not already have (by key and effect).
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let defaults = default_tolerations(spec);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in defaults {
        tolerations
            .retain(|t| !(t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)));
        tolerations.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        });
    }
}

/// The pod spec a daemon pod would have (template plus default tolerations).
fn daemon_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_default_tolerations(&mut spec);
    spec
}

/// Whether the node should run a daemon pod, and whether one already there may stay
/// (upstream's `NodeShouldRunDaemonPod`): a NoSchedule taint the pod does not
/// tolerate keeps new pods off but lets a running one stay; NoExecute does not.
pub fn should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let spec = daemon_spec(ds);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    if !node_util::fits_node_affinity(&spec, node) {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = node_util::taints(node);
    if node_util::untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]).is_some() {
        let evicted = node_util::untolerated(taints, tolerations, &["NoExecute"]).is_some();
        return (false, !evicted);
    }
    (true, true)
}

/// The node a daemon pod is for: its `nodeName` once bound, else the node its
/// required affinity names by `metadata.name`.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            let values = f.values.as_deref().unwrap_or(&[]);
            (f.key == "metadata.name" && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// Replaces the required node affinity with one term naming `node` (the node
/// already satisfies the others), as upstream does for every daemon pod.
pub fn bind_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let required = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(required);
    affinity
}

/// A new daemon pod for `node`, labelled with the revision `hash`.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.to_string());
    labels.insert(
        TEMPLATE_GENERATION.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let mut spec = daemon_spec(ds);
    spec.affinity = Some(bind_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                ds.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether a pod runs the DaemonSet's current template.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
        .is_some_and(|h| h == hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(extra: serde_json::Value) -> DaemonSet {
        let mut spec = json!({"containers": [{"name": "c", "image": "agent"}]});
        if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra) {
            s.extend(e);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}
        }))
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    #[test]
    fn taints_and_selectors_decide_where_pods_run() {
        let plain = ds(json!({}));
        let n = node("n1", json!({}), json!([]));
        assert_eq!(should_run(&n, &plain), (true, true));
        // The default tolerations cover a cordoned or not-ready node.
        let cordoned = node(
            "n1",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&cordoned, &plain), (true, true));
        let no_schedule = node(
            "n1",
            json!({}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&no_schedule, &plain), (false, true));
        let no_execute = node(
            "n1",
            json!({}),
            json!([{"key": "gpu", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&no_execute, &plain), (false, false));
        let tolerant = ds(json!({"tolerations": [{"key": "gpu", "operator": "Exists"}]}));
        assert_eq!(should_run(&no_execute, &tolerant), (true, true));
        let picky = ds(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(should_run(&n, &picky), (false, false));
        assert_eq!(
            should_run(&node("n2", json!({"disk": "ssd"}), json!([])), &picky),
            (true, true)
        );
        let host = ds(json!({"hostNetwork": true}));
        let spec = daemon_spec(&host);
        assert!(
            spec.tolerations
                .unwrap()
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable"))
        );
    }

    #[test]
    fn new_pods_are_tied_to_their_node() {
        let d = ds(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}}}),
        );
        let p = new_pod(&d, "n7", "abc");
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        let terms = &p
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[CONTROLLER_REVISION_HASH], "abc");
        assert_eq!(labels[TEMPLATE_GENERATION], "2");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert!(is_updated(&p, "abc"));
        assert_eq!(
            p.spec.as_ref().unwrap().tolerations.as_ref().unwrap().len(),
            6
        );
        let mut bound = p.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n8".into());
        assert_eq!(target_node(&bound).as_deref(), Some("n8"));
    }
}
