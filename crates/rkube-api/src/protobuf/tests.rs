use prost::Message as _;
use serde_json::{Value, json};

use super::*;
use crate::resource::builtin_resources;

/// A pod using most of what has a JSON form of its own: times, quantities,
/// int-or-string, inlined volume sources, pointer zeros, maps and lists.
fn rich_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "uid": "0b9d4a8e-2f6c-4c1e-9a57-1f1f0e2d3c4b",
            "resourceVersion": "1042",
            "generation": 3,
            "creationTimestamp": "2025-06-01T11:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"note": ""},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "u1", "controller": true, "blockOwnerDeletion": false}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                "time": "2025-06-01T11:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]
        },
        "spec": {
            "volumes": [
                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0, "optional": false}}
            ],
            "containers": [{
                "name": "nginx",
                "image": "nginx:alpine",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}},
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": 80}},
                "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "capabilities": {"drop": ["ALL"]}}
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "securityContext": {"supplementalGroups": [1000, 2000], "fsGroup": 0},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}],
            "overhead": {"memory": "10Mi"}
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-06-01T11:00:05Z"}],
            "podIPs": [{"ip": "10.42.0.5"}],
            "startTime": "2025-06-01T11:00:01Z",
            "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0,
                "image": "nginx:alpine", "imageID": "sha256:abc", "started": true,
                "state": {"running": {"startedAt": "2025-06-01T11:00:02Z"}}}]
        }
    })
}

#[test]
fn rich_pod_round_trips() {
    let pod = rich_pod();
    let bytes = encode(&pod).unwrap();
    assert!(bytes.starts_with(b"k8s\0"));
    assert_eq!(decode(&bytes).unwrap(), pod);
}

/// An independent protobuf implementation (prost types from k8s-pb) reads what we write,
/// and we read what it writes.
#[test]
fn prost_reads_our_bytes_and_we_read_its_bytes() {
    use k8s_pb::api::core::v1 as core;
    let bytes = encode(&rich_pod()).unwrap();
    let envelope = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&bytes[4..]).unwrap();
    let type_meta = envelope.type_meta.clone().unwrap();
    assert_eq!((type_meta.api_version(), type_meta.kind()), ("v1", "Pod"));
    let pod = core::Pod::decode(envelope.raw()).unwrap();
    let spec = pod.spec.unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.image(), "nginx:alpine");
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(
        (security.run_as_user, security.run_as_non_root),
        (Some(0), Some(false))
    );
    assert_eq!(spec.termination_grace_period_seconds, Some(0));
    let probe = container.readiness_probe.as_ref().unwrap();
    let port = probe
        .handler
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap()
        .port
        .as_ref()
        .unwrap();
    assert_eq!((port.r#type(), port.str_val()), (1, "http"));
    assert_eq!(
        container.resources.as_ref().unwrap().requests["cpu"].string(),
        "250m"
    );
    let empty_dir = spec.volumes[0]
        .volume_source
        .as_ref()
        .unwrap()
        .empty_dir
        .as_ref()
        .unwrap();
    assert_eq!(empty_dir.size_limit.as_ref().unwrap().string(), "1Gi");
    let meta = pod.metadata.unwrap();
    assert_eq!(
        meta.creation_timestamp.unwrap().seconds(),
        "2025-06-01T11:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
    );

    // The other way: prost writes a Secret the way Go does, every string field present.
    let secret = core::Secret {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("s".into()),
            namespace: Some(String::new()),
            generation: Some(0),
            ..Default::default()
        }),
        data: [("key".to_string(), b"\x00\xffbinary".to_vec())].into(),
        r#type: Some("Opaque".into()),
        immutable: Some(false),
        ..Default::default()
    };
    let mut body = MAGIC.to_vec();
    k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
        }),
        raw: Some(secret.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    }
    .encode(&mut body)
    .unwrap();
    assert_eq!(
        decode(&body).unwrap(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"key": "AP9iaW5hcnk="}, "type": "Opaque", "immutable": false})
    );
}

#[test]
fn zero_values_follow_go_pointers() {
    // Non-pointer zeros (what Go always writes) vanish; pointer zeros stay.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "generation": 0, "namespace": ""},
        "spec": {"replicas": 0, "minReadySeconds": 0, "paused": false, "revisionHistoryLimit": 0,
            "selector": {}, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "stdin": false, "tty": false,
                 "ports": [{"containerPort": 80, "hostPort": 0}]}]}}}});
    let got = decode(&encode(&deploy).unwrap()).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 0, "selector": {}, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}},
                "revisionHistoryLimit": 0}})
    );
}

