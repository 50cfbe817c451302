use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::*;
use crate::resource::builtin_resources;

const NOW: &str = "2025-06-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A timestamp `secs` seconds before [`NOW`].
fn ago(secs: i64) -> String {
    (now() - SignedDuration::from_secs(secs)).to_string()
}

/// Column names as kubectl prints them: upper case, wide ones only with `wide`.
fn headers(group: &str, plural: &str, wide: bool) -> Vec<String> {
    columns(group, plural)
        .into_iter()
        .filter(|c| wide || c.priority == 0)
        .map(|c| c.name.to_uppercase())
        .collect()
}

/// The cells kubectl shows by default (without `-o wide`), as strings.
fn shown(group: &str, plural: &str, obj: &Value) -> Vec<String> {
    let cols = columns(group, plural);
    let cells = row(group, plural, obj, now());
    assert_eq!(cols.len(), cells.len(), "one cell per column");
    cols.iter()
        .zip(cells)
        .filter(|(c, _)| c.priority == 0)
        .map(|(_, v)| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect()
}

fn wide(group: &str, plural: &str, obj: &Value) -> Vec<String> {
    row(group, plural, obj, now())
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn human_durations_follow_upstream_precision() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (123, "2m3s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (3 * 86400, "3d"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (2 * 365 * 86400 + 45 * 86400, "2y45d"),
        (3 * 365 * 86400, "3y"),
        (9 * 365 * 86400 + 100 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(
            human_duration(SignedDuration::from_secs(secs)),
            want,
            "{secs}s"
        );
    }
}

fn pod(status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d9c-abcde", "namespace": "default", "creationTimestamp": ago(3600)},
        "spec": {"nodeName": "node1", "containers": [{"name": "nginx", "image": "nginx:alpine"}]},
        "status": status,
    })
}

fn running(name: &str, restarts: i64, last_finished: Option<String>) -> Value {
    let mut s = json!({
        "name": name, "ready": true, "restartCount": restarts, "started": true,
        "state": {"running": {"startedAt": ago(300)}},
    });
    if let Some(f) = last_finished {
        s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": f}});
    }
    s
}

#[test]
fn pod_columns_match_kubectl() {
    assert_eq!(
        headers("", "pods", false),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        headers("", "pods", true)[5..],
        ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    );
}

#[test]
fn running_pod_with_restarts() {
    let p = pod(json!({
        "phase": "Running",
        "podIPs": [{"ip": "10.42.0.5"}], "podIP": "10.42.0.5",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [running("nginx", 3, Some(ago(300)))],
    }));
    assert_eq!(
        wide("", "pods", &p),
        [
            "web-7d9c-abcde",
            "1/1",
            "Running",
            "3 (5m ago)",
            "60m",
            "10.42.0.5",
            "node1",
            "<none>",
            "<none>"
        ]
    );
}

