//! Unit tests of server-side apply and managed fields: the classic cases.

use serde_json::{Value, json};

use super::*;
use crate::resource::GroupVersionKind;
use crate::schema::{CustomSchema, builtin};

fn deployments() -> FieldManager<'static> {
    let catalog = builtin();
    FieldManager {
        catalog,
        root: catalog
            .kind_schema(&GroupVersionKind::new("apps", "v1", "Deployment"))
            .unwrap(),
        api_version: "apps/v1",
        kind: "Deployment",
        subresource: None,
        reset: ResetFields::Status,
        custom: false,
    }
}

/// The field manager of deployments/status.
fn deployment_status() -> FieldManager<'static> {
    FieldManager {
        subresource: Some("status"),
        reset: ResetFields::AllButStatus,
        ..deployments()
    }
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

const T1: &str = "2025-01-01T00:00:00Z";
const T2: &str = "2025-01-01T00:01:00Z";
const T3: &str = "2025-01-01T00:02:00Z";

fn deploy(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    })
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `manager/operation[/subresource]` of each entry, in order.
fn managers(obj: &Value) -> Vec<String> {
    entries(obj)
        .iter()
        .map(|e| {
            let mut s = format!(
                "{}/{}",
                e["manager"].as_str().unwrap(),
                e["operation"].as_str().unwrap()
            );
            if let Some(sub) = e["subresource"].as_str() {
                s.push('/');
                s.push_str(sub);
            }
            s
        })
        .collect()
}

fn fields_of(obj: &Value, manager: &str, operation: &str) -> FieldSet {
    let e = entries(obj)
        .into_iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .unwrap_or_else(|| panic!("no entry {manager}/{operation} in {obj:#}"));
    FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap()
}

fn path(s: &str) -> Path {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(PathElement::field)
        .collect()
}

fn conflicts(r: Result<Value, ApplyError>) -> String {
    match r {
        Err(e @ ApplyError::Conflicts(_)) => e.to_string(),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn first_apply_creates_and_records_the_applier() {
    let fm = deployments();
    let obj = fm
        .apply(None, &deploy(3, "nginx:1.27"), "kubectl", false, at(T1))
        .unwrap();
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }}
        }])
    );
}

#[test]
fn applying_the_same_configuration_changes_nothing() {
    let fm = deployments();
    let cfg = deploy(3, "nginx:1.27");
    let first = fm.apply(None, &cfg, "kubectl", false, at(T1)).unwrap();
    let second = fm
        .apply(Some(&first), &cfg, "kubectl", false, at(T2))
        .unwrap();
    assert_eq!(first, second, "the time moves only when the object changes");
    let third = fm
        .apply(
            Some(&second),
            &deploy(4, "nginx:1.27"),
            "kubectl",
            false,
            at(T3),
        )
        .unwrap();
    assert_eq!(third["spec"]["replicas"], 4);
    assert_eq!(entries(&third)[0]["time"], T3);
}

#[test]
fn two_appliers_share_an_object_and_conflict_on_a_value() {
    let fm = deployments();
    let obj = fm
        .apply(None, &deploy(3, "nginx"), "alice", false, at(T1))
        .unwrap();
    // Bob applies only a label: no conflict, both own their fields.
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"team": "b"}}});
    let obj = fm.apply(Some(&obj), &bob, "bob", false, at(T2)).unwrap();
    assert_eq!(managers(&obj), vec!["alice/Apply", "bob/Apply"]);
    assert!(fields_of(&obj, "bob", "Apply").has(&path("metadata.labels.team")));

    // Bob applying the same replicas shares the field...
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"team": "b"}}, "spec": {"replicas": 3}});
    let obj = fm.apply(Some(&obj), &same, "bob", false, at(T2)).unwrap();
    assert!(fields_of(&obj, "alice", "Apply").has(&path("spec.replicas")));
    assert!(fields_of(&obj, "bob", "Apply").has(&path("spec.replicas")));

    // ...a different value conflicts with Alice.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let msg = conflicts(fm.apply(Some(&obj), &other, "carol", false, at(T3)));
    assert_eq!(
        msg,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .spec.replicas\nconflicts with \"bob\":\n- .spec.replicas"
    );

    // Forcing takes the field from both.
    let obj = fm.apply(Some(&obj), &other, "carol", true, at(T3)).unwrap();
    assert_eq!(obj["spec"]["replicas"], 5);
    assert!(!fields_of(&obj, "alice", "Apply").has(&path("spec.replicas")));
    assert!(!fields_of(&obj, "bob", "Apply").has(&path("spec.replicas")));
    assert!(fields_of(&obj, "carol", "Apply").has(&path("spec.replicas")));
}

