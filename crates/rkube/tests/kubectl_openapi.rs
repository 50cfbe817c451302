//! What kubectl reads from `/openapi/v2` (gnostic protobuf) and how bodies it cannot
//! map are answered, through the real kubectl.

mod common;

use common::Cluster;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn explain_reads_the_protobuf_swagger_document() {
    let c = Cluster::start();
    let out = c.kubectl_ok(&[
        "explain",
        "deployment.spec.strategy",
        "--output=plaintext-openapiv2",
    ]);
    assert!(out.contains("KIND:     Deployment"), "{out}");
    assert!(out.contains("VERSION:  apps/v1"), "{out}");
    assert!(out.contains("RESOURCE: strategy <Object>"), "{out}");
    assert!(out.contains("rollingUpdate\t<Object>"), "{out}");
    assert!(out.contains("type\t<string>"), "{out}");
}

#[test]
fn unknown_kinds_are_reported_and_the_rest_applied() {
    let c = Cluster::start();
    let docs = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: foo
data:
  a: b
---
apiVersion: example.com/v1
kind: Bogus
metadata:
  name: foo
"#;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], docs);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no matches for kind \"Bogus\" in version \"example.com/v1\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        c.kubectl_ok(&["get", "cm", "foo", "-o", "jsonpath={.data.a}"]),
        "b"
    );
}

#[test]
fn bodies_of_the_wrong_kind_or_format_are_unrecognized() {
    let c = Cluster::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";
    let out = c.kubectl_stdin(&["create", "--raw", "/api/v1/namespaces", "-f", "-"], pod);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the object provided is unrecognized (must be of type Namespace)"),
        "{err}"
    );
    // The start of the body, in hex when it is not JSON.
    assert!(err.contains("61706956657273696f6e3a207631"), "{err}");
    let json_pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#;
    let out = c.kubectl_stdin(
        &["create", "--raw", "/api/v1/namespaces", "-f", "-"],
        json_pod,
    );
    assert!(
        stderr(&out).contains("Pod in version \"v1\" cannot be handled as a Namespace"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_volume_without_a_source_is_an_empty_dir() {
    let c = Cluster::start();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: scratch
spec:
  containers:
  - name: c
    image: registry.k8s.io/pause:3.10.1
  volumes:
  - name: tmp
"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], pod);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        c.kubectl_ok(&["get", "pod", "scratch", "-o", "jsonpath={.spec.volumes[0]}"]),
        r#"{"emptyDir":{},"name":"tmp"}"#
    );
}

/// kubectl 1.27 reads only `/openapi/v2` (for validation, apply and explain).
#[test]
fn kubectl_1_27_validates_and_applies_from_openapi_v2() {
    let kubectl = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
    if !std::path::Path::new(kubectl).exists() {
        eprintln!("skipped: {kubectl} is not installed");
        return;
    }
    let c = Cluster::start();
    let run = |args: &[&str], input: &str| {
        let mut cmd = std::process::Command::new(kubectl);
        cmd.args(args)
            .env("KUBECONFIG", &c.kubeconfig)
            .env("HOME", &c.home);
        common::run_with_stdin(cmd, input)
    };
    let deploy = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;
    let out = run(&["apply", "-f", "-"], deploy);
    assert!(out.status.success(), "{}", stderr(&out));
    let changed = deploy.replace("nginx:1.27", "nginx:1.28");
    let out = run(&["apply", "-f", "-"], &changed);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web configured"),
        "{}",
        stderr(&out)
    );
    let unknown = deploy.replace("  selector:", "  frobnicate: 1\n  selector:");
    let out = run(&["apply", "-f", "-"], &unknown);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown field \"spec.frobnicate\""),
        "{}",
        stderr(&out)
    );
    let out = run(&["explain", "pods.spec.containers.ports"], "");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("containerPort"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn field_validation_warns_and_refuses_in_upstreams_words() {
    let c = Cluster::start();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/kubectl-txtar/hack/testdata/invalid-deployment-unknown-and-duplicate-fields.yaml",
    );
    let file = path.to_str().expect("path");
    let out = c.kubectl(&["create", "-f", file, "--validate=warn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Warning: unknown field \"spec.baz\""), "{err}");
    assert!(err.contains("Warning: unknown field \"spec.foo\""), "{err}");
    c.kubectl_ok(&["delete", "deployment", "invalid-nginx-deployment"]);
    let err = c.kubectl_err(&["create", "-f", file, "--validate=strict"]);
    assert!(
        err.contains(
            "strict decoding error: unknown field \"spec.baz\", unknown field \"spec.foo\""
        ),
        "{err}"
    );
}
