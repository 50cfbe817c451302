//! Label selectors and node selector terms compiled once per pod, matched without
//! allocating (the scheduler matches them against thousands of nodes and pods).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object (k8s-openapi keeps them in a `BTreeMap`).
pub type Labels = BTreeMap<String, String>;

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    /// Node selectors only: the label is an integer greater than the value.
    Gt(String, i64),
    /// Node selectors only: the label is an integer less than the value.
    Lt(String, i64),
}

impl Requirement {
    fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k)
            | Requirement::Gt(k, _)
            | Requirement::Lt(k, _) => k,
        }
    }

    /// Whether a label value (absent: `None`) satisfies the requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self {
            Requirement::In(_, vs) => value.is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(_, vs) => value.is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(_) => value.is_some(),
            Requirement::DoesNotExist(_) => value.is_none(),
            Requirement::Gt(_, n) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::Lt(_, n) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(self.key()).map(String::as_str))
    }
}

/// A compiled `metav1.LabelSelector`. `Selector::nothing()` stands for a nil selector
/// where upstream treats nil as matching nothing (affinity terms, spread constraints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
    pub nothing: bool,
}

impl Selector {
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Compiles a selector; a nil selector matches nothing. Unknown operators make the
    /// selector match nothing (the API server validates them, so this is defensive).
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector::nothing();
        };
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let r = match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                _ => return Selector::nothing(),
            };
            requirements.push(r);
        }
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// Adds `key in (value)` for each of `keys` the pod has (matchLabelKeys).
    pub fn with_label_keys(mut self, keys: Option<&Vec<String>>, labels: &Labels) -> Selector {
        for k in keys.into_iter().flatten() {
            if let Some(v) = labels.get(k) {
                self.requirements
                    .push(Requirement::In(k.clone(), vec![v.clone()]));
            }
        }
        self
    }

    /// Adds `key notin (value)` for each of `keys` the pod has (mismatchLabelKeys).
    pub fn with_mismatch_label_keys(
        mut self,
        keys: Option<&Vec<String>>,
        labels: &Labels,
    ) -> Selector {
        for k in keys.into_iter().flatten() {
            if let Some(v) = labels.get(k) {
                self.requirements
                    .push(Requirement::NotIn(k.clone(), vec![v.clone()]));
            }
        }
        self
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// A compiled `NodeSelectorTerm`: label expressions and `metadata.name` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTerm {
    pub labels: Vec<Requirement>,
    pub fields: Vec<Requirement>,
    /// A term with an invalid requirement matches no node.
    pub invalid: bool,
}

fn node_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let values = r.values.clone().unwrap_or_default();
    let one_int = || -> Option<i64> {
        match values.as_slice() {
            [v] => v.parse().ok(),
            _ => None,
        }
    };
    Some(match r.operator.as_str() {
        "In" => Requirement::In(r.key.clone(), values),
        "NotIn" => Requirement::NotIn(r.key.clone(), values),
        "Exists" => Requirement::Exists(r.key.clone()),
        "DoesNotExist" => Requirement::DoesNotExist(r.key.clone()),
        "Gt" => Requirement::Gt(r.key.clone(), one_int()?),
        "Lt" => Requirement::Lt(r.key.clone(), one_int()?),
        _ => return None,
    })
}

impl NodeTerm {
    pub fn compile(term: &NodeSelectorTerm) -> NodeTerm {
        let mut t = NodeTerm::default();
        for r in term.match_expressions.iter().flatten() {
            match node_requirement(r) {
                Some(req) => t.labels.push(req),
                None => t.invalid = true,
            }
        }
        for r in term.match_fields.iter().flatten() {
            // Only `metadata.name` is a supported field, with In/NotIn.
            match node_requirement(r) {
                Some(req @ (Requirement::In(..) | Requirement::NotIn(..)))
                    if r.key == "metadata.name" =>
                {
                    t.fields.push(req)
                }
                _ => t.invalid = true,
            }
        }
        t
    }

    /// An empty term matches no node (as upstream).
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.invalid || (self.labels.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches_value(Some(node_name)))
    }
}

/// A compiled required `NodeSelector`: the terms are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelectorTerms(pub Vec<NodeTerm>);

impl NodeSelectorTerms {
    pub fn compile(sel: &NodeSelector) -> NodeSelectorTerms {
        NodeSelectorTerms(
            sel.node_selector_terms
                .iter()
                .map(NodeTerm::compile)
                .collect(),
        )
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        self.0.iter().any(|t| t.matches(node_name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "api")])));
        assert!(!Selector::from_label_selector(None).matches(&labels(&[])));
        assert!(
            Selector::from_label_selector(Some(&LabelSelector::default())).matches(&labels(&[]))
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(!Selector::from_label_selector(Some(&bad)).matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn node_terms() {
        let req = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![
                req("cores", "Gt", &["8"]),
                req("disk", "In", &["ssd", "nvme"]),
            ]),
            match_fields: None,
        };
        let t = NodeTerm::compile(&term);
        assert!(t.matches("n", &labels(&[("cores", "16"), ("disk", "ssd")])));
        assert!(!t.matches("n", &labels(&[("cores", "4"), ("disk", "ssd")])));
        assert!(!t.matches("n", &labels(&[("cores", "x"), ("disk", "ssd")])));
        let by_name = NodeTerm::compile(&NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        });
        assert!(by_name.matches("n1", &labels(&[])));
        assert!(!by_name.matches("n2", &labels(&[])));
        assert!(!NodeTerm::compile(&NodeSelectorTerm::default()).matches("n", &labels(&[])));
    }
}
