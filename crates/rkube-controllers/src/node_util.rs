//! Whether a pod may run on a node, as the DaemonSet controller decides it before
//! any scheduler: the pod's nodeSelector, its required node affinity (label
//! expressions with In, NotIn, Exists, DoesNotExist, Gt and Lt; field expressions
//! on `metadata.name`), and the node's taints against the pod's tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint,
};

pub use rkube_api::taints::{tolerates, untolerated};

/// A node's taints.
pub fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a term matches a node: every expression and every field requirement.
/// An empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
}

/// Whether any term of a node selector matches.
pub fn selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// The pod's nodeSelector and required node affinity both match the node.
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    match spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        }) {
        Some(required) => selector_matches(required, node),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Toleration;
    use serde_json::json;

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}})).unwrap()
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        serde_json::from_value(json!({"key": key, "value": value, "effect": effect})).unwrap()
    }

    #[test]
    fn tolerations_match_taints_as_upstream() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "value": "cpu"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        let taints = [t.clone(), taint("soft", "", "PreferNoSchedule")];
        assert!(untolerated(&taints, &[], &["NoSchedule", "NoExecute"]).is_some());
        assert!(untolerated(&taints[1..], &[], &["NoSchedule", "NoExecute"]).is_none());
    }

    #[test]
    fn node_affinity_and_selectors_match_labels_and_names() {
        let n = node(json!({"zone": "a", "cores": "8"}));
        let spec = |v: serde_json::Value| -> PodSpec { serde_json::from_value(v).unwrap() };
        let base = json!({"containers": []});
        assert!(fits_node_affinity(&spec(base.clone()), &n));
        assert!(fits_node_affinity(
            &spec(json!({"containers": [], "nodeSelector": {"zone": "a"}})),
            &n
        ));
        assert!(!fits_node_affinity(
            &spec(json!({"containers": [], "nodeSelector": {"zone": "b"}})),
            &n
        ));
        let affinity = |term: serde_json::Value| {
            spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}}))
        };
        assert!(fits_node_affinity(
            &affinity(
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]})
            ),
            &n
        ));
        assert!(!fits_node_affinity(
            &affinity(
                json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]})
            ),
            &n
        ));
        assert!(fits_node_affinity(
            &affinity(json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]})),
            &n
        ));
        assert!(!fits_node_affinity(
            &affinity(
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
            ),
            &n
        ));
        assert!(fits_node_affinity(
            &affinity(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
            ),
            &n
        ));
        assert!(!fits_node_affinity(
            &affinity(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})
            ),
            &n
        ));
        // An empty term matches nothing.
        assert!(!fits_node_affinity(&affinity(json!({})), &n));
    }
}
