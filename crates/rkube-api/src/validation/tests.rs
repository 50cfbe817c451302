use serde_json::json;

use super::*;
use crate::schema::{CustomSchema, builtin};

fn deployment() -> &'static crate::schema::Schema {
    builtin()
        .kind_schema(&GroupVersionKind::new("apps", "v1", "Deployment"))
        .unwrap()
}

/// The body of upstream's field-validation test, with its expected findings.
const INVALID_DEPLOYMENT: &str = r#"{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {
    "name": "dupename",
    "name": "web",
    "labels": {"app": "nginx"},
    "unknownMeta": "metaVal"
  },
  "spec": {
    "unknown1": "val1",
    "unknownDupe": "valDupe",
    "unknownDupe": "valDupe2",
    "paused": true,
    "paused": false,
    "selector": {"matchLabels": {"app": "nginx"}},
    "template": {
      "metadata": {"labels": {"app": "nginx"}},
      "spec": {
        "containers": [{
          "name": "nginx",
          "image": "nginx:latest",
          "unknownNested": "val1",
          "imagePullPolicy": "Always",
          "imagePullPolicy": "Never"
        }]
      }
    }
  },
  "status": {}
}"#;

#[test]
fn strict_decoding_reports_in_document_order_like_upstream() {
    let d = decode(builtin(), deployment(), INVALID_DEPLOYMENT.as_bytes()).unwrap();
    let Verdict::Reject { detail } = d.verdict(FieldValidation::Strict) else {
        panic!()
    };
    assert_eq!(
        detail,
        r#"strict decoding error: duplicate field "metadata.name", unknown field "metadata.unknownMeta", unknown field "spec.unknown1", unknown field "spec.unknownDupe", duplicate field "spec.paused", unknown field "spec.template.spec.containers[0].unknownNested", duplicate field "spec.template.spec.containers[0].imagePullPolicy""#
    );
    let gvk = GroupVersionKind::new("apps", "v1", "Deployment");
    assert!(cannot_handle(&gvk, &detail).starts_with(
        r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error"#
    ));
    // Last duplicate wins, unknown fields are gone.
    assert_eq!(d.object["metadata"]["name"], "web");
    assert_eq!(d.object["spec"]["paused"], false);
    assert_eq!(
        d.object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Never"
    );
    assert!(d.object["spec"].get("unknown1").is_none());
    assert!(d.object["metadata"].get("unknownMeta").is_none());
    assert!(d.object.get("status").is_some());
}

