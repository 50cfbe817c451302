//! The user's own commands and manifests (shared/seed) through the real kubectl,
//! against `rkube server` as a process.

mod common;

use common::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fe-nginx-deployment
  labels:
    app: fe-nginx
spec:
  replicas: 2
  selector:
    matchLabels:
      app: fe-nginx
  template:
    metadata:
      labels:
        app: fe-nginx
    spec:
      containers:
      - name: fe-nginx
        image: jnuho/fe-nginx:latest
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 80
"#;

#[test]
fn namespaces_and_cluster_info() {
    let c = Cluster::start();
    let ns = c.kubectl_ok(&["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "missing namespace {n} in:\n{ns}");
    }
    assert!(
        c.kubectl_ok(&["create", "namespace", "my-namespace"])
            .contains("namespace/my-namespace created")
    );
    let err = c.kubectl_err(&["create", "namespace", "my-namespace"]);
    assert!(err.contains("AlreadyExists"), "{err}");
    let err = c.kubectl_err(&["create", "namespace", "myNameSpace"]);
    assert!(err.contains("Invalid value: \"myNameSpace\""), "{err}");
    let info = c.kubectl_ok(&["cluster-info"]);
    assert!(
        info.contains(&format!(
            "Kubernetes control plane is running at https://127.0.0.1:{}",
            c.port
        )),
        "{info}"
    );
    let version = c.kubectl_ok(&["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");
}

#[test]
fn create_deployment_and_read_it_back() {
    let c = Cluster::start();
    let out = c.kubectl_ok(&["create", "deployment", "nginx-depl", "--image=nginx:alpine"]);
    assert!(out.contains("deployment.apps/nginx-depl created"), "{out}");
    let wide = c.kubectl_ok(&["get", "deployment", "-A", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for col in [
        "NAMESPACE",
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ] {
        assert!(header.contains(col), "missing column {col}: {header}");
    }
    assert!(
        wide.contains("nginx:alpine") && wide.contains("app=nginx-depl"),
        "{wide}"
    );
    let yaml = c.kubectl_ok(&["get", "deploy", "nginx-depl", "-o", "yaml"]);
    for field in [
        "kind: Deployment",
        "revisionHistoryLimit: 10",
        "maxSurge: 25%",
        "imagePullPolicy: IfNotPresent",
        "terminationGracePeriodSeconds: 30",
        "generation: 1",
    ] {
        assert!(yaml.contains(field), "missing {field:?} in:\n{yaml}");
    }
}

#[test]
fn apply_twice_is_unchanged_and_a_change_is_patched() {
    let c = Cluster::start();
    let out = c.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("deployment.apps/fe-nginx-deployment created"),
        "{out:?}"
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged"),
        "{out:?}"
    );
    let changed = DEPLOYMENT
        .replace("replicas: 2", "replicas: 4")
        .replace("containerPort: 80", "containerPort: 8080");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &changed);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configured"),
        "{out:?}"
    );
    assert!(
        out.stderr.is_empty(),
        "apply printed warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = c.kubectl_ok(&[
        "get",
        "deploy",
        "fe-nginx-deployment",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}",
    ]);
    assert_eq!(got, "4 8080 2");
}

