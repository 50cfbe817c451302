//! Quality of service: a pod's QoS class, and what a container's requests and limits
//! become in its cgroup (CPU shares and quota, memory limit) and its OOM score, as
//! upstream's kubelet computes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_runtime::Resources;

use rkube_api::quantity;

/// A pod's QoS class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Some requests or limits, not Guaranteed.
    Burstable,
    /// No requests or limits at all.
    BestEffort,
}

impl QosClass {
    /// The name in `status.qosClass`.
    pub fn as_str(&self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

type ResourceList = BTreeMap<String, Quantity>;

fn list(c: &Container, limits: bool) -> Option<&ResourceList> {
    let r = c.resources.as_ref()?;
    if limits {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }
}

fn get(l: Option<&ResourceList>, name: &str) -> Option<String> {
    l.and_then(|l| l.get(name)).map(|q| q.0.clone())
}

/// The pod's QoS class (upstream's `GetPodQOS`, over init and regular containers).
pub fn pod_qos(pod: &Pod) -> QosClass {
    let Some(spec) = &pod.spec else {
        return QosClass::BestEffort;
    };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let (req, lim) = (list(c, false), list(c, true));
        let nonzero = |l: Option<&ResourceList>| {
            l.into_iter().flatten().any(|(k, v)| {
                (k == "cpu" || k == "memory") && quantity::milli_value(&v.0).unwrap_or(0) != 0
            })
        };
        if nonzero(req) || nonzero(lim) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = get(lim, r);
            let q = get(req, r);
            let same = match (&q, &l) {
                (Some(q), Some(l)) => {
                    quantity::milli_value(q).ok() == quantity::milli_value(l).ok()
                }
                (None, Some(_)) => true,
                _ => false,
            };
            if l.is_none() || !same {
                guaranteed = false;
            }
        }
    }
    if !any {
        QosClass::BestEffort
    } else if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The OOM score adjustment of a container (upstream's `GetContainerOOMScoreAdjust`).
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i32 {
    let critical = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= 2_000_000_000);
    if critical {
        return -997;
    }
    match pod_qos(pod) {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let req = get(list(c, false), "memory")
                .and_then(|q| quantity::value(&q).ok())
                .unwrap_or(0);
            if memory_capacity <= 0 {
                return 999;
            }
            let adj = 1000 - (1000 * i128::from(req) / i128::from(memory_capacity)) as i64;
            // Burstable containers always score above Guaranteed ones and below BestEffort.
            adj.clamp(2, 999) as i32
        }
    }
}

/// CPU shares for a request in millicores (upstream's `MilliCPUToShares`).
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return 2;
    }
    ((milli as u64) * 1024 / 1000).max(2)
}

/// CFS quota in microseconds per `period` for a limit in millicores.
pub fn milli_cpu_to_quota(milli: i64, period: u64) -> i64 {
    if milli <= 0 {
        return 0;
    }
    (milli * period as i64 / 1000).max(1000)
}

/// The cgroup settings of one container.
pub fn container_resources(pod: &Pod, c: &Container, memory_capacity: i64) -> Resources {
    const PERIOD: u64 = 100_000;
    let req_cpu = get(list(c, false), "cpu").or_else(|| get(list(c, true), "cpu"));
    let lim_cpu = get(list(c, true), "cpu");
    let lim_mem = get(list(c, true), "memory");
    let shares = milli_cpu_to_shares(
        req_cpu
            .and_then(|q| quantity::milli_value(&q).ok())
            .unwrap_or(0),
    );
    let quota = lim_cpu
        .and_then(|q| quantity::milli_value(&q).ok())
        .filter(|m| *m > 0)
        .map(|m| milli_cpu_to_quota(m, PERIOD));
    Resources {
        cpu_shares: Some(shares),
        cpu_quota: quota,
        cpu_period: quota.map(|_| PERIOD),
        memory_limit: lim_mem
            .and_then(|q| quantity::value(&q).ok())
            .filter(|m| *m > 0),
        pids_limit: None,
        oom_score_adj: Some(oom_score_adj(pod, c, memory_capacity)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    #[test]
    fn classes() {
        let be = pod(json!([{"name": "a"}]));
        assert_eq!(pod_qos(&be), QosClass::BestEffort);
        let g = pod(json!([{"name": "a", "resources": {
            "limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "1000m", "memory": "64Mi"}}}]));
        assert_eq!(pod_qos(&g), QosClass::Guaranteed);
        let b = pod(json!([{"name": "a", "resources": {"requests": {"memory": "64Mi"}}}]));
        assert_eq!(pod_qos(&b), QosClass::Burstable);
    }

    #[test]
    fn cgroup_settings() {
        let p = pod(json!([{"name": "a", "resources": {
            "limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}}}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = container_resources(&p, c, 1 << 30);
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(64 << 20));
        // 1000 - 1000 * 32Mi / 1Gi
        assert_eq!(r.oom_score_adj, Some(969));
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_quota(1, 100_000), 1000);
        let be = pod(json!([{"name": "a"}]));
        let r = container_resources(&be, &be.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!((r.cpu_shares, r.oom_score_adj), (Some(2), Some(1000)));
    }
}