#[test]
fn a_field_no_longer_applied_is_removed_unless_someone_else_owns_it() {
    let fm = deployments();
    let mut cfg = deploy(3, "nginx");
    cfg["spec"]["paused"] = json!(true);
    cfg["spec"]["minReadySeconds"] = json!(5);
    let obj = fm.apply(None, &cfg, "alice", false, at(T1)).unwrap();
    // Bob co-owns minReadySeconds.
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"minReadySeconds": 5}});
    let obj = fm.apply(Some(&obj), &bob, "bob", false, at(T2)).unwrap();
    let obj = fm
        .apply(Some(&obj), &deploy(3, "nginx"), "alice", false, at(T3))
        .unwrap();
    assert!(obj["spec"].get("paused").is_none(), "alice's field is gone");
    assert_eq!(obj["spec"]["minReadySeconds"], 5, "bob's field stays");
}

#[test]
fn containers_merge_by_name() {
    let fm = deployments();
    let obj = fm
        .apply(None, &deploy(1, "app:1"), "alice", false, at(T1))
        .unwrap();
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "log:1"}]}}}});
    let obj = fm
        .apply(Some(&obj), &sidecar, "bob", false, at(T2))
        .unwrap();
    let names = |o: &Value| -> Vec<String> {
        o["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["image"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&obj), vec!["c=app:1", "log=log:1"]);

    // Alice changes her image: only her container changes.
    let obj = fm
        .apply(Some(&obj), &deploy(1, "app:2"), "alice", false, at(T3))
        .unwrap();
    assert_eq!(names(&obj), vec!["c=app:2", "log=log:1"]);

    // Alice renames her container: the old one goes, bob's stays.
    let mut renamed = deploy(1, "app:2");
    renamed["spec"]["template"]["spec"]["containers"][0]["name"] = json!("main");
    let obj = fm
        .apply(Some(&obj), &renamed, "alice", false, at(T3))
        .unwrap();
    assert_eq!(names(&obj), vec!["log=log:1", "main=app:2"]);

    // Bob may not change alice's image.
    let steal = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "evil"}]}}}});
    let msg = conflicts(fm.apply(Some(&obj), &steal, "bob", false, at(T3)));
    assert_eq!(
        msg,
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.containers[name=\"main\"].image"
    );
}

#[test]
fn container_ports_are_keyed_by_port_and_defaulted_protocol() {
    let fm = deployments();
    let mut cfg = deploy(1, "app");
    cfg["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let obj = fm.apply(None, &cfg, "alice", false, at(T1)).unwrap();
    let fields = fields_of(&obj, "alice", "Apply").to_fields_v1();
    let c = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
    assert_eq!(
        c["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
}

#[test]
fn finalizers_are_a_set() {
    let fm = deployments();
    let mut a = deploy(1, "app");
    a["metadata"]["finalizers"] = json!(["example.com/a"]);
    let obj = fm.apply(None, &a, "alice", false, at(T1)).unwrap();
    let b = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["example.com/b"]}});
    let obj = fm.apply(Some(&obj), &b, "bob", false, at(T2)).unwrap();
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["example.com/a", "example.com/b"])
    );
    let bob = fields_of(&obj, "bob", "Apply");
    assert!(bob.has(&[
        PathElement::field("metadata"),
        PathElement::field("finalizers"),
        PathElement::Value(json!("example.com/b"))
    ]));
    // Alice stops applying hers: only hers goes.
    let obj = fm
        .apply(Some(&obj), &deploy(1, "app"), "alice", false, at(T3))
        .unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["example.com/b"]));
}

