//! End to end on a real node: `rkube server` as a process (control plane and node),
//! the real `kubectl`, containers from the local test registry. Each test has a
//! server, bridge, CIDRs and directories of its own (see common/node.rs) and removes
//! all of it when done.

mod common;
mod terminal;

use common::node::{BUSYBOX, HTTPD, NodeCluster};
use serde_json::Value;

/// The seed's mongodb / mongo-express application, on the test images: a database
/// stand-in and a web front end that read a Secret and a ConfigMap, a ClusterIP
/// Service and a NodePort Service.
fn seed_app(node_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: mongodb-secret
type: Opaque
data:
  mongo-root-username: dXNlcm5hbWU=
  mongo-root-password: cGFzc3dvcmQ=
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: mongodb-configmap
data:
  database_url: mongodb-service
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mongodb
  labels:
    app: mongodb
spec:
  replicas: 1
  selector:
    matchLabels:
      app: mongodb
  template:
    metadata:
      labels:
        app: mongodb
    spec:
      containers:
      - name: mongodb
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo \"db user=$MONGO_INITDB_ROOT_USERNAME\" > /www/index.html && exec httpd -f -p 27017 -h /www"]
        ports:
        - containerPort: 27017
        env:
        - name: MONGO_INITDB_ROOT_USERNAME
          valueFrom:
            secretKeyRef:
              name: mongodb-secret
              key: mongo-root-username
        - name: MONGO_INITDB_ROOT_PASSWORD
          valueFrom:
            secretKeyRef:
              name: mongodb-secret
              key: mongo-root-password
---
apiVersion: v1
kind: Service
metadata:
  name: mongodb-service
spec:
  selector:
    app: mongodb
  ports:
  - protocol: TCP
    port: 27017
    targetPort: 27017
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mongo-express
  labels:
    app: mongo-express
spec:
  replicas: 1
  selector:
    matchLabels:
      app: mongo-express
  template:
    metadata:
      labels:
        app: mongo-express
    spec:
      containers:
      - name: mongo-express
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo \"express admin=$ME_CONFIG_MONGODB_ADMINUSERNAME server=$ME_CONFIG_MONGODB_SERVER\" > /www/index.html && exec httpd -f -p 8081 -h /www"]
        ports:
        - containerPort: 8081
        env:
        - name: ME_CONFIG_MONGODB_ADMINUSERNAME
          valueFrom:
            secretKeyRef:
              name: mongodb-secret
              key: mongo-root-username
        - name: ME_CONFIG_MONGODB_ADMINPASSWORD
          valueFrom:
            secretKeyRef:
              name: mongodb-secret
              key: mongo-root-password
        - name: ME_CONFIG_MONGODB_SERVER
          valueFrom:
            configMapKeyRef:
              name: mongodb-configmap
              key: database_url
        readinessProbe:
          httpGet:
            path: /
            port: 8081
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: mongo-express-service
spec:
  selector:
    app: mongo-express
  type: LoadBalancer
  ports:
  - protocol: TCP
    port: 8081
    targetPort: 8081
    nodePort: {node_port}
"#
    )
}