#[test]
fn pending_and_creating_pods() {
    let p = pod(json!({"phase": "Pending"}));
    assert_eq!(
        shown("", "pods", &p),
        ["web-7d9c-abcde", "0/1", "Pending", "0", "60m"]
    );
    let mut unscheduled = p.clone();
    unscheduled["spec"]
        .as_object_mut()
        .unwrap()
        .remove("nodeName");
    assert_eq!(wide("", "pods", &unscheduled)[5..7], ["<none>", "<none>"]);

    let p = pod(json!({"phase": "Pending", "containerStatuses": [{
        "name": "nginx", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
    assert_eq!(shown("", "pods", &p)[2], "ContainerCreating");
}

#[test]
fn crash_looping_pod() {
    let p = pod(json!({"phase": "Running", "containerStatuses": [{
        "name": "nginx", "ready": false, "restartCount": 12,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(130)}}}]}));
    assert_eq!(
        shown("", "pods", &p),
        [
            "web-7d9c-abcde",
            "0/1",
            "CrashLoopBackOff",
            "12 (2m10s ago)",
            "60m"
        ]
    );
}

#[test]
fn finished_pods() {
    let terminated = |code: i64, reason: Option<&str>, signal: i64| {
        let mut t = json!({"exitCode": code, "finishedAt": ago(10)});
        if let Some(r) = reason {
            t["reason"] = json!(r);
        }
        if signal != 0 {
            t["signal"] = json!(signal);
        }
        json!({"containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0,
            "state": {"terminated": t}}]})
    };
    let with_phase = |mut s: Value, phase: &str| {
        s["phase"] = json!(phase);
        pod(s)
    };
    let completed = with_phase(terminated(0, Some("Completed"), 0), "Succeeded");
    assert_eq!(shown("", "pods", &completed)[1..3], ["0/1", "Completed"]);
    let error = with_phase(terminated(1, Some("Error"), 0), "Failed");
    assert_eq!(shown("", "pods", &error)[2], "Error");
    let exit = with_phase(terminated(137, None, 0), "Failed");
    assert_eq!(shown("", "pods", &exit)[2], "ExitCode:137");
    let signal = with_phase(terminated(0, None, 9), "Failed");
    assert_eq!(shown("", "pods", &signal)[2], "Signal:9");
    let evicted = pod(json!({"phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory."}));
    assert_eq!(shown("", "pods", &evicted)[2], "Evicted");
}

fn init_pod(init_status: Value) -> Value {
    let mut p = pod(json!({"phase": "Pending",
        "conditions": [{"type": "Initialized", "status": "False"}],
        "initContainerStatuses": [init_status],
        "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "PodInitializing"}}}]}));
    p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "busybox"}]);
    p
}

#[test]
fn initializing_pods() {
    let waiting = init_pod(json!({"name": "migrate", "ready": false, "restartCount": 0,
        "state": {"running": {"startedAt": ago(5)}}}));
    assert_eq!(shown("", "pods", &waiting)[1..3], ["0/1", "Init:0/1"]);
    let failed = init_pod(json!({"name": "migrate", "ready": false, "restartCount": 2,
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(20)}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(40)}}}));
    assert_eq!(
        shown("", "pods", &failed)[2..4],
        ["Init:Error", "2 (40s ago)"]
    );
    let looping = init_pod(json!({"name": "migrate", "ready": false, "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}));
    assert_eq!(shown("", "pods", &looping)[2], "Init:CrashLoopBackOff");
}

#[test]
fn sidecar_counts_as_a_container() {
    let mut p = pod(json!({"phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [running("proxy", 1, Some(ago(3 * 3600)))],
        "containerStatuses": [running("nginx", 0, None)]}));
    p["spec"]["initContainers"] =
        json!([{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]);
    assert_eq!(
        shown("", "pods", &p)[1..4],
        ["2/2", "Running", "1 (3h ago)"]
    );
}

#[test]
fn terminating_and_lost_pods() {
    let mut p = pod(json!({"phase": "Running",
        "containerStatuses": [running("nginx", 0, None)]}));
    p["metadata"]["deletionTimestamp"] = json!(ago(-30));
    assert_eq!(shown("", "pods", &p)[2], "Terminating");
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(shown("", "pods", &p)[2], "Unknown");
    let mut done = pod(json!({"phase": "Succeeded"}));
    done["metadata"]["deletionTimestamp"] = json!(ago(-30));
    assert_eq!(shown("", "pods", &done)[2], "Succeeded");
}

#[test]
fn readiness_gates_and_scheduling_gates() {
    let mut p = pod(json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
        {"type": "example.com/lb", "status": "True"}]}));
    p["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/lb"}, {"conditionType": "other"}]);
    let cells = wide("", "pods", &p);
    assert_eq!(cells[2], "SchedulingGated");
    assert_eq!(cells[8], "1/2");
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": ago(125)},
        "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:alpine"}, {"name": "sidecar", "image": "busybox"}]}}},
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
    })
}

#[test]
fn deployments() {
    assert_eq!(
        headers("apps", "deployments", true),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let cells = row("apps", "deployments", &deployment(), now());
    assert_eq!(
        cells,
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("2m5s"),
            json!("nginx,sidecar"),
            json!("nginx:alpine,busybox"),
            json!("app=web,tier in (edge,front)")
        ]
    );
    let mut fresh = deployment();
    fresh["spec"].as_object_mut().unwrap().remove("replicas");
    fresh.as_object_mut().unwrap().remove("status");
    assert_eq!(
        shown("apps", "deployments", &fresh)[1..4],
        ["0/1", "0", "0"]
    );
}