#[test]
fn times_and_special_values() {
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "eventTime": "2025-06-01T11:58:59.123456Z",
        "series": {"count": 2, "lastObservedTime": "2025-06-01T11:59:00.000001Z"},
        "reportingController": "c", "reportingInstance": "i", "action": "A", "reason": "R",
        "regarding": {"kind": "Pod", "name": "p"}, "note": "n", "type": "Normal"});
    assert_eq!(decode(&encode(&event).unwrap()).unwrap(), event);

    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "p"}, "spec": {"maxUnavailable": 1},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}});
    assert_eq!(decode(&encode(&pdb).unwrap()).unwrap(), pdb);

    // A Time keeps whole seconds only, as upstream's does.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "n", "creationTimestamp": "2025-06-01T11:00:00.750Z"}});
    assert_eq!(
        decode(&encode(&ns).unwrap()).unwrap()["metadata"]["creationTimestamp"],
        "2025-06-01T11:00:00Z"
    );
}

#[test]
fn custom_resource_definitions_keep_their_schemas() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {
                            "size": {"type": "integer", "minimum": 0, "default": 1},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "extra": {"type": "object", "additionalProperties": false},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "mode": {"type": "string", "enum": ["a", "b"]}}}}}}}]}});
    assert_eq!(decode(&encode(&crd).unwrap()).unwrap(), crd);
}

#[test]
fn bad_input_gets_clear_errors() {
    assert_eq!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::NotKubernetes)
    );
    let mut truncated = encode(&rich_pod()).unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        decode(&truncated),
        Err(ProtobufError::Malformed { .. })
    ));
    assert_eq!(
        encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})),
        Err(ProtobufError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    assert_eq!(
        encode(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "nmae": "x"}})
        ),
        Err(ProtobufError::UnknownField {
            path: "metadata.nmae".into()
        })
    );
    assert_eq!(
        encode(
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "two"}})
        ),
        Err(ProtobufError::Type {
            path: "spec.replicas".into(),
            expected: "a 32-bit integer".into()
        })
    );
    assert_eq!(
        encode(&json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "not base64!"}})),
        Err(ProtobufError::Type {
            path: "data.a".into(),
            expected: "a base64 string".into()
        })
    );
    let mut gzip = encode(&json!({"apiVersion": "v1", "kind": "Namespace"})).unwrap();
    gzip.truncate(gzip.len() - 4);
    gzip.extend_from_slice(b"\x1a\x04gzip\x22\x00");
    assert_eq!(
        decode(&gzip),
        Err(ProtobufError::ContentEncoding("gzip".into()))
    );
}

/// Every stored built-in resource can be carried as protobuf, and its list too.
#[test]
fn every_builtin_kind_is_supported() {
    for r in builtin_resources().iter().filter(|r| r.stored) {
        if r.kind == "ComponentStatus" || r.kind == "Binding" {
            continue;
        }
        assert!(supports(&r.api_version(), &r.kind), "{}", r.gvk());
        assert!(
            supports(&r.api_version(), &r.list_kind()),
            "{} list",
            r.gvk()
        );
    }
    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}]});
    assert_eq!(decode(&encode(&list).unwrap()).unwrap(), list);
}

/// The special types sit where the codec reads them (fields sorted by number).
#[test]
fn special_messages_have_the_expected_shape() {
    let s = schema::schema();
    let fields = |name: &str| -> Vec<(u32, String)> {
        let m = s.messages.iter().find(|m| m.name == name).unwrap();
        m.fields.iter().map(|f| (f.tag, f.json.clone())).collect()
    };
    let pairs = |v: &[(u32, &str)]| {
        v.iter()
            .map(|(t, n)| (*t, n.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fields("meta.v1.Time"),
        pairs(&[(1, "seconds"), (2, "nanos")])
    );
    assert_eq!(
        fields("intstr.IntOrString"),
        pairs(&[(1, "type"), (2, "intVal"), (3, "strVal")])
    );
    assert_eq!(fields("resource.Quantity"), pairs(&[(1, "string")]));
    assert_eq!(fields("runtime.RawExtension"), pairs(&[(1, "raw")]));
    assert_eq!(
        fields("apiextensions.v1.JsonSchemaPropsOrBool")[0],
        (1, "allows".to_string())
    );
}