/// `curl` of a URL on this machine (loopback or the node's own address).
fn curl(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-f", "-m", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn seed_application_runs_and_is_reached_by_dns_cluster_ip_and_node_port() {
    let c = NodeCluster::start();

    // The node: Ready, with capacity and allocatable from the host.
    let nodes = c.kubectl_ok(&["get", "nodes"]);
    let line = nodes
        .lines()
        .find(|l| l.starts_with(&c.node.node_name))
        .unwrap_or_else(|| panic!("no node line in:\n{nodes}"));
    assert!(line.contains(" Ready "), "{nodes}");
    assert!(line.contains("control-plane"), "{nodes}");
    let node = c.get(&["node", &c.node.node_name]);
    for r in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(
            node["status"]["capacity"][r].is_string(),
            "capacity {r}: {node}"
        );
        assert!(
            node["status"]["allocatable"][r].is_string(),
            "allocatable {r}: {node}"
        );
    }
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert!(
        node["spec"]["podCIDR"]
            .as_str()
            .is_some_and(|p| p.starts_with(&c.node.pod_ip_prefix)),
        "{node}"
    );
    // The cluster DNS has its Service.
    let dns = c.get(&["service", "kube-dns", "-n", "kube-system"]);
    assert_eq!(
        dns["spec"]["clusterIP"].as_str().unwrap(),
        c.node.service_cidr.replace(".0.0/16", ".0.10")
    );

    let node_port = c.node.node_port_base + 10;
    c.apply(&seed_app(node_port));
    let db = c.wait_running("app=mongodb", 1);
    let web = c.wait_running("app=mongo-express", 1);

    // `kubectl get pod -o wide`: Running, 1/1, a pod IP from the node's podCIDR, the node.
    let wide = c.kubectl_ok(&["get", "pods", "-o", "wide"]);
    for pod in [&db[0], &web[0]] {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let line = wide
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{wide}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "1/1", "{wide}");
        assert_eq!(cols[2], "Running", "{wide}");
        assert!(cols[5].starts_with(&c.node.pod_ip_prefix), "{wide}");
        assert_eq!(cols[6], c.node.node_name, "{wide}");
        let cs = container_status(pod);
        assert_eq!(cs["ready"], true);
        assert!(
            cs["containerID"]
                .as_str()
                .is_some_and(|id| id.starts_with("rkube://"))
        );
        assert!(
            cs["imageID"]
                .as_str()
                .is_some_and(|id| id.contains("@sha256:")),
            "{cs}"
        );
    }
    let db_ip = db[0]["status"]["podIP"].as_str().unwrap().to_string();
    c.wait_for("the Services' endpoints", 30, || {
        let eps = c.kubectl_ok(&[
            "get",
            "endpoints",
            "mongodb-service",
            "mongo-express-service",
        ]);
        (eps.contains(&format!("{db_ip}:27017")) && eps.contains(":8081")).then_some(())
    });

    // From the host: the NodePort on loopback and on the node's address.
    let expected = "express admin=username server=mongodb-service";
    for host in ["127.0.0.1".to_string(), c.node_ip()] {
        let url = format!("http://{host}:{node_port}/");
        let body = c.wait_for(&format!("{url} to answer"), 30, || curl(&url));
        assert_eq!(body.trim(), expected, "{url}");
    }

    // From a pod: names through the cluster DNS, the ClusterIP, the Service variables.
    let out = c.run_script(
        "client",
        "set -e
         nslookup mongodb-service.default.svc.cluster.local
         echo by-short-name: $(timeout 10 wget -qO- http://mongodb-service:27017/)
         echo by-cluster-ip: $(timeout 10 wget -qO- http://$MONGODB_SERVICE_SERVICE_HOST:$MONGODB_SERVICE_SERVICE_PORT/)
         echo by-fqdn: $(timeout 10 wget -qO- http://mongo-express-service.default.svc.cluster.local:8081/)
         echo pod-ip: $(timeout 10 wget -qO- http://$DB_IP:27017/)"
            .replace("$DB_IP", &db_ip)
            .as_str(),
    );
    let svc = c.get(&["service", "mongodb-service"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(
        out.contains(&format!("Address: {cluster_ip}")),
        "nslookup did not give {cluster_ip}:\n{out}"
    );
    assert!(out.contains("by-short-name: db user=username"), "{out}");
    assert!(out.contains("by-cluster-ip: db user=username"), "{out}");
    assert!(out.contains(&format!("by-fqdn: {expected}")), "{out}");
    assert!(out.contains("pod-ip: db user=username"), "{out}");
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn deleted_pod_stops_gracefully_and_its_replacement_runs() {
    let c = NodeCluster::start();
    let out_dir = c.node.dir.join("graceful-out");
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: graceful
spec:
  replicas: 1
  selector:
    matchLabels:
      app: graceful
  template:
    metadata:
      labels:
        app: graceful
    spec:
      terminationGracePeriodSeconds: 60
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sh", "-c", "trap 'echo TERM $(hostname) >> /out/log; exit 0' TERM; echo start $(hostname) >> /out/log; while true; do sleep 0.2; done"]
        volumeMounts:
        - name: out
          mountPath: /out
      volumes:
      - name: out
        hostPath:
          path: {}
          type: DirectoryOrCreate
"#,
        out_dir.display()
    );
    c.apply(&yaml);
    let first = c.wait_running("app=graceful", 1);
    let old = first[0]["metadata"]["name"].as_str().unwrap().to_string();
    let log = || std::fs::read_to_string(out_dir.join("log")).unwrap_or_default();
    c.wait_for("the container to start", 30, || {
        log().contains(&format!("start {old}")).then_some(())
    });

    // The container handles SIGTERM and exits well within its 60 s of grace: the
    // deletion completes long before a kill would have come.
    c.kubectl_ok(&["delete", "pod", &old, "--timeout=40s"]);
    assert!(
        log().contains(&format!("TERM {old}")),
        "the container was not sent SIGTERM:\n{}",
        log()
    );
    let second = c.wait_running("app=graceful", 1);
    let new = second[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    c.wait_for("the replacement to start", 30, || {
        log().contains(&format!("start {new}")).then_some(())
    });

    // A container that ignores SIGTERM is killed when its grace period ends.
    let stubborn = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stubborn"},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": BUSYBOX,
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]}],
        },
    });
    c.apply(&stubborn.to_string());
    c.wait_running("!app", 1);
    c.kubectl_ok(&["delete", "pod", "stubborn", "--timeout=30s"]);
    let gone = c.cluster.kubectl(&["get", "pod", "stubborn"]);
    assert!(!gone.status.success());
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn restarted_server_adopts_running_containers() {
    let mut c = NodeCluster::start();
    let node_port = c.node.node_port_base + 5;
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: httpd
        image: {HTTPD}
        readinessProbe:
          tcpSocket:
            port: 8080
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
    nodePort: {node_port}
"#
    );
    c.apply(&yaml);
    let before = c.wait_running("app=web", 2);
    let url = format!("http://127.0.0.1:{node_port}/");
    c.wait_for("the NodePort to answer", 30, || curl(&url));
    let seen = |pods: &[Value]| -> Vec<(String, String, i64, String, String)> {
        let mut v: Vec<_> = pods
            .iter()
            .map(|p| {
                let cs = container_status(p);
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    cs["containerID"].as_str().unwrap_or("").to_string(),
                    cs["restartCount"].as_i64().unwrap_or(-1),
                    cs["state"]["running"]["startedAt"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    p["status"]["podIP"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = seen(&before);

    c.crash_and_restart();
    // The kubelet is back at work once it runs a new pod.
    let out = c.run_script(
        "after-restart",
        "echo via-dns: $(timeout 10 wget -qO- http://web.default.svc.cluster.local/)",
    );
    assert!(out.contains("via-dns: hello from rkube httpd"), "{out}");
    let after = seen(&c.wait_running("app=web", 2));
    assert_eq!(
        before, after,
        "containers were not adopted as they were (name, containerID, restartCount, startedAt, podIP)"
    );
    let body = curl(&url).expect("the NodePort answers after the restart");
    assert_eq!(body.trim(), "hello from rkube httpd");
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn crashing_container_shows_crash_loop_back_off() {
    let c = NodeCluster::start();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "crasher"},
        "spec": {"containers": [{"name": "main", "image": BUSYBOX,
            "command": ["sh", "-c", "echo failing; exit 3"]}]},
    });
    c.apply(&pod.to_string());
    let p = c.wait_for("CrashLoopBackOff", 90, || {
        let p = c.get(&["pod", "crasher"]);
        let cs = container_status(&p);
        (cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && cs["restartCount"].as_i64() >= Some(1))
        .then_some(p)
    });
    let cs = container_status(&p);
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error", "{cs}");
    assert_eq!(cs["ready"], false);
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("back-off")),
        "{cs}"
    );
    let table = c.kubectl_ok(&["get", "pod", "crasher"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    assert!(c.container_log("crasher", "main").contains("failing"));
    let previous = c.kubectl_ok(&["logs", "crasher", "--previous"]);
    assert_eq!(previous, "failing\n");
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crasher",
    ]);
    assert!(events.contains("BackOff"), "{events}");
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn config_map_update_reaches_a_running_pod() {
    let c = NodeCluster::start();
    let yaml = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: watched
data:
  greeting: hello
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "while true; do echo \"greeting=$(cat /cfg/greeting)\"; sleep 0.5; done"]
    volumeMounts:
    - name: cfg
      mountPath: /cfg
  volumes:
  - name: cfg
    configMap:
      name: watched
"#
    );
    c.apply(&yaml);
    c.wait_for("the pod to read the first value", 90, || {
        c.container_log("reader", "main")
            .contains("greeting=hello")
            .then_some(())
    });
    let id = container_status(&c.get(&["pod", "reader"]))["containerID"].clone();
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "watched",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ]);
    c.wait_for("the pod to read the new value", 60, || {
        c.container_log("reader", "main")
            .contains("greeting=bonjour")
            .then_some(())
    });
    // The same container saw it: nothing was restarted.
    let cs = container_status(&c.get(&["pod", "reader"])).clone();
    assert_eq!(cs["containerID"], id);
    assert_eq!(cs["restartCount"], 0);
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn failing_readiness_takes_a_pod_out_of_its_service_until_it_recovers() {
    let c = NodeCluster::start();
    // The probe reads a ConfigMap volume, so the test flips readiness from outside.
    let yaml = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: health
data:
  ready: "yes"
---
apiVersion: v1
kind: Pod
metadata:
  name: flaky
  labels:
    app: flaky
spec:
  containers:
  - name: main
    image: {HTTPD}
    readinessProbe:
      exec:
        command: ["grep", "-q", "yes", "/health/ready"]
      periodSeconds: 1
      failureThreshold: 1
    volumeMounts:
    - name: health
      mountPath: /health
  volumes:
  - name: health
    configMap:
      name: health
---
apiVersion: v1
kind: Service
metadata:
  name: flaky
spec:
  selector:
    app: flaky
  ports:
  - port: 80
    targetPort: 8080
"#
    );
    c.apply(&yaml);
    c.wait_running("app=flaky", 1);
    let addresses = |kind: &str| -> usize {
        let eps = c.get(&["endpoints", "flaky"]);
        eps["subsets"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| s[kind].as_array().map_or(0, |a| a.len()))
                    .sum()
            })
            .unwrap_or(0)
    };
    c.wait_for("the pod in the endpoints", 30, || {
        (addresses("addresses") == 1).then_some(())
    });
    let set = |v: &str| {
        c.kubectl_ok(&[
            "patch",
            "configmap",
            "health",
            "-p",
            &format!(r#"{{"data":{{"ready":"{v}"}}}}"#),
        ]);
    };
    set("no");
    c.wait_for(
        "the pod to be not ready and out of the endpoints",
        60,
        || {
            let p = c.get(&["pod", "flaky"]);
            let not_ready = container_status(&p)["ready"] == false;
            (not_ready && addresses("addresses") == 0 && addresses("notReadyAddresses") == 1)
                .then_some(())
        },
    );
    // Not ready is not dead: the container keeps running.
    let p = c.get(&["pod", "flaky"]);
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(container_status(&p)["restartCount"], 0);
    set("yes");
    c.wait_for("the pod back in the endpoints", 60, || {
        (addresses("addresses") == 1).then_some(())
    });
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn container_over_its_memory_limit_is_oom_killed() {
    let c = NodeCluster::start();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hog"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": BUSYBOX,
                // dd holds a 64 MiB buffer: four times the limit.
                "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                "resources": {"limits": {"memory": "16Mi"}}}],
        },
    });
    c.apply(&pod.to_string());
    let p = c.wait_for("the pod to fail", 90, || {
        let p = c.get(&["pod", "hog"]);
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let cs = container_status(&p);
    assert_eq!(cs["state"]["terminated"]["reason"], "OOMKilled", "{cs}");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 137, "{cs}");
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let table = c.kubectl_ok(&["get", "pod", "hog"]);
    assert!(table.contains("OOMKilled"), "{table}");
}