#[test]
fn replica_sets_stateful_sets_daemon_sets() {
    let mut rs = deployment();
    rs["metadata"]["name"] = json!("web-7d9c");
    assert_eq!(
        shown("apps", "replicasets", &rs),
        ["web-7d9c", "3", "3", "2", "2m5s"]
    );
    assert_eq!(
        wide("apps", "replicasets", &rs)[7],
        "app=web,tier in (edge,front)"
    );
    assert_eq!(
        headers("apps", "statefulsets", false),
        ["NAME", "READY", "AGE"]
    );
    assert_eq!(
        shown("apps", "statefulsets", &rs),
        ["web-7d9c", "2/3", "2m5s"]
    );
    let ds = json!({"metadata": {"name": "fluentd", "creationTimestamp": ago(86400 * 3)},
        "spec": {"selector": {"matchLabels": {"name": "fluentd"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                "containers": [{"name": "fluentd", "image": "fluentd:v1"}]}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
            "updatedNumberScheduled": 2, "numberAvailable": 1}});
    assert_eq!(
        headers("apps", "daemonsets", false),
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ]
    );
    assert_eq!(
        shown("apps", "daemonsets", &ds),
        [
            "fluentd",
            "2",
            "2",
            "1",
            "2",
            "1",
            "kubernetes.io/os=linux",
            "3d"
        ]
    );
    let cr = json!({"metadata": {"name": "fluentd-5f8d", "creationTimestamp": ago(60),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd",
            "uid": "1", "controller": true}]}, "revision": 2});
    assert_eq!(
        shown("apps", "controllerrevisions", &cr),
        ["fluentd-5f8d", "daemonset.apps/fluentd", "2", "60s"]
    );
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "creationTimestamp": ago(42)}, "spec": spec})
}