#[test]
fn atomic_selector_is_replaced_whole_and_labels_merge() {
    let fm = deployments();
    let obj = fm
        .apply(None, &deploy(1, "app"), "alice", false, at(T1))
        .unwrap();
    let mut cfg = deploy(1, "app");
    cfg["spec"]["selector"] = json!({"matchLabels": {"tier": "web"}});
    cfg["spec"]["template"]["metadata"]["labels"] = json!({"tier": "web"});
    let obj = fm.apply(Some(&obj), &cfg, "alice", false, at(T2)).unwrap();
    assert_eq!(
        obj["spec"]["selector"],
        json!({"matchLabels": {"tier": "web"}})
    );
    // The label alice no longer applies is removed; granular maps merge key by key.
    assert_eq!(
        obj["spec"]["template"]["metadata"]["labels"],
        json!({"tier": "web"})
    );
}

#[test]
fn duplicate_items_and_wrong_kinds_are_refused() {
    let fm = deployments();
    let mut cfg = deploy(1, "app");
    cfg["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "c", "image": "a"}, {"name": "c", "image": "b"}]);
    let err = fm.apply(None, &cfg, "alice", false, at(T1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name=\"c\"]"
    );
    let mut cfg = deploy(1, "app");
    cfg["apiVersion"] = json!("apps/v1beta1");
    let err = fm.apply(None, &cfg, "alice", false, at(T1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid object type: apps/v1beta1, Kind=Deployment"
    );
    let mut cfg = deploy(1, "app");
    cfg["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        fm.apply(None, &cfg, "alice", false, at(T1)).unwrap_err(),
        ApplyError::ManagedFieldsInRequest
    );
}

#[test]
fn status_is_not_owned_through_the_main_resource() {
    let fm = deployments();
    let mut cfg = deploy(1, "app");
    cfg["status"] = json!({"replicas": 7});
    let obj = fm.apply(None, &cfg, "alice", false, at(T1)).unwrap();
    assert!(
        fields_of(&obj, "alice", "Apply")
            .child(&PathElement::field("status"))
            .is_none()
    );
}

#[test]
fn updates_take_the_fields_they_change() {
    let fm = deployments();
    // `kubectl create`: everything it sent is its own.
    let mut obj = deploy(1, "app");
    obj["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({});
    fm.update(None, &mut obj, "kubectl-create", at(T1));
    assert_eq!(managers(&obj), vec!["kubectl-create/Update"]);
    let created = fields_of(&obj, "kubectl-create", "Update").to_fields_v1();
    // Structs a Go object always has are not "added"; maps, pointers and items are.
    let spec = &created["f:spec"];
    assert_eq!(
        spec["f:strategy"],
        json!({"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}})
    );
    assert_eq!(
        spec["f:template"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}
            }}}
        })
    );
    assert!(spec.get(".").is_none());

    // `kubectl scale` through the scale subresource takes spec.replicas.
    let scale = FieldManager {
        subresource: Some("scale"),
        reset: ResetFields::None,
        ..deployments()
    };
    let mut scaled = obj.clone();
    scaled["spec"]["replicas"] = json!(4);
    scale.update(Some(&obj), &mut scaled, "kubectl", at(T2));
    assert_eq!(
        managers(&scaled),
        vec!["kubectl-create/Update", "kubectl/Update/scale"]
    );
    assert!(!fields_of(&scaled, "kubectl-create", "Update").has(&path("spec.replicas")));
    let scaler = &entries(&scaled)[1];
    assert_eq!(scaler["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(scaler["time"], T2);

    // Applying another replica count now conflicts with the scaler.
    let msg = conflicts(fm.apply(Some(&scaled), &deploy(2, "app"), "kubectl", false, at(T3)));
    assert_eq!(
        msg,
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );

    // An update changing nothing records nothing.
    let mut same = scaled.clone();
    scale.update(Some(&scaled), &mut same, "kubectl", at(T3));
    assert_eq!(same, scaled);
}

#[test]
fn status_writes_record_the_subresource() {
    let fm = deployments();
    let mut obj = deploy(1, "app");
    fm.update(None, &mut obj, "kubectl-create", at(T1));
    let status = deployment_status();
    let mut new = obj.clone();
    new["status"] = json!({"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]});
    // A status write cannot set managed fields.
    new["metadata"]["managedFields"] = json!([]);
    status.update(Some(&obj), &mut new, "kube-controller-manager", at(T2));
    assert_eq!(
        managers(&new),
        vec![
            "kubectl-create/Update",
            "kube-controller-manager/Update/status"
        ]
    );
    assert_eq!(
        entries(&new)[1]["fieldsV1"],
        json!({"f:status": {
            "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}},
            "f:replicas": {}
        }})
    );
}

#[test]
fn a_status_write_moves_only_the_status_fields_it_changes() {
    let fm = deployments();
    let mut obj = deploy(1, "app");
    fm.update(None, &mut obj, "kubectl-create", at(T1));
    let status = deployment_status();
    let mut first = obj.clone();
    first["status"] = json!({"replicas": 1, "readyReplicas": 1});
    status.update(Some(&obj), &mut first, "controller", at(T2));
    // The second writer sends the stored list back (a status patch keeps it),
    // changes one field of the first writer's and adds one of its own.
    let mut second = first.clone();
    second["status"] = json!({"replicas": 1, "readyReplicas": 0, "observedGeneration": 1});
    status.update(Some(&first), &mut second, "kubelet", at(T3));
    assert_eq!(
        managers(&second),
        vec![
            "kubectl-create/Update",
            "controller/Update/status",
            "kubelet/Update/status"
        ]
    );
    assert_eq!(entries(&second)[0], entries(&obj)[0]);
    assert_eq!(
        entries(&second)[1]["fieldsV1"],
        json!({"f:status": {"f:replicas": {}}})
    );
    assert_eq!(
        entries(&second)[2]["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}, "f:readyReplicas": {}}})
    );
}

#[test]
fn managed_fields_sent_by_clients() {
    let fm = deployments();
    let mut obj = deploy(1, "app");
    fm.update(None, &mut obj, "kubectl-create", at(T1));
    let original = entries(&obj);

    // Garbage is replaced by what is stored.
    let mut bad = obj.clone();
    bad["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    bad["spec"]["replicas"] = json!(2);
    fm.update(Some(&obj), &mut bad, "kubectl-edit", at(T2));
    assert_eq!(
        managers(&bad),
        vec!["kubectl-create/Update", "kubectl-edit/Update"]
    );

    // Sent unchanged (kubectl replace, edit): kept.
    let mut same = obj.clone();
    same["spec"]["paused"] = json!(true);
    fm.update(Some(&obj), &mut same, "kubectl-replace", at(T2));
    assert_eq!(entries(&same)[0], original[0]);

    // Sent in another form: written back in the server's own (keys sorted).
    let mut reordered = obj.clone();
    reordered["metadata"]["managedFields"] = json!([{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
        "time": T1, "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:template": {}, "f:replicas": {}}}
    }]);
    reordered["spec"]["paused"] = json!(true);
    fm.update(Some(&obj), &mut reordered, "kubectl-replace", at(T2));
    let written = serde_json::to_string(&entries(&reordered)[0]["fieldsV1"]).unwrap();
    assert_eq!(written, r#"{"f:spec":{"f:replicas":{},"f:template":{}}}"#);

    // `[]` resets them, and an object without managed fields is not tracked...
    let mut reset = obj.clone();
    reset["metadata"]["managedFields"] = json!([]);
    reset["spec"]["replicas"] = json!(3);
    fm.update(Some(&obj), &mut reset, "kubectl-patch", at(T2));
    assert!(reset["metadata"].get("managedFields").is_none());
    let mut later = reset.clone();
    later["spec"]["replicas"] = json!(4);
    fm.update(Some(&reset), &mut later, "kubectl-patch", at(T3));
    assert!(later["metadata"].get("managedFields").is_none());

    // ...until the first apply, which gives what was there to `before-first-apply`.
    let obj = fm
        .apply(Some(&later), &deploy(4, "app"), "kubectl", false, at(T3))
        .unwrap();
    assert_eq!(
        managers(&obj),
        vec!["kubectl/Apply", "before-first-apply/Update"]
    );
    let msg = conflicts(fm.apply(Some(&later), &deploy(5, "app"), "kubectl", false, at(T3)));
    assert!(
        msg.contains("conflict with \"before-first-apply\" using apps/v1: .spec.replicas"),
        "{msg}"
    );
}

#[test]
fn client_side_apply_upgrades_to_server_side_apply() {
    let fm = deployments();
    // `kubectl apply` (client-side) created the object with the annotation.
    let mut cfg = deploy(3, "app:1");
    let last = format!("{}\n", serde_json::to_string(&deploy(3, "app:1")).unwrap());
    cfg["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: last});
    let mut obj = cfg;
    fm.update(None, &mut obj, "kubectl-client-side-apply", at(T1));

    // Another manager may not change what client-side apply set...
    let msg = conflicts(fm.apply(Some(&obj), &deploy(5, "app:1"), "someone", false, at(T2)));
    assert_eq!(
        msg,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    // ...but kubectl's server-side apply may, since the live value is the one it
    // last applied client-side; the annotation follows the new configuration.
    let obj = fm
        .apply(Some(&obj), &deploy(5, "app:1"), "kubectl", false, at(T2))
        .unwrap();
    assert_eq!(obj["spec"]["replicas"], 5);
    let annotation = obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    let expected: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(expected, deploy(5, "app:1"));
    assert!(
        annotation.starts_with("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\"")
    );
    assert!(annotation.ends_with("}\n"));

    // A changed field whose live value differs from the annotation still conflicts.
    let mut drifted = obj.clone();
    drifted["spec"]["template"]["spec"]["containers"][0]["image"] = json!("hand-edited");
    let mut edited = drifted.clone();
    fm.update(Some(&obj), &mut edited, "kubectl-edit", at(T2));
    let msg = conflicts(fm.apply(Some(&edited), &deploy(5, "app:2"), "kubectl", false, at(T3)));
    assert!(
        msg.contains("conflict with \"kubectl-edit\" using apps/v1"),
        "{msg}"
    );

    // kubectl then saves the annotation under `kubectl-last-applied`...
    let save = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "web", "namespace": "default", "annotations": {LAST_APPLIED_ANNOTATION: annotation}}});
    let obj = fm
        .apply(Some(&obj), &save, "kubectl-last-applied", false, at(T3))
        .unwrap();
    assert!(managers(&obj).contains(&"kubectl-last-applied/Apply".to_string()));

    // ...and moves client-side apply's fields to its own entry with a JSON patch
    // of managedFields, which the server keeps as sent.
    let mut managed = ManagedFields::decode(obj.pointer("/metadata/managedFields")).unwrap();
    let csa = ManagerId::new(
        "kubectl-client-side-apply",
        Operation::Update,
        "apps/v1",
        "",
    );
    let kubectl = ManagerId::new("kubectl", Operation::Apply, "", "");
    let csa_set = managed.entries.remove(&csa).unwrap().set().clone();
    let entry = managed.entries.get_mut(&kubectl).unwrap();
    entry.changed().union_with(&csa_set);
    let mut migrated = obj.clone();
    migrated["metadata"]["managedFields"] = managed.encode().unwrap();
    fm.update(Some(&obj), &mut migrated, "kubectl", at(T3));
    // (The annotation's save changed nothing, so it has no time and sorts first.)
    assert_eq!(
        managers(&migrated),
        vec!["kubectl-last-applied/Apply", "kubectl/Apply"]
    );

    // The next server-side apply owns it all and keeps the annotation.
    let obj = fm
        .apply(
            Some(&migrated),
            &deploy(6, "app:1"),
            "kubectl",
            false,
            at(T3),
        )
        .unwrap();
    assert_eq!(obj["spec"]["replicas"], 6);
    assert!(obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].is_string());
    let annotation_path = [
        PathElement::field("metadata"),
        PathElement::field("annotations"),
        PathElement::field(LAST_APPLIED_ANNOTATION),
    ];
    assert!(!fields_of(&obj, "kubectl", "Apply").has(&annotation_path));
    assert!(fields_of(&obj, "kubectl-last-applied", "Apply").has(&annotation_path));
}

#[test]
fn custom_resources_without_structure_are_granular_maps_and_atomic_lists() {
    let gvk = GroupVersionKind::new("example.com", "v1", "Widget");
    let schema = CustomSchema::from_crd_schema(
        gvk,
        &json!({"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }}),
    )
    .unwrap();
    let fm = FieldManager {
        catalog: builtin(),
        root: &schema.root,
        api_version: "example.com/v1",
        kind: "Widget",
        subresource: None,
        reset: ResetFields::None,
        custom: true,
    };
    let widget = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});
    let obj = fm
        .apply(
            None,
            &widget(json!({"a": {"x": 1}, "list": [1, 2]})),
            "alice",
            false,
            at(T1),
        )
        .unwrap();
    let alice = fields_of(&obj, "alice", "Apply").to_fields_v1();
    assert_eq!(
        alice,
        json!({"f:spec": {"f:a": {".": {}, "f:x": {}}, "f:list": {}}})
    );
    let obj = fm
        .apply(
            Some(&obj),
            &widget(json!({"a": {"y": 2}})),
            "bob",
            false,
            at(T2),
        )
        .unwrap();
    assert_eq!(obj["spec"]["a"], json!({"x": 1, "y": 2}));
    let msg = conflicts(fm.apply(
        Some(&obj),
        &widget(json!({"list": [3]})),
        "bob",
        false,
        at(T2),
    ));
    assert_eq!(
        msg,
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.list"
    );

    // A create through an update marks the untyped spec as added.
    let mut created = widget(json!({"a": 1}));
    fm.update(None, &mut created, "kubectl-create", at(T1));
    assert_eq!(
        entries(&created)[0]["fieldsV1"],
        json!({"f:spec": {".": {}, "f:a": {}}})
    );
}

#[test]
fn update_entries_are_capped() {
    let fm = deployments();
    let mut obj = deploy(1, "app");
    fm.update(None, &mut obj, "creator", at(T1));
    for i in 0..12 {
        let mut next = obj.clone();
        next["metadata"]["labels"] = json!({format!("l{i}"): "x"});
        let mut labels = obj["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert(format!("l{i}"), json!("x"));
        next["metadata"]["labels"] = Value::Object(labels);
        let t = jiff::Timestamp::from_second(1_800_000_000 + i).unwrap();
        fm.update(Some(&obj), &mut next, &format!("writer-{i:02}"), t);
        obj = next;
    }
    let names = managers(&obj);
    assert_eq!(names.len(), MAX_UPDATE_MANAGERS);
    assert!(
        names.contains(&"ancient-changes/Update".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"writer-11/Update".to_string()));
    assert!(!names.contains(&"creator/Update".to_string()));
}

#[test]
fn apply_entries_come_first() {
    let fm = deployments();
    let mut obj = deploy(1, "app");
    fm.update(None, &mut obj, "kubectl-create", at(T1));
    let label = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"a": "b"}}});
    let obj = fm.apply(Some(&obj), &label, "zz", false, at(T2)).unwrap();
    assert_eq!(managers(&obj), vec!["zz/Apply", "kubectl-create/Update"]);
}

#[test]
fn managers_from_user_agents() {
    assert_eq!(
        manager_from_user_agent("kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"),
        "kubectl"
    );
    assert_eq!(
        manager_from_user_agent("kube-controller-manager/v1.33.0 (linux/amd64)"),
        "kube-controller-manager"
    );
    assert_eq!(manager_from_user_agent("a\u{7}b"), "ab");
    assert_eq!(manager_from_user_agent(&"x".repeat(300)).len(), 128);
}