/// Runs a kubectl command line under `script`, which gives it a terminal (for
/// `exec -it`), typing `input` once the remote shell prompts; returns the exit code and
/// what the terminal showed.
fn kubectl_in_terminal(c: &NodeCluster, line: &str, input: &str) -> (Option<i32>, String) {
    let kubectl = c.cluster.kubectl_cmd();
    let envs = kubectl
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let screen = terminal::run(&format!("kubectl {line}"), envs, input.as_bytes());
    // `script`'s own complaints (normally none) follow what the terminal showed.
    let text = [screen.shown, screen.stderr].concat();
    (screen.code, String::from_utf8_lossy(&text).into_owned())
}

/// Starts `kubectl <args>` (port-forward, logs -f) and returns it with its stdout.
fn kubectl_spawn(
    c: &NodeCluster,
    args: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = c
        .cluster
        .kubectl_cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl");
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn read_line(out: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    out.read_line(&mut line).expect("kubectl output");
    line
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn kubectl_logs_exec_cp_and_port_forward_reach_the_real_container() {
    let c = NodeCluster::start();
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shell
spec:
  replicas: 1
  selector:
    matchLabels: {{app: shell}}
  template:
    metadata:
      labels: {{app: shell}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sh", "-c", "echo started on $(hostname); mkdir -p /www; echo served by $(hostname) > /www/index.html; (i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done) & exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: shell
spec:
  selector: {{app: shell}}
  ports:
  - port: 80
    targetPort: 8080
"#
    );
    c.apply(&yaml);
    let pods = c.wait_running("app=shell", 1);
    let pod = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let pod = pod.as_str();

    // kubectl logs: the API server proxies to the node's kubelet port.
    c.wait_for("five ticks in the log", 30, || {
        let out = c.cluster.kubectl(&["logs", pod]);
        String::from_utf8_lossy(&out.stdout)
            .contains("tick 5\n")
            .then_some(())
    });
    let all = c.kubectl_ok(&["logs", pod, "-c", "main"]);
    assert!(
        all.starts_with(&format!("started on {pod}\ntick 1\n")),
        "{all}"
    );
    let last = c.kubectl_ok(&["logs", pod, "--tail", "1"]);
    assert_eq!(last.lines().count(), 1, "{last}");
    assert!(last.starts_with("tick "), "{last}");
    let recent = c.kubectl_ok(&["logs", pod, "--since", "2s"]);
    assert!(!recent.contains("started on"), "--since 2s gave:\n{recent}");
    assert!(recent.contains("tick "), "--since 2s gave:\n{recent}");
    let (mut follow, mut out) = kubectl_spawn(&c, &["logs", "-f", "--tail", "1", pod]);
    let first: u32 = read_line(&mut out)
        .trim()
        .trim_start_matches("tick ")
        .parse()
        .expect("a tick");
    // Lines written after the command started keep coming.
    let next = read_line(&mut out);
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(next.trim(), format!("tick {}", first + 1));

    // kubectl exec: output, stdin, the command's exit code, and a terminal.
    assert_eq!(
        c.kubectl_ok(&["exec", pod, "--", "cat", "/www/index.html"]),
        format!("served by {pod}\n")
    );
    let out = c.cluster.kubectl_stdin(
        &["exec", "-i", pod, "--", "sh", "-c", "tr a-z A-Z"],
        "through stdin\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "THROUGH STDIN\n");
    let out = c
        .cluster
        .kubectl(&["exec", pod, "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, screen) = kubectl_in_terminal(
        &c,
        &format!("exec -it {pod} -- sh"),
        "tty; echo answer $((6*7)); exit 5\n",
    );
    assert_eq!(code, Some(5), "{screen}");
    assert!(
        screen.contains("/dev/pts/"),
        "no terminal in the pod:\n{screen}"
    );
    assert!(screen.contains("answer 42"), "{screen}");

    // kubectl cp, both ways (tar through exec).
    let local = c.node.dir.join("copied-index.html");
    c.kubectl_ok(&[
        "cp",
        &format!("{pod}:/www/index.html"),
        local.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&local).unwrap(),
        format!("served by {pod}\n")
    );
    std::fs::write(&local, "copied in\n").unwrap();
    c.kubectl_ok(&[
        "cp",
        local.to_str().unwrap(),
        &format!("{pod}:/www/in.html"),
    ]);
    assert_eq!(
        c.kubectl_ok(&["exec", pod, "--", "cat", "/www/in.html"]),
        "copied in\n"
    );

    // kubectl port-forward to a Service: a loopback port on this host into the pod.
    let (mut pf, mut out) = kubectl_spawn(&c, &["port-forward", "svc/shell", ":80"]);
    // "Forwarding from 127.0.0.1:NNNNN -> 8080"
    let first = read_line(&mut out);
    // kubectl reports each connection on stdout: keep reading it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let port = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected port-forward output {first:?}"))
        .to_string();
    let body = c.wait_for("the forwarded port to answer", 30, || {
        curl(&format!("http://127.0.0.1:{port}/in.html"))
    });
    let _ = pf.kill();
    let _ = pf.wait();
    assert_eq!(body, "copied in\n");
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn set_image_and_rollout_restart_replace_the_pods() {
    let c = NodeCluster::start();
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {HTTPD}
        command: ["sh", "-c", "mkdir -p /www; echo served > /www/index.html; exec httpd -f -p 8080 -h /www"]
"#
    );
    c.apply(&yaml);
    let before: Vec<String> = c
        .wait_running("app=web", 2)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();

    // set image: a new ReplicaSet's pods, running the new image, the old ones gone.
    c.kubectl_ok(&["set", "image", "deployment/web", &format!("main={BUSYBOX}")]);
    let status = c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout", "90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let after = c.wait_running("app=web", 2);
    for p in &after {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(!before.iter().any(|b| b == name), "{name} was not replaced");
        assert_eq!(p["spec"]["containers"][0]["image"], BUSYBOX);
        assert_eq!(container_status(p)["image"], BUSYBOX);
        let ip = p["status"]["podIP"].as_str().unwrap();
        let body = c.wait_for(&format!("{name} to serve"), 30, || {
            let url = format!("http://{ip}:8080/");
            let out = c
                .cluster
                .kubectl(&["exec", name, "--", "wget", "-qO-", &url]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        assert_eq!(body, "served\n");
    }
    let rs = c.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "{rs}");
    let history = c.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );

    // rollout restart: every pod replaced again, same image.
    let before: Vec<String> = after
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    c.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    let status = c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout", "90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let restarted = c.wait_running("app=web", 2);
    for p in &restarted {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(
            !before.iter().any(|b| b == name),
            "{name} was not restarted"
        );
        assert!(
            p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
            "{p}"
        );
    }
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn stateful_set_pods_get_stable_names_and_dns_through_a_headless_service() {
    let c = NodeCluster::start();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector: {{app: db}}
  ports:
  - port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"]
"#
    );
    c.apply(&yaml);
    let pods = c.wait_running("app=db", 2);
    let mut names: Vec<&str> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1"]);
    let ip_of = |name: &str| {
        pods.iter()
            .find(|p| p["metadata"]["name"] == name)
            .and_then(|p| p["status"]["podIP"].as_str())
            .unwrap()
            .to_string()
    };
    let (ip0, ip1) = (ip_of("db-0"), ip_of("db-1"));
    let svc = c.get(&["service", "db"]);
    assert_eq!(svc["spec"]["clusterIP"], "None");
    c.wait_for("the headless Service's endpoints", 30, || {
        let eps = c.kubectl_ok(&["get", "endpoints", "db"]);
        (eps.contains(&ip0) && eps.contains(&ip1)).then_some(())
    });
    let out = c.run_script(
        "client",
        "set -e
         nslookup db.default.svc.cluster.local
         nslookup db-1.db.default.svc.cluster.local
         echo by-pod-name: $(timeout 10 wget -qO- http://db-0.db:8080/)",
    );
    let headless = out.split("db-1.db").next().expect("nslookup output");
    assert!(
        headless.contains(&ip0) && headless.contains(&ip1),
        "the headless name should give both pod IPs:\n{out}"
    );
    let pod_record = &out[out.find("db-1.db").unwrap()..];
    assert!(pod_record.contains(&ip1), "db-1's own name:\n{out}");
    assert!(out.contains("by-pod-name: db-0"), "{out}");

    // Deleting db-0 brings back a pod of the same name.
    let uid = pods
        .iter()
        .find(|p| p["metadata"]["name"] == "db-0")
        .map(|p| p["metadata"]["uid"].clone())
        .unwrap();
    c.kubectl_ok(&["delete", "pod", "db-0", "--wait=false"]);
    c.wait_for("db-0 to come back", 90, || {
        // Gone for a moment between the old pod and its replacement.
        let p = c.get_opt(&["pod", "db-0"])?;
        (p["metadata"]["uid"] != uid && p["status"]["phase"] == "Running").then_some(())
    });
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn volumes_reach_the_containers() {
    let c = NodeCluster::start();
    let host_dir = c.node.dir.join("pv-data");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "written on the host\n").unwrap();
    let yaml = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  app.conf: "level=debug"
  other: "not mounted"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv
spec:
  storageClassName: manual
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: "{host}"}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 500Mi}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {{tier: demo}}
spec:
  restartPolicy: Never
  initContainers:
  - name: init
    image: {BUSYBOX}
    command: ["sh", "-c", "echo from init > /scratch/init.txt"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  containers:
  - name: main
    image: {BUSYBOX}
    command:
    - sh
    - -c
    - |
      set -e
      echo scratch=$(cat /scratch/init.txt)
      echo mem=$(grep ' /mem ' /proc/mounts | cut -d' ' -f3)
      echo conf=$(cat /etc/app/app.conf)
      ls /etc/app
      echo mode=$(stat -L -c %a /etc/secret/password)
      echo password=$(cat /etc/secret/password)
      echo label=$(cat /etc/podinfo/labels)
      echo token=$(wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token)
      echo namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)
      echo host=$(cat /data/from-host)
      echo sub=$(cat /sub/from-host 2>/dev/null || echo none)
      echo from the pod > /data/from-pod
      echo into the subdir > /sub/made-here
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: mem, mountPath: /mem}}
    - {{name: conf, mountPath: /etc/app}}
    - {{name: secret, mountPath: /etc/secret}}
    - {{name: info, mountPath: /etc/podinfo}}
    - {{name: data, mountPath: /data}}
    - {{name: data, mountPath: /sub, subPath: nested}}
  volumes:
  - name: scratch
    emptyDir: {{}}
  - name: mem
    emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
  - name: conf
    configMap:
      name: settings
      items: [{{key: app.conf, path: app.conf}}]
  - name: secret
    secret: {{secretName: creds, defaultMode: 0400}}
  - name: info
    downwardAPI:
      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"#,
        host = host_dir.display()
    );
    c.apply(&yaml);
    let pvc = c.wait_for("the claim to bind", 60, || {
        let p = c.get(&["pvc", "data"]);
        (p["status"]["phase"] == "Bound").then_some(p)
    });
    assert_eq!(pvc["spec"]["volumeName"], "local-pv");
    let phase = c.wait_for("pod vols to finish", 90, || {
        let p = c.get(&["pod", "vols"]);
        match p["status"]["phase"].as_str() {
            Some(ph @ ("Succeeded" | "Failed")) => Some(ph.to_string()),
            _ => None,
        }
    });
    let log = c.kubectl_ok(&["logs", "vols"]);
    assert_eq!(phase, "Succeeded", "{log}");
    for want in [
        "scratch=from init",
        "mem=tmpfs",
        "conf=level=debug\napp.conf\n",
        "mode=400",
        "password=s3cret",
        "label=tier=\"demo\"",
        "namespace=default",
        "host=written on the host",
        "sub=none",
    ] {
        assert!(log.contains(want), "{want:?} missing from:\n{log}");
    }
    let token_len: usize = log
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(token_len > 100, "no service account token:\n{log}");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("from-pod")).unwrap(),
        "from the pod\n"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("nested/made-here")).unwrap(),
        "into the subdir\n"
    );

    // The claim is in use: deleting it waits for the pod (pvc-protection).
    c.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
    let pvc = c.get(&["pvc", "data"]);
    assert!(pvc["metadata"]["deletionTimestamp"].is_string(), "{pvc}");
    c.kubectl_ok(&["delete", "pod", "vols"]);
    c.wait_for("the claim to go once no pod uses it", 60, || {
        let out = c.cluster.kubectl(&["get", "pvc", "data"]);
        (!out.status.success()).then_some(())
    });
    // Retain: the volume stays, Released, and the data with it.
    let pv = c.wait_for("the volume to be Released", 60, || {
        let pv = c.get(&["pv", "local-pv"]);
        (pv["status"]["phase"] == "Released").then_some(pv)
    });
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert!(host_dir.join("from-pod").exists());
}