#[test]
fn services() {
    assert_eq!(
        headers("", "services", true),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let cluster_ip = service(json!({"type": "ClusterIP", "clusterIP": "10.43.0.15",
        "clusterIPs": ["10.43.0.15"], "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}));
    assert_eq!(
        wide("", "services", &cluster_ip),
        [
            "web",
            "ClusterIP",
            "10.43.0.15",
            "<none>",
            "80/TCP",
            "42s",
            "app=web"
        ]
    );
    let node_port = service(json!({"type": "NodePort", "clusterIPs": ["10.43.0.16"],
        "ports": [{"port": 80, "nodePort": 30510, "protocol": "TCP"},
                  {"port": 53, "nodePort": 31000, "protocol": "UDP"}]}));
    assert_eq!(
        shown("", "services", &node_port)[2..5],
        ["10.43.0.16", "<none>", "80:30510/TCP,53:31000/UDP"]
    );
    let pending = service(json!({"type": "LoadBalancer", "clusterIPs": ["10.43.0.17"],
        "ports": [{"port": 443, "nodePort": 32000}]}));
    assert_eq!(
        shown("", "services", &pending)[3..5],
        ["<pending>", "443:32000/TCP"]
    );
    let mut assigned = pending.clone();
    assigned["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}, {"hostname": "lb.example.com"}]}});
    assigned["spec"]["externalIPs"] = json!(["198.51.100.1"]);
    assert_eq!(
        shown("", "services", &assigned)[3],
        "192.0.2.10,lb.example.com,198.51.100.1"
    );
    let external = service(json!({"type": "ExternalName", "externalName": "db.example.com"}));
    assert_eq!(
        wide("", "services", &external)[1..7],
        [
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "42s",
            "<none>"
        ]
    );
    let headless = service(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
    assert_eq!(
        shown("", "services", &headless)[1..5],
        ["ClusterIP", "None", "<none>", "<none>"]
    );
}

#[test]
fn endpoints_and_slices() {
    let ep = json!({"metadata": {"name": "web", "creationTimestamp": ago(5)}, "subsets": [
        {"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}, {"ip": "fd00::7"}, {"ip": "10.42.0.8"}],
         "ports": [{"port": 8080}]}]});
    assert_eq!(
        shown("", "endpoints", &ep),
        [
            "web",
            "10.42.0.5:8080,10.42.0.6:8080,[fd00::7]:8080 + 1 more...",
            "5s"
        ]
    );
    let empty = json!({"metadata": {"name": "web"}});
    assert_eq!(
        shown("", "endpoints", &empty),
        ["web", "<none>", "<unknown>"]
    );
    let slice = json!({"metadata": {"name": "web-abc12", "creationTimestamp": ago(5)},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}, {"name": "metrics"}],
        "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}]});
    assert_eq!(
        shown("discovery.k8s.io", "endpointslices", &slice),
        [
            "web-abc12",
            "IPv4",
            "8080,metrics",
            "10.42.0.5,10.42.0.6",
            "5s"
        ]
    );
    let none = json!({"metadata": {"name": "x"}, "addressType": "IPv4"});
    assert_eq!(
        shown("discovery.k8s.io", "endpointslices", &none)[2..4],
        ["<unset>", "<unset>"]
    );
}

#[test]
fn nodes() {
    let node = json!({"metadata": {"name": "node1", "creationTimestamp": ago(86400 * 10),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "",
                       "kubernetes.io/role": "etcd", "kubernetes.io/hostname": "node1"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 13 (trixie)",
                "kernelVersion": "6.12.0", "containerRuntimeVersion": "rkube://0.1.0"}}});
    assert_eq!(
        wide("", "nodes", &node),
        [
            "node1",
            "Ready,SchedulingDisabled",
            "control-plane,etcd,master",
            "10d",
            "v1.33.0",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 13 (trixie)",
            "6.12.0",
            "rkube://0.1.0"
        ]
    );
    let bare = json!({"metadata": {"name": "node2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(
        wide("", "nodes", &bare)[1..],
        [
            "NotReady",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]
    );
    let new = json!({"metadata": {"name": "node3"}});
    assert_eq!(shown("", "nodes", &new)[1], "Unknown");
}

#[test]
fn events_in_both_api_groups() {
    assert_eq!(
        headers("", "events", false),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.17d", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled", "message": "Container image \"nginx\" already present on machine\n",
        "type": "Normal", "source": {"component": "kubelet", "host": "node1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4});
    assert_eq!(
        wide("", "events", &ev),
        [
            "30s",
            "Normal",
            "Pulled",
            "pod/web",
            "spec.containers{nginx}",
            "kubelet, node1",
            "Container image \"nginx\" already present on machine",
            "10m",
            "4",
            "web.17d"
        ]
    );
    let new_api = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.18a"}, "eventTime": "2025-06-01T11:58:59.500000Z",
        "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet",
        "note": "Scaled up replica set web-7d9c to 3", "type": "Normal",
        "reportingController": "deployment-controller", "reportingInstance": ""});
    assert_eq!(
        wide("events.k8s.io", "events", &new_api),
        [
            "60s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up replica set web-7d9c to 3",
            "60s",
            "1",
            "web.18a"
        ]
    );
    let series = json!({"metadata": {"name": "e"}, "eventTime": ago(900),
        "involvedObject": {"kind": "Node"}, "series": {"count": 7, "lastObservedTime": ago(20)}});
    let cells = wide("", "events", &series);
    assert_eq!(
        (
            cells[0].as_str(),
            cells[3].as_str(),
            cells[7].as_str(),
            cells[8].as_str()
        ),
        ("20s", "node", "15m", "7")
    );
}

#[test]
fn jobs_and_cron_jobs() {
    assert_eq!(
        headers("batch", "jobs", false),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    let done = json!({"metadata": {"name": "pi", "creationTimestamp": ago(400)},
        "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
            "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"succeeded": 1, "startTime": ago(400), "completionTime": ago(380),
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
    assert_eq!(
        wide("batch", "jobs", &done),
        [
            "pi",
            "Complete",
            "1/1",
            "20s",
            "6m40s",
            "pi",
            "perl",
            "batch.kubernetes.io/controller-uid=u1"
        ]
    );
    let queue = json!({"metadata": {"name": "q", "creationTimestamp": ago(90)},
        "spec": {"parallelism": 3}, "status": {"succeeded": 1, "startTime": ago(90)}});
    assert_eq!(
        shown("batch", "jobs", &queue),
        ["q", "Running", "1/1 of 3", "90s", "90s"]
    );
    let fresh = json!({"metadata": {"name": "f", "creationTimestamp": ago(1)}});
    assert_eq!(
        shown("batch", "jobs", &fresh),
        ["f", "Running", "0/1", "", "1s"]
    );
    let failed = json!({"metadata": {"name": "x"}, "spec": {"completions": 2},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(shown("batch", "jobs", &failed)[1..3], ["Failed", "0/2"]);
    let suspended = json!({"metadata": {"name": "x"},
        "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(shown("batch", "jobs", &suspended)[1], "Suspended");

    assert_eq!(
        headers("batch", "cronjobs", false),
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    let cj = json!({"metadata": {"name": "hello", "creationTimestamp": ago(7200)},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "hello", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(61)}});
    assert_eq!(
        wide("batch", "cronjobs", &cj),
        [
            "hello",
            "*/5 * * * *",
            "<none>",
            "False",
            "1",
            "61s",
            "120m",
            "hello",
            "busybox",
            "<none>"
        ]
    );
}

#[test]
fn config_maps_secrets_namespaces_service_accounts() {
    let cm = json!({"metadata": {"name": "c", "creationTimestamp": ago(10)},
        "data": {"k": "v", "k2": "v2"}, "binaryData": {"b": "AAE="}});
    assert_eq!(shown("", "configmaps", &cm), ["c", "3", "10s"]);
    let secret =
        json!({"metadata": {"name": "s", "creationTimestamp": ago(10)}, "data": {"a": "Yg=="}});
    assert_eq!(
        headers("", "secrets", false),
        ["NAME", "TYPE", "DATA", "AGE"]
    );
    assert_eq!(shown("", "secrets", &secret), ["s", "Opaque", "1", "10s"]);
    let tls = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(shown("", "secrets", &tls)[1..3], ["kubernetes.io/tls", "2"]);
    let ns = json!({"metadata": {"name": "team-a", "creationTimestamp": ago(3600 * 30),
        "deletionTimestamp": ago(5)}, "status": {"phase": "Terminating"}});
    assert_eq!(
        shown("", "namespaces", &ns),
        ["team-a", "Terminating", "30h"]
    );
    let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(10)}});
    assert_eq!(shown("", "serviceaccounts", &sa), ["default", "0", "10s"]);
}

#[test]
fn volumes_and_claims() {
    let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": ago(100)},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local",
            "claimRef": {"namespace": "default", "name": "data"}},
        "status": {"phase": "Bound"}});
    assert_eq!(
        wide("", "persistentvolumes", &pv),
        [
            "pv1",
            "1Gi",
            "RWO,RWX",
            "Delete",
            "Bound",
            "default/data",
            "local",
            "<unset>",
            "",
            "100s",
            "Filesystem"
        ]
    );
    let bound = json!({"metadata": {"name": "data", "creationTimestamp": ago(100)},
        "spec": {"volumeName": "pv1", "storageClassName": "local",
            "resources": {"requests": {"storage": "500Mi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        headers("", "persistentvolumeclaims", false),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    assert_eq!(
        shown("", "persistentvolumeclaims", &bound),
        [
            "data", "Bound", "pv1", "1Gi", "RWO", "local", "<unset>", "100s"
        ]
    );
    let pending = json!({"metadata": {"name": "d2",
            "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
        "spec": {"storageClassName": "fast"}});
    assert_eq!(
        shown("", "persistentvolumeclaims", &pending)[1..6],
        ["Pending", "", "", "", "slow"]
    );
}

#[test]
fn storage_classes_mark_the_default() {
    let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": ago(100),
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
    assert_eq!(
        headers("storage.k8s.io", "storageclasses", false),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    assert_eq!(
        shown("storage.k8s.io", "storageclasses", &sc),
        [
            "local-path (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false",
            "100s"
        ]
    );
}

#[test]
fn ingresses_and_classes() {
    let ing = json!({"metadata": {"name": "web", "creationTimestamp": ago(10)},
        "spec": {"ingressClassName": "rkube", "tls": [{"hosts": ["a.example.com"]}],
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "c.example.com"},
                      {"host": "d.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}, {"ip": "192.168.1.11"}]}}});
    assert_eq!(
        headers("networking.k8s.io", "ingresses", false),
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    );
    assert_eq!(
        shown("networking.k8s.io", "ingresses", &ing),
        [
            "web",
            "rkube",
            "a.example.com,b.example.com,c.example.com + 2 more...",
            "192.168.1.10,192.168.1.11",
            "80, 443",
            "10s"
        ]
    );
    let bare = json!({"metadata": {"name": "x"}, "spec": {"rules": [{"http": {}}]}});
    assert_eq!(
        shown("networking.k8s.io", "ingresses", &bare)[1..5],
        ["<none>", "*", "", "80"]
    );
    let class = json!({"metadata": {"name": "rkube"}, "spec": {"controller": "rkube.io/ingress",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
    assert_eq!(
        shown("networking.k8s.io", "ingressclasses", &class)[1..3],
        ["rkube.io/ingress", "IngressParameters.k8s.example.com/p"]
    );
    let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
    assert_eq!(
        shown("networking.k8s.io", "networkpolicies", &np)[1],
        "<none>"
    );
}

#[test]
fn rbac_bindings_and_default_tables() {
    let rb = json!({"metadata": {"name": "read", "creationTimestamp": ago(10)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "ci", "name": "builder"}]});
    assert_eq!(
        wide("rbac.authorization.k8s.io", "rolebindings", &rb),
        [
            "read",
            "ClusterRole/view",
            "10s",
            "alice, bob",
            "devs",
            "ci/builder"
        ]
    );
    // Roles have no printer upstream: the server's default Name / Created At.
    assert_eq!(
        headers("rbac.authorization.k8s.io", "roles", true),
        ["NAME", "CREATED AT"]
    );
    let role =
        json!({"metadata": {"name": "pod-reader", "creationTimestamp": "2025-05-01T08:30:00Z"}});
    assert_eq!(
        row("rbac.authorization.k8s.io", "roles", &role, now()),
        vec![json!("pod-reader"), json!("2025-05-01T08:30:00Z")]
    );
    assert_eq!(
        columns("rbac.authorization.k8s.io", "roles")[1].type_,
        "date"
    );
}

#[test]
fn autoscalers_budgets_priority_classes_quotas() {
    let hpa = json!({"metadata": {"name": "web", "creationTimestamp": ago(10)},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}]},
        "status": {"currentReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "200m"}}}]}});
    assert_eq!(
        shown("autoscaling", "horizontalpodautoscalers", &hpa),
        [
            "web",
            "Deployment/web",
            "cpu: 40%/80%, memory: <unknown>/500Mi + 1 more...",
            "2",
            "10",
            "3",
            "10s"
        ]
    );
    let v1 = json!({"metadata": {"name": "old"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
        "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}});
    assert_eq!(
        shown("autoscaling", "horizontalpodautoscalers", &v1)[2..4],
        ["cpu: <unknown>/50%", "1"]
    );

    let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"},
        "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        shown("policy", "poddisruptionbudgets", &pdb)[..4],
        ["web", "50%", "N/A", "1"]
    );
    let pc = json!({"metadata": {"name": "high"}, "value": 1000000, "globalDefault": false});
    assert_eq!(
        wide("scheduling.k8s.io", "priorityclasses", &pc),
        [
            "high",
            "1000000",
            "false",
            "<unknown>",
            "PreemptLowerPriority"
        ]
    );
    let quota = json!({"metadata": {"name": "q", "creationTimestamp": ago(10)},
        "status": {"hard": {"pods": "10", "requests.cpu": "2", "limits.memory": "2Gi", "limits.cpu": "4"},
            "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"}}});
    assert_eq!(
        shown("", "resourcequotas", &quota),
        [
            "q",
            "pods: 3/10, requests.cpu: 500m/2",
            "limits.cpu: 1/4, limits.memory: 0/2Gi",
            "10s"
        ]
    );
}

#[test]
fn leases_csrs_runtime_classes_webhooks() {
    let lease =
        json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node1_abc"}});
    assert_eq!(
        shown("coordination.k8s.io", "leases", &lease)[1],
        "node1_abc"
    );
    let csr = json!({"metadata": {"name": "csr-1", "creationTimestamp": ago(5)},
        "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "alice", "expirationSeconds": 86400},
        "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
    assert_eq!(
        shown("certificates.k8s.io", "certificatesigningrequests", &csr),
        [
            "csr-1",
            "5s",
            "kubernetes.io/kube-apiserver-client",
            "alice",
            "24h",
            "Approved,Issued"
        ]
    );
    let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
    assert_eq!(
        shown("node.k8s.io", "runtimeclasses", &rc)[..2],
        ["gvisor", "runsc"]
    );
    let hooks = json!({"metadata": {"name": "w"}, "webhooks": [{"name": "a"}, {"name": "b"}]});
    assert_eq!(
        shown(
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            &hooks
        )[1],
        "2"
    );
}

#[test]
fn custom_resources_use_printer_columns() {
    let spec = vec![
        json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
        json!({"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "The phase"}),
        json!({"name": "Ready", "type": "boolean", "jsonPath": ".status.ready", "priority": 1}),
        json!({"name": "Selector", "type": "string", "jsonPath": ".spec.selector"}),
        json!({"name": "Started", "type": "date", "jsonPath": ".status.startedAt"}),
    ];
    let cols = columns_for_custom(&spec);
    assert_eq!(
        cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["Name", "Replicas", "Phase", "Ready", "Selector", "Started"]
    );
    assert_eq!(
        cols[1].description,
        "Custom resource definition column (in JSONPath format): .spec.replicas"
    );
    assert_eq!(cols[2].description, "The phase");
    assert_eq!(cols[3].priority, 1);
    let obj = json!({"metadata": {"name": "w1"},
        "spec": {"replicas": 3.0, "selector": {"z": 1, "a": "b"}},
        "status": {"ready": true, "startedAt": ago(3 * 86400 + 4 * 3600)}});
    assert_eq!(
        row_for_custom(&spec, &obj, now()),
        vec![
            json!("w1"),
            json!(3),
            Value::Null,
            json!(true),
            json!("{\"a\":\"b\",\"z\":1}"),
            json!("3d4h")
        ]
    );

    let default = columns_for_custom(&[]);
    assert_eq!(
        default
            .iter()
            .map(|c| (c.name.as_str(), c.type_.as_str()))
            .collect::<Vec<_>>(),
        [("Name", "string"), ("Age", "date")]
    );
    let obj = json!({"metadata": {"name": "w2", "creationTimestamp": ago(45)}});
    assert_eq!(
        row_for_custom(&[], &obj, now()),
        vec![json!("w2"), json!("45s")]
    );
}

/// Every built-in resource has a Table whose rows fit its columns, even for an object
/// that carries nothing but a name.
#[test]
fn every_builtin_resource_prints() {
    let bare = json!({"metadata": {"name": "x", "creationTimestamp": ago(1)}});
    for r in builtin_resources() {
        let cols = columns(&r.group, &r.plural);
        let cells = row(&r.group, &r.plural, &bare, now());
        assert_eq!(cols.len(), cells.len(), "{}", r.group_resource());
        assert_eq!(cells[if r.plural == "events" { 9 } else { 0 }], json!("x"));
        assert!(cols.iter().all(|c| !c.name.is_empty()));
    }
}

#[test]
fn table_wire_shape() {
    let col = &columns("", "pods")[5];
    assert_eq!(
        serde_json::to_value(col).unwrap(),
        json!({"name": "IP", "type": "string", "format": "", "description": col.description, "priority": 1})
    );
    assert_eq!(columns("", "pods")[0].format, "name");
    let obj = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {}});
    assert_eq!(
        partial_object_metadata(&obj),
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"name": "p", "labels": {"a": "b"}}})
    );
}
