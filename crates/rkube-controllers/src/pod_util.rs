//! What controllers read from pods: active, ready, available (ready for
//! minReadySeconds), as upstream's podutil defines them.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition};

/// The pod's `Ready` condition.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Not terminated and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Since when the pod has been ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since
            .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|t| t <= now),
        None => false,
    }
}

/// `namespace/name`, the key controllers use for objects.
pub fn key(namespace: Option<&str>, name: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", name.unwrap_or_default()),
        _ => name.unwrap_or_default().to_string(),
    }
}

/// The key of an object.
pub fn object_key<K: kube::Resource>(obj: &K) -> String {
    key(obj.meta().namespace.as_deref(), obj.meta().name.as_deref())
}

/// Splits a key into namespace and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// A typed `metav1.LabelSelector` as a matcher (`None` selects nothing, `{}` all).
pub fn selector(
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<rkube_api::selector::LabelSelector, rkube_api::selector::SelectorError> {
    let v = serde_json::to_value(sel).unwrap_or_default();
    rkube_api::selector::LabelSelector::from_object(&v)
}

/// Whether labels (absent meaning none) match.
pub fn matches(
    sel: &rkube_api::selector::LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    match labels {
        Some(l) => sel.matches_map(l),
        None => sel.matches_map(&Default::default()),
    }
}

/// Creates a pod in `namespace`; the name it got. Only the answer's metadata is
/// decoded (leanly): controllers creating pods by the thousand need no copy back.
pub async fn create(client: &kube::Client, namespace: &str, pod: &Pod) -> kube::Result<String> {
    #[derive(serde::Deserialize)]
    struct Created {
        #[serde(default, deserialize_with = "rkube_api::meta::deserialize_lean")]
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    }
    let body = serde_json::to_vec(pod).map_err(kube::Error::SerdeError)?;
    let req = kube::core::Request::new(<Pod as kube::Resource>::url_path(&(), Some(namespace)))
        .create(&kube::api::PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    let created: Created = client.request(req).await?;
    Ok(created.metadata.name.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool, since: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": since}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now: Timestamp = "2025-01-01T00:00:10Z".parse().unwrap();
        let p = pod(true, "2025-01-01T00:00:05Z");
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 6, now));
        assert!(!is_available(&pod(false, "2025-01-01T00:00:00Z"), 0, now));
    }

    #[test]
    fn keys_split_back() {
        assert_eq!(key(Some("ns"), Some("a")), "ns/a");
        assert_eq!(split_key("ns/a"), (Some("ns"), "a"));
        assert_eq!(split_key("a"), (None, "a"));
    }
}