#[test]
#[ignore = "needs root and the local test registry (scripts/test-images)"]
fn liveness_failure_restarts_a_container_and_hooks_run() {
    let c = NodeCluster::start();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probed"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": BUSYBOX,
                "command": ["sh", "-c",
                    "echo run >> /state/runs; trap 'exit 0' TERM; while true; do sleep 1; done"],
                "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo started > /state/hook"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo stopping >> /state/prestop"]}},
                },
                // Healthy while /state/healthy exists.
                "livenessProbe": {
                    "exec": {"command": ["test", "-e", "/state/healthy"]},
                    "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 2,
                },
                "startupProbe": {
                    "exec": {"command": ["sh", "-c", "touch /state/healthy"]},
                    "periodSeconds": 1,
                },
            }],
            "volumes": [{"name": "state", "hostPath": {
                "path": c.node.dir.join("probe-state").to_string_lossy(),
                "type": "DirectoryOrCreate"}}],
        },
    });
    c.apply(&pod.to_string());
    let state = c.node.dir.join("probe-state");
    c.wait_for("the pod to be ready", 60, || {
        let p = c.get(&["pod", "probed"]);
        (container_status(&p)["ready"] == true).then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(state.join("hook")).unwrap(),
        "started\n"
    );
    // Make the liveness probe fail: the container is killed (preStop first) and
    // started again in the same pod.
    std::fs::remove_file(state.join("healthy")).unwrap();
    let p = c.wait_for("a restart", 60, || {
        let p = c.get(&["pod", "probed"]);
        (container_status(&p)["restartCount"].as_i64() >= Some(1)).then_some(p)
    });
    let runs = std::fs::read_to_string(state.join("runs")).unwrap();
    assert!(runs.lines().count() >= 2, "{runs}");
    assert!(
        std::fs::read_to_string(state.join("prestop"))
            .unwrap_or_default()
            .contains("stopping"),
        "preStop did not run"
    );
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    assert!(events.contains("Unhealthy"), "{events}");
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert_eq!(p["status"]["phase"], "Running");
}