#[test]
fn warn_and_ignore_modes() {
    let d = decode(builtin(), deployment(), INVALID_DEPLOYMENT.as_bytes()).unwrap();
    let Verdict::Proceed { warnings } = d.verdict(FieldValidation::Warn) else {
        panic!()
    };
    assert_eq!(warnings.len(), 7);
    assert_eq!(warnings[1], r#"unknown field "metadata.unknownMeta""#);
    assert_eq!(
        d.verdict(FieldValidation::Ignore),
        Verdict::Proceed { warnings: vec![] }
    );
    assert_eq!(FieldValidation::parse("").unwrap(), FieldValidation::Warn);
    assert!(FieldValidation::parse("strict").is_err());
}

#[test]
fn a_clean_body_has_no_findings_and_keeps_its_order() {
    let body = br#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","creationTimestamp":null},
        "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
        "spec":{"containers":[{"name":"c","image":"nginx","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"500m","memory":1}}}]}}}}"#;
    let d = decode(builtin(), deployment(), body).unwrap();
    assert!(d.issues.is_empty(), "{:?}", d.issues);
    let keys: Vec<&String> = d.object.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["kind", "apiVersion", "metadata", "spec"]);
    assert!(
        d.object["metadata"].get("creationTimestamp").is_none(),
        "nulls are dropped"
    );
}

#[test]
fn type_errors_are_worded_as_go_decoding_errors() {
    let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":"3"}}"#;
    let err = decode(builtin(), deployment(), body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    );
    let body = br#"{"spec":{"template":{"spec":{"containers":[{"name":"c","ports":[{"containerPort":1.5}]}]}}}}"#;
    let DecodeError::Types(errs) = decode(builtin(), deployment(), body).unwrap_err() else {
        panic!()
    };
    assert_eq!(
        errs[0].go_message,
        "json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32"
    );
    assert_eq!(
        errs[0].path,
        "spec.template.spec.containers[0].ports[0].containerPort"
    );
    let body = br#"{"spec":{"template":{"spec":{"containers":"nginx"}}}}"#;
    let err = decode(builtin(), deployment(), body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container"
    );
}

/// The user's Ingress: `port: 8080` where a ServiceBackendPort object is wanted.
#[test]
fn ingress_backend_port_must_be_an_object() {
    let ingress = builtin()
        .kind_schema(&GroupVersionKind::new("networking.k8s.io", "v1", "Ingress"))
        .unwrap();
    let body = br#"{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"web"},
        "spec":{"rules":[{"http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"x","port":8080}}}]}}]}}"#;
    let err = decode(builtin(), ingress, body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "json: cannot unmarshal number into Go struct field IngressServiceBackend.spec.rules.http.paths.backend.service.port of type v1.ServiceBackendPort"
    );
}

#[test]
fn special_scalars_are_checked() {
    let pod = builtin()
        .kind_schema(&GroupVersionKind::new("", "v1", "Pod"))
        .unwrap();
    let bad_quantity =
        br#"{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"lots"}}}]}}"#;
    let err = decode(builtin(), pod, bad_quantity).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("quantities must match the regular expression"),
        "{err}"
    );
    let port =
        br#"{"spec":{"containers":[{"name":"c","livenessProbe":{"httpGet":{"port":{"x":1}}}}]}}"#;
    assert_eq!(
        decode(builtin(), pod, port).unwrap_err().to_string(),
        "json: cannot unmarshal object into Go value of type int32"
    );
    let named =
        br#"{"spec":{"containers":[{"name":"c","livenessProbe":{"httpGet":{"port":"http"}}}]}}"#;
    assert!(decode(builtin(), pod, named).is_ok());
    let secret = builtin()
        .kind_schema(&GroupVersionKind::new("", "v1", "Secret"))
        .unwrap();
    assert!(decode(builtin(), secret, br#"{"data":{"k":"aGVsbG8="}}"#).is_ok());
    assert_eq!(
        decode(builtin(), secret, br#"{"data":{"k":"hello!"}}"#)
            .unwrap_err()
            .to_string(),
        "illegal base64 data at input byte 5"
    );
    let ts = br#"{"metadata":{"creationTimestamp":"yesterday"}}"#;
    assert!(
        decode(builtin(), pod, ts)
            .unwrap_err()
            .to_string()
            .starts_with("parsing time \"yesterday\"")
    );
    let ts = br#"{"metadata":{"creationTimestamp":"2024-05-01T10:00:00Z"}}"#;
    assert!(decode(builtin(), pod, ts).is_ok());
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        decode(builtin(), deployment(), b"{\"spec\": "),
        Err(DecodeError::Syntax(_))
    ));
    assert!(matches!(
        decode(builtin(), deployment(), b"{} x"),
        Err(DecodeError::Syntax(_))
    ));
}

#[test]
fn patched_objects_are_checked_in_sorted_order() {
    let obj = json!({"spec": {"unknown1": 1, "template": {"spec": {"containers": [{"name": "c", "unknownNested": 1}]}}, "replicas": 1}});
    let d = decode_value(builtin(), deployment(), obj).unwrap();
    assert_eq!(
        d.issues,
        vec![
            FieldIssue::Unknown("spec.template.spec.containers[0].unknownNested".into()),
            FieldIssue::Unknown("spec.unknown1".into()),
        ]
    );
    assert_eq!(d.object["spec"]["replicas"], 1);
}

#[test]
fn duplicates_in_patch_bodies() {
    let found =
        find_duplicate_fields(br#"{"spec":{"paused":true,"paused":false,"x":{"a":1,"a":2}}}"#)
            .unwrap();
    assert_eq!(
        found,
        vec![
            FieldIssue::Duplicate("spec.paused".into()),
            FieldIssue::Duplicate("spec.x.a".into())
        ]
    );
    // Inside lists, through escapes, and in maps too large to search in a list.
    let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    let body = format!(
        r#"{{"items":[{{"a":1}},{{"b":1,"\u0062":2}}],"data":{{{},"k7":0,"k39":1}},"s":"x","s":null}}"#,
        many.join(",")
    );
    assert_eq!(
        find_duplicate_fields(body.as_bytes()).unwrap(),
        vec![
            FieldIssue::Duplicate("items[1].b".into()),
            FieldIssue::Duplicate("data.k7".into()),
            FieldIssue::Duplicate("data.k39".into()),
            FieldIssue::Duplicate("s".into()),
        ]
    );
    assert!(
        find_duplicate_fields(br#"{"a":[1,{"b":[]}],"c":{"d":"e"}}"#)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        find_duplicate_fields(br#"{"a":1,}"#),
        Err(DecodeError::Syntax(_))
    ));
}

#[test]
fn custom_resources_prune_and_preserve() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "note": {"type": "string", "nullable": true}
    }}}});
    let cs = CustomSchema::from_crd_schema(
        GroupVersionKind::new("example.com", "v1", "Widget"),
        &schema,
    )
    .unwrap();
    let body =
        br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","bogus":1},
        "spec":{"replicas":2,"extra":true,"config":{"anything":{"goes":[1]}},"note":null}}"#;
    let d = decode(builtin(), &cs.root, body).unwrap();
    assert_eq!(
        d.issues,
        vec![
            FieldIssue::Unknown("metadata.bogus".into()),
            FieldIssue::Unknown("spec.extra".into())
        ]
    );
    assert_eq!(d.object["spec"]["config"]["anything"]["goes"][0], 1);
    assert!(d.object["spec"]["note"].is_null() && d.object["spec"].get("note").is_some());
    let DecodeError::Types(errs) =
        decode(builtin(), &cs.root, br#"{"spec":{"replicas":"two"}}"#).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        errs[0].schema_message(),
        r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
    );
    let schemaless = CustomSchema::schemaless(GroupVersionKind::new("example.com", "v1", "Widget"));
    let d = decode(
        builtin(),
        &schemaless.root,
        br#"{"spec":{"a":1},"metadata":{"name":"w"}}"#,
    )
    .unwrap();
    assert!(d.issues.is_empty());
    assert_eq!(d.object["spec"]["a"], 1);
}
