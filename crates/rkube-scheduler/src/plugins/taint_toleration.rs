//! TaintToleration: a node's NoSchedule/NoExecute taints keep out pods that do not
//! tolerate them; PreferNoSchedule taints lower the node's score.

use k8s_openapi::api::core::v1::Toleration;

use crate::framework::{
    CycleState, FilterPlugin, PluginId, ScorePlugin, Status, default_normalize,
};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub struct TaintToleration;

pub use rkube_api::taints::{tolerates, untolerated};

impl FilterPlugin for TaintToleration {
    fn id(&self) -> PluginId {
        PluginId::TaintToleration
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        match untolerated(&node.taints, &pod.tolerations, &["NoSchedule", "NoExecute"]) {
            None => Ok(()),
            Some(t) => Err(Status::unresolvable(
                PluginId::TaintToleration,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn id(&self) -> PluginId {
        PluginId::TaintToleration
    }

    fn weight(&self) -> i64 {
        3
    }

    /// The number of PreferNoSchedule taints the pod does not tolerate (fewer is better).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let prefer: Vec<&Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .collect();
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|taint| !prefer.iter().any(|t| tolerates(t, taint)))
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testing::node;
    use crate::plugins::testing::{cache, filter_all, score_all};
    use crate::pod_info::testing::pod;
    use k8s_openapi::api::core::v1::Taint;
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "value": "cpu"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
    }

    #[test]
    fn untolerated_taints_reject_with_upstream_wording() {
        let c = cache(
            vec![
                node(
                    json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
                ),
                node(
                    json!({"metadata": {"name": "b"}, "spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}}),
                ),
            ],
            vec![],
        );
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        let r = filter_all(&TaintToleration, &p, &c);
        assert_eq!(
            r[0],
            Err(Status::unresolvable(
                PluginId::TaintToleration,
                "node(s) had untolerated taint {dedicated: gpu}"
            ))
        );
        assert_eq!(r[1], Ok(()), "PreferNoSchedule does not filter");
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a"}})),
                node(
                    json!({"metadata": {"name": "b"}, "spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}}),
                ),
            ],
            vec![],
        );
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        assert_eq!(score_all(&TaintToleration, &p, &c), vec![100, 0]);
        let tolerant = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "tolerations": [{"key": "soft", "operator": "Exists", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(score_all(&TaintToleration, &tolerant, &c), vec![100, 100]);
    }
}
