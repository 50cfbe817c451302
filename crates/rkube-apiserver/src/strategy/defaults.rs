//! Defaults shared by several kinds: pod specs (in pods and in workload templates).

use rkube_api::meta::default_path;
use serde_json::{Value, json};

/// Upstream's `SetDefaults_PodSpec` and container defaults, for pods and templates.
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_path(spec, &["restartPolicy"], json!("Always"));
    default_path(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_path(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_path(spec, &["securityContext"], json!({}));
    default_path(spec, &["schedulerName"], json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                container(c);
            }
        }
    }
    if let Some(cs) = spec
        .get_mut("ephemeralContainers")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            default_path(
                c,
                &["terminationMessagePath"],
                json!("/dev/termination-log"),
            );
            default_path(c, &["terminationMessagePolicy"], json!("File"));
            default_path(c, &["imagePullPolicy"], json!(pull_policy(c)));
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            volume(v);
        }
    }
}

fn pull_policy(c: &Value) -> &'static str {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    if image_tag_is_latest(image) {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Whether an image reference has no tag or the `latest` tag (and no digest).
pub fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn container(c: &mut Value) {
    default_path(
        c,
        &["terminationMessagePath"],
        json!("/dev/termination-log"),
    );
    default_path(c, &["terminationMessagePolicy"], json!("File"));
    default_path(c, &["imagePullPolicy"], json!(pull_policy(c)));
    default_path(c, &["resources"], json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_path(p, &["protocol"], json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(f) = e.pointer_mut("/valueFrom/fieldRef") {
                default_path(f, &["apiVersion"], json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe)
            && p.is_object()
        {
            default_path(p, &["timeoutSeconds"], json!(1));
            default_path(p, &["periodSeconds"], json!(10));
            default_path(p, &["successThreshold"], json!(1));
            default_path(p, &["failureThreshold"], json!(3));
            if let Some(h) = p.get_mut("httpGet")
                && h.is_object()
            {
                default_path(h, &["path"], json!("/"));
                default_path(h, &["scheme"], json!("HTTP"));
            }
        }
    }
}

fn volume(v: &mut Value) {
    // A volume that names no source is an emptyDir (upstream's SetDefaults_Volume).
    if let Some(m) = v.as_object_mut()
        && m.iter().all(|(k, x)| k == "name" || x.is_null())
    {
        m.retain(|k, _| k == "name");
        m.insert("emptyDir".into(), json!({}));
    }
    for (source, field) in [
        ("configMap", "defaultMode"),
        ("secret", "defaultMode"),
        ("downwardAPI", "defaultMode"),
        ("projected", "defaultMode"),
    ] {
        if let Some(s) = v.get_mut(source)
            && s.is_object()
        {
            default_path(s, &[field], json!(420));
        }
    }
    if let Some(s) = v.get_mut("hostPath")
        && s.is_object()
    {
        default_path(s, &["type"], json!(""));
    }
    if let Some(s) = v.get_mut("emptyDir")
        && s.is_null()
    {
        *s = json!({});
    }
}

/// Defaults of a pod template inside a workload (`spec.template`).
pub fn template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
    if let Some(meta) = obj.pointer_mut("/spec/template")
        && meta.get("metadata").is_none()
    {
        meta["metadata"] = json!({});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert!(image_tag_is_latest("nginx"));
        assert!(image_tag_is_latest("nginx:latest"));
        assert!(image_tag_is_latest("localhost:5000/nginx"));
        assert!(!image_tag_is_latest("localhost:5000/nginx:1.27"));
        assert!(!image_tag_is_latest("nginx@sha256:abcd"));
    }

    #[test]
    fn containers_get_upstream_defaults() {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx:alpine", "ports": [{"containerPort": 80}]}]});
        pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
    }

    #[test]
    fn a_volume_without_a_source_is_an_empty_dir() {
        let mut spec = json!({"containers": [], "volumes": [{"name": "a"}, {"name": "b", "hostPath": {"path": "/x"}}]});
        pod_spec(&mut spec);
        assert_eq!(spec["volumes"][0], json!({"name": "a", "emptyDir": {}}));
        assert!(spec["volumes"][1].get("emptyDir").is_none());
    }
}