#[test]
fn wrong_types_in_a_manifest_are_refused_with_the_field() {
    let c = Cluster::start();
    let ingress = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: myapp-ingress
spec:
  rules:
  - host: myapp-com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: myapp-internal-service
            port: 8080
"#;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], ingress);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.rules.http.paths.backend.service.port"),
        "{err}"
    );
    let err = c.kubectl_err(&["get", "ingress", "myapp-ingress"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let c = Cluster::start();
    let svc = r#"
apiVersion: v1
kind: Service
metadata:
  name: myapp-external-service
spec:
  selector:
    app: myapp
  type: LoadBalancer
  ports:
    - protocol: TCP
      port: 8080
      targetPort: 8080
      nodePort: 30510
---
apiVersion: v1
kind: Service
metadata:
  name: mongodb-service-headless
spec:
  clusterIP: None
  selector:
    app: mongodb
  ports:
    - protocol: TCP
      port: 27017
      targetPort: 27017
"#;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], svc);
    assert!(out.status.success(), "{out:?}");
    let got = c.kubectl_ok(&["get", "svc"]);
    assert!(got.contains("8080:30510/TCP"), "{got}");
    assert!(got.contains("LoadBalancer"), "{got}");
    let headless = got
        .lines()
        .find(|l| l.starts_with("mongodb-service-headless"))
        .unwrap_or_default();
    assert!(headless.contains("None"), "{got}");
    // The same node port again is refused.
    let again = svc.replace("myapp-external-service", "second-service");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &again);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("provided port is already allocated"), "{err}");
    // Deleting a service frees its port.
    c.kubectl_ok(&["delete", "svc", "myapp-external-service"]);
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &again);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn label_annotate_scale_patch_and_delete() {
    let c = Cluster::start();
    c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:alpine",
        "--replicas=1",
    ]);
    c.kubectl_ok(&["label", "deploy", "web", "tier=fe"]);
    c.kubectl_ok(&["annotate", "deploy", "web", "note=hi"]);
    c.kubectl_ok(&["scale", "deploy", "web", "--replicas=3"]);
    c.kubectl_ok(&[
        "scale",
        "deploy",
        "web",
        "--current-replicas=3",
        "--replicas=5",
    ]);
    let err = c.kubectl_err(&[
        "scale",
        "deploy",
        "web",
        "--current-replicas=3",
        "--replicas=6",
    ]);
    assert!(err.contains("Expected replicas to be 3, was 5"), "{err}");
    c.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":5}}"#,
    ]);
    c.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#,
    ]);
    c.kubectl_ok(&["set", "image", "deploy/web", "nginx=nginx:1.27"]);
    let got = c.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.labels.tier} {.metadata.annotations.note} {.spec.replicas} {.spec.minReadySeconds} {.metadata.labels.x} {.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(got, "fe hi 5 5 y nginx:1.27");
    let shown = c.kubectl_ok(&["get", "deploy", "-l", "tier=fe", "--show-labels"]);
    assert!(shown.contains("tier=fe"), "{shown}");
    let out = c.kubectl_ok(&["delete", "deploy", "web"]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let err = c.kubectl_err(&["get", "deploy", "web"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn api_resources_list_scopes() {
    let c = Cluster::start();
    let cluster = c.kubectl_ok(&["api-resources", "--namespaced=false"]);
    assert!(
        cluster.contains("persistentvolumes") && cluster.contains("nodes"),
        "{cluster}"
    );
    assert!(!cluster.contains("configmaps"), "{cluster}");
    let namespaced = c.kubectl_ok(&["api-resources", "--namespaced=true"]);
    assert!(
        namespaced.contains("deployments") && namespaced.contains("deploy"),
        "{namespaced}"
    );
    assert!(!namespaced.contains("persistentvolumes"), "{namespaced}");
    let explain = c.kubectl_ok(&["explain", "deployment.spec"]);
    assert!(
        explain.contains("FIELD: spec <DeploymentSpec>") && explain.contains("replicas"),
        "{explain}"
    );
}

#[test]
fn watch_sees_other_clients_writes() {
    let c = Cluster::start();
    let mut watch = c
        .kubectl_cmd()
        .args(["get", "cm", "--watch", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    std::thread::sleep(std::time::Duration::from_millis(800));
    c.kubectl_ok(&["create", "configmap", "c1", "--from-literal=a=b"]);
    c.kubectl_ok(&["delete", "configmap", "c1"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ADDED") && text.contains("c1"), "{text}");
    assert!(text.contains("DELETED"), "{text}");
}

#[test]
fn edit_saves_the_change() {
    let c = Cluster::start();
    c.kubectl_ok(&["create", "deployment", "nginx-depl", "--image=nginx:alpine"]);
    // A non-interactive editor: rewrite the image in the file kubectl hands over.
    let editor = c.data_dir().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/nginx:alpine/nginx:1.27/' \"$1\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = c
        .kubectl_cmd()
        .env("KUBE_EDITOR", &editor)
        .args(["edit", "deployment", "nginx-depl"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/nginx-depl edited"));
    let image = c.kubectl_ok(&[
        "get",
        "deploy",
        "nginx-depl",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.27");
}

#[test]
fn describe_wait_and_diff() {
    let c = Cluster::start();
    c.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "my-service",
        "--tcp=80:8080",
    ]);
    let d = c.kubectl_ok(&["describe", "svc", "my-service"]);
    for line in [
        "Name:",
        "my-service",
        "Type:",
        "ClusterIP",
        "Port:",
        "80/TCP",
        "TargetPort:",
        "8080/TCP",
        "Events:",
    ] {
        assert!(d.contains(line), "missing {line:?} in:\n{d}");
    }
    c.kubectl_ok(&["create", "configmap", "cm1", "--from-literal=a=1"]);
    c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.data.a}=1",
        "configmap/cm1",
        "--timeout=10s",
    ]);
    let out = c.kubectl_ok(&["wait", "--for=delete", "configmap/absent", "--timeout=5s"]);
    let _ = out;
    let changed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\ndata:\n  a: \"2\"\n";
    let out = c.kubectl_stdin(&["diff", "-f", "-"], changed);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  a: \"1\"") && diff.contains("+  a: \"2\""),
        "{diff}"
    );
    // diff changed nothing.
    assert_eq!(
        c.kubectl_ok(&["get", "cm", "cm1", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    let metrics = c.kubectl_ok(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains("apiserver_request_total"), "{metrics}");
}
