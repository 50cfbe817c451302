//! Server-side apply through the real kubectl against a real `rkube server`.

mod common;

use common::{Cluster, stderr, stdout};
use serde_json::Value;

fn deployment(replicas: u32, image: &str, extra_label: Option<&str>) -> String {
    let label = extra_label
        .map(|l| format!("\n  labels:\n    {l}"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web{label}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: c
        image: {image}
"
    )
}

/// `manager/operation[/subresource]` of each managedFields entry.
fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let mut s = format!(
                        "{}/{}",
                        e["manager"].as_str().unwrap_or(""),
                        e["operation"].as_str().unwrap_or("")
                    );
                    if let Some(sub) = e["subresource"].as_str() {
                        s.push('/');
                        s.push_str(sub);
                    }
                    s
                })
                .collect()
        })
        .unwrap_or_default()
}

fn resource_version(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn apply_server_side_creates_updates_and_reports_conflicts() {
    let cluster = Cluster::start();
    let ssa = ["--server-side"];

    // Created, then applied again unchanged: the object is not written.
    let out = cluster.apply_manifest("d.yaml", &deployment(2, "nginx:1.27", None), &ssa);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deployment.apps/web serverside-applied\n");
    let first = cluster.get_json(&["deploy", "web"]);
    assert_eq!(managers(&first), vec!["kubectl/Apply"]);
    let out = cluster.apply_manifest("d.yaml", &deployment(2, "nginx:1.27", None), &ssa);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = cluster.get_json(&["deploy", "web"]);
    assert_eq!(resource_version(&first), resource_version(&again));

    // A changed manifest updates the object.
    let out = cluster.apply_manifest("d.yaml", &deployment(3, "nginx:1.27", None), &ssa);
    assert!(out.status.success(), "{}", stderr(&out));
    let updated = cluster.get_json(&["deploy", "web"]);
    assert_eq!(updated["spec"]["replicas"], 3);
    assert_ne!(resource_version(&first), resource_version(&updated));

    // `kubectl scale` takes spec.replicas through the scale subresource...
    cluster.kubectl_ok(&["scale", "deploy", "web", "--replicas=5"]);
    let scaled = cluster.get_json(&["deploy", "web"]);
    assert_eq!(
        managers(&scaled),
        vec!["kubectl/Apply", "kubectl/Update/scale"]
    );

    // ...so applying another count conflicts, with upstream's message...
    let out = cluster.apply_manifest("d.yaml", &deployment(3, "nginx:1.27", None), &ssa);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        ),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(cluster.get_json(&["deploy", "web"])["spec"]["replicas"], 5);

    // ...and forcing wins, taking the field back.
    let out = cluster.apply_manifest(
        "d.yaml",
        &deployment(3, "nginx:1.27", None),
        &["--server-side", "--force-conflicts"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let forced = cluster.get_json(&["deploy", "web"]);
    assert_eq!(forced["spec"]["replicas"], 3);
    assert_eq!(managers(&forced), vec!["kubectl/Apply"]);

    // Another field manager may not change kubectl's image.
    let out = cluster.apply_manifest(
        "other.yaml",
        &deployment(3, "nginx:1.28", None),
        &["--server-side", "--field-manager=release-bot"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "conflict with \"kubectl\": .spec.template.spec.containers[name=\"c\"].image"
        ),
        "{}",
        stderr(&out)
    );

    // A field no longer applied is removed.
    let out = cluster.apply_manifest(
        "d.yaml",
        &deployment(3, "nginx:1.27", Some("tier: fe")),
        &ssa,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cluster.get_json(&["deploy", "web"])["metadata"]["labels"]["tier"],
        "fe"
    );
    let out = cluster.apply_manifest("d.yaml", &deployment(3, "nginx:1.27", None), &ssa);
    assert!(out.status.success(), "{}", stderr(&out));
    let labels = &cluster.get_json(&["deploy", "web"])["metadata"]["labels"];
    assert!(labels.get("tier").is_none(), "{labels}");

    // Server-side dry runs and diffs change nothing.
    let out = cluster.apply_manifest(
        "d.yaml",
        &deployment(4, "nginx:1.27", None),
        &["--server-side", "--dry-run=server"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "deployment.apps/web serverside-applied (server dry run)\n"
    );
    let path = cluster.write_file("d4.yaml", &deployment(4, "nginx:1.27", None));
    let out = cluster.kubectl(&["diff", "--server-side", "-f", &path.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let diff = stdout(&out);
    assert!(
        diff.contains("-  replicas: 3") && diff.contains("+  replicas: 4"),
        "{diff}"
    );
    assert!(!diff.contains("managedFields"), "{diff}");
    assert_eq!(cluster.get_json(&["deploy", "web"])["spec"]["replicas"], 3);

    // managedFields show only when asked, in FieldsV1.
    let plain = cluster.kubectl_ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
    let shown = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for needle in [
        "managedFields:",
        "manager: kubectl",
        "operation: Apply",
        "fieldsType: FieldsV1",
        "f:replicas: {}",
        "k:{\"name\":\"c\"}:",
    ] {
        assert!(shown.contains(needle), "{needle} missing from:\n{shown}");
    }
}

#[test]
fn server_side_apply_takes_over_from_client_side_apply() {
    let cluster = Cluster::start();
    // Client-side apply creates the object with its annotation.
    let out = cluster.apply_manifest("d.yaml", &deployment(2, "nginx:1.27", None), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created = cluster.get_json(&["deploy", "web"]);
    assert_eq!(managers(&created), vec!["kubectl-client-side-apply/Update"]);

    // Server-side apply of a changed manifest: no conflict with the client-side
    // manager; kubectl saves the annotation under `kubectl-last-applied` and moves
    // the client-side fields to its own entry.
    let out = cluster.apply_manifest(
        "d.yaml",
        &deployment(4, "nginx:1.27", None),
        &["--server-side"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let upgraded = cluster.get_json(&["deploy", "web"]);
    assert_eq!(upgraded["spec"]["replicas"], 4);
    let mut names = managers(&upgraded);
    names.sort();
    assert_eq!(names, vec!["kubectl-last-applied/Apply", "kubectl/Apply"]);
    let last: Value = serde_json::from_str(
        upgraded["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("the annotation is kept"),
    )
    .unwrap();
    assert_eq!(
        last["spec"]["replicas"], 4,
        "the annotation follows the apply"
    );

    // From now on, server-side applies are plain.
    let out = cluster.apply_manifest(
        "d.yaml",
        &deployment(1, "nginx:1.27", None),
        &["--server-side"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.get_json(&["deploy", "web"])["spec"]["replicas"], 1);
}

#[test]
fn custom_resources_merge_untyped_maps_and_replace_lists() {
    let cluster = Cluster::start();
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
";
    let out = cluster.apply_manifest("crd.yaml", crd, &["--server-side"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let widget = |spec: &str| {
        format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\nspec:\n{spec}")
    };
    // The CRD may take a moment to be served.
    let mut out = cluster.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        &widget("  size: 1\n  tags: [a, b]\n  nested: {first: 1}\n"),
    );
    for _ in 0..50 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = cluster.kubectl_stdin(
            &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
            &widget("  size: 1\n  tags: [a, b]\n  nested: {first: 1}\n"),
        );
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        &widget("  color: red\n  nested: {second: 2}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let w = cluster.get_json(&["widget", "w"]);
    assert_eq!(
        w["spec"],
        serde_json::json!({"size": 1, "tags": ["a", "b"], "nested": {"first": 1, "second": 2}, "color": "red"})
    );
    // Untyped lists are atomic: bob cannot replace alice's.
    let out = cluster.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        &widget("  tags: [c]\n"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Apply failed with 1 conflict: conflict with \"alice\": .spec.tags"),
        "{}",
        stderr(&out)
    );
}
