//! The kubelet's streaming server driven by the real kubectl through the API
//! server: logs, exec (WebSocket and SPDY, with and without a terminal), cp,
//! attach and port-forward, against real containers; and who may use the kubelet
//! port. kubectl 1.33 (through the dispatcher) and 1.32 speak WebSocket (port-forward:
//! SPDY tunnelled in a WebSocket), 1.30 WebSocket for exec and SPDY for port-forward,
//! 1.29 SPDY with v5 first, 1.27 SPDY only. Root only.

mod streaming;
mod terminal;

use std::time::Duration;

use rkube_runtime::Runtime;
use serde_json::json;
use streaming::{BUSYBOX, Cluster, HTTPD, Spec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn running_status(name: &str, id: &str) -> serde_json::Value {
    json!({"name": name, "ready": true, "restartCount": 0, "image": BUSYBOX, "imageID": "",
           "containerID": format!("rkube://{id}"),
           "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, kubectl and the test registry (scripts/test-images)"]
async fn logs_through_the_api_server() {
    require_node!();
    let c = Cluster::start().await;
    let pod = c
        .run_pod(
            "logs",
            &[Spec::sh(
                "app",
                "echo one; echo two >&2; echo three; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done",
            )],
            false,
        )
        .await;
    let app = pod.containers[0].1.clone();
    c.wait_log(&app, "tick 2").await;

    let all = c.run(None, &["logs", "logs"]).await.ok();
    // stdout and stderr are separate pipes (as with every CRI runtime): the order
    // between them is not kept, the order within each is.
    assert!(all.lines().any(|l| l == "two"), "{all}");
    let stdout_lines: Vec<&str> = all.lines().filter(|l| *l != "two").take(3).collect();
    assert_eq!(stdout_lines, ["one", "three", "tick 1"], "{all}");
    let tail = c.run(None, &["logs", "logs", "--tail=1"]).await.ok();
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");
    let stamped = c
        .run(None, &["logs", "logs", "--tail=1", "--timestamps"])
        .await
        .ok();
    let (stamp, rest) = stamped.split_once(' ').unwrap();
    assert_eq!(
        stamp.len(),
        "2024-01-01T00:00:00.000000000Z".len(),
        "{stamped}"
    );
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamped}");
    assert!(rest.starts_with("tick "), "{stamped}");
    assert_eq!(
        c.run(None, &["logs", "logs", "--limit-bytes=5"]).await.ok(),
        all[..5]
    );
    assert!(
        c.run(None, &["logs", "logs", "--since=1h"])
            .await
            .ok()
            .starts_with(&all)
    );
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let since_later = format!("--since-time={later}");
    assert_eq!(c.run(None, &["logs", "logs", &since_later]).await.ok(), "");

    // -f shows lines written after it started.
    let ticks = |s: &str| {
        s.lines()
            .filter_map(|l| l.strip_prefix("tick ")?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    };
    let before = ticks(&c.run(None, &["logs", "logs"]).await.ok());
    let mut follow = c
        .kubectl(None, &["logs", "-f", "--tail=1", "logs"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("follow stream open");
            if ticks(&line) > before + 3 {
                return line;
            }
        }
    })
    .await
    .expect("followed lines in time");
    assert!(seen.starts_with("tick "));
    follow.kill().await.unwrap();

    // -f ends when the container does.
    c.run_pod(
        "short",
        &[Spec::sh("once", "echo start; sleep 2; echo end")],
        false,
    )
    .await;
    assert_eq!(
        c.run(None, &["logs", "-f", "short"]).await.ok(),
        "start\nend\n"
    );

    // --previous: before there is one, and once a previous instance exited.
    let e = c.run(None, &["logs", "logs", "--previous"]).await;
    assert!(
        e.stderr.contains(
            "Error from server (BadRequest): previous terminated container \"app\" in pod \"logs\" not found"
        ),
        "{e:?}"
    );
    let prev = c
        .start_container(&Spec::sh("app", "echo from the previous instance"), None)
        .await;
    tokio::time::timeout(Duration::from_secs(30), c.rt.wait_container(&prev.id))
        .await
        .unwrap()
        .unwrap();
    let mut stub = pod.clone();
    stub.containers[0].1.previous_log_path = Some(prev.log_path.clone());
    c.set_pod("logs", stub);
    let mut status = running_status("app", &app.id);
    status["lastState"] =
        json!({"terminated": {"exitCode": 0, "containerID": format!("rkube://{}", prev.id)}});
    c.set_pod_status("logs", json!({"containerStatuses": [status]}))
        .await;
    assert_eq!(
        c.run(None, &["logs", "logs", "--previous"]).await.ok(),
        "from the previous instance\n"
    );

    // -c picks a container; without it kubectl takes the first and says so.
    let pair = c
        .run_pod(
            "pair",
            &[
                Spec::sh("first", "echo from first; exec sleep 3600"),
                Spec::sh("second", "echo from second; exec sleep 3600"),
            ],
            false,
        )
        .await;
    for (_, r) in &pair.containers {
        c.wait_log(r, "from").await;
    }
    assert_eq!(
        c.run(None, &["logs", "pair", "-c", "second"]).await.ok(),
        "from second\n"
    );
    let o = c.run(None, &["logs", "pair"]).await;
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (Some(0), "from first\n"),
        "{o:?}"
    );
    assert!(
        o.stderr
            .contains("Defaulted container \"first\" out of: first, second"),
        "{o:?}"
    );
    // kubectl keeps the answers in a map: the containers come in any order.
    let all = c
        .run(None, &["logs", "pair", "--all-containers"])
        .await
        .ok();
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort();
    assert_eq!(lines, ["from first", "from second"], "{all}");
    let e = c.run(None, &["logs", "pair", "-c", "third"]).await;
    assert!(
        e.stderr
            .contains("container third is not valid for pod pair"),
        "{e:?}"
    );

    // Errors worded as upstream's.
    c.create_pod_object("waiting", &[Spec::sh("w", "true")])
        .await;
    c.set_pod_status(
        "waiting",
        json!({"phase": "Pending", "containerStatuses": [{"name": "w", "ready": false, "restartCount": 0,
            "image": BUSYBOX, "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    )
    .await;
    let e = c.run(None, &["logs", "waiting"]).await;
    assert_ne!(e.code, Some(0));
    assert!(
        e.stderr.contains(
            "Error from server (BadRequest): container \"w\" in pod \"waiting\" is waiting to start: ContainerCreating"
        ),
        "{e:?}"
    );
    c.create_pod_object("two", &[Spec::sh("a", "true"), Spec::sh("b", "true")])
        .await;
    let e = c
        .run(
            None,
            &["get", "--raw", "/api/v1/namespaces/default/pods/two/log"],
        )
        .await;
    assert!(
        e.stderr
            .contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{e:?}"
    );
    let e = c.run(None, &["logs", "nope"]).await;
    assert!(e.stderr.contains("pods \"nope\" not found"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, kubectl and the test registry (scripts/test-images)"]
async fn exec_and_cp_over_websocket_and_spdy() {
    require_node!();
    let c = Cluster::start().await;
    let pod = c
        .run_pod(
            "sh",
            &[Spec::sh("main", "echo ready; exec sleep 3600")],
            false,
        )
        .await;
    c.wait_log(&pod.containers[0].1, "ready").await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256_hex(&data);

    for version in [None, Some(32), Some(29), Some(27)] {
        let o = c
            .run(
                version,
                &["exec", "sh", "--", "sh", "-c", "echo out; echo err >&2"],
            )
            .await;
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (Some(0), "out\n"),
            "{version:?} {o:?}"
        );
        assert!(o.stderr.contains("err\n"), "{o:?}");

        let o = c
            .run(
                version,
                &["exec", "sh", "--", "sh", "-c", "echo bye; exit 3"],
            )
            .await;
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (Some(3), "bye\n"),
            "{version:?} {o:?}"
        );
        assert!(
            o.stderr.contains("command terminated with exit code 3"),
            "{o:?}"
        );

        let o = c
            .run_with_input(version, &["exec", "-i", "sh", "--", "sha256sum"], &data)
            .await;
        assert!(
            o.ok().starts_with(&digest),
            "{version:?}: stdin crossed intact"
        );

        // A terminal: its size reaches the process, typed input runs, the exit code returns.
        let kubectl = match version {
            None => "kubectl".to_string(),
            Some(v) => format!("kubectl.1.{v}"),
        };
        let o = c
            .run_in_terminal(
                &format!("stty cols 91 rows 27; {kubectl} exec -it sh -- sh"),
                b"stty size; tty; exit 7\n",
            )
            .await;
        assert_eq!(o.code, Some(7), "{version:?} {o:?}");
        assert!(o.stdout.contains("27 91"), "{version:?} {o:?}");
        assert!(o.stdout.contains("/dev/pts/"), "{version:?} {o:?}");
        // The process starts with the client's size: it is there at once.
        let o = c
            .run_in_terminal(
                &format!("stty cols 83 rows 19; {kubectl} exec -it sh -- stty size"),
                b"",
            )
            .await;
        assert_eq!(o.code, Some(0), "{version:?} {o:?}");
        assert!(o.stdout.contains("19 83"), "{version:?} {o:?}");
    }

    // cp both ways (tar through exec), a file and a directory.
    let up = c.dir.join("upload.txt");
    let content = "payload line\n".repeat(50_000);
    std::fs::write(&up, &content).unwrap();
    let tree = c.dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/leaf.txt"), "leaf\n").unwrap();
    for version in [None, Some(27)] {
        let tag = version.map_or("ws".to_string(), |v| v.to_string());
        let remote = format!("sh:/tmp/up-{tag}.txt");
        c.run(version, &["cp", up.to_str().unwrap(), &remote])
            .await
            .ok();
        let sum = c
            .run(version, &["exec", "sh", "--", "sha256sum", &remote[3..]])
            .await
            .ok();
        assert!(sum.starts_with(&sha256_hex(content.as_bytes())), "{sum}");
        let down = c.dir.join(format!("download-{tag}.txt"));
        c.run(version, &["cp", &remote, down.to_str().unwrap()])
            .await
            .ok();
        assert_eq!(std::fs::read_to_string(&down).unwrap(), content);

        let remote_dir = format!("sh:/tmp/tree-{tag}");
        c.run(version, &["cp", tree.to_str().unwrap(), &remote_dir])
            .await
            .ok();
        let back = c.dir.join(format!("tree-back-{tag}"));
        c.run(version, &["cp", &remote_dir, back.to_str().unwrap()])
            .await
            .ok();
        assert_eq!(
            std::fs::read_to_string(back.join("sub/leaf.txt")).unwrap(),
            "leaf\n"
        );
    }

    // -c picks the container of a pod with two.
    c.run_pod(
        "duo",
        &[
            Spec::sh("one", "exec sleep 3600"),
            Spec::sh("two", "exec sleep 3600"),
        ],
        false,
    )
    .await;
    let o = c
        .run(
            None,
            &["exec", "duo", "-c", "two", "--", "cat", "/proc/1/cmdline"],
        )
        .await;
    assert_eq!(o.code, Some(0), "{o:?}");
    let o = c.run(None, &["exec", "duo", "--", "true"]).await;
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stderr
            .contains("Defaulted container \"one\" out of: one, two"),
        "{o:?}"
    );

    // RBAC: `get pods/exec` does not open a shell (the WebSocket GET also needs
    // `create`, and so does the SPDY POST kubectl falls back to); `create` does.
    let viewer = c.kubeconfig_for("viewer", &[]);
    let viewer = format!("--kubeconfig={}", viewer.display());
    for args in [
        &[
            "create",
            "role",
            "peek",
            "--verb=get",
            "--resource=pods,pods/exec",
        ][..],
        &[
            "create",
            "rolebinding",
            "peek",
            "--role=peek",
            "--user=viewer",
        ],
    ] {
        c.run(None, args).await.ok();
    }
    for version in [None, Some(27)] {
        let e = c.run(version, &[&viewer, "exec", "sh", "--", "true"]).await;
        assert_ne!(e.code, Some(0), "{version:?} {e:?}");
        assert!(
            e.stderr.contains(
                "User \"viewer\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\""
            ),
            "{version:?} {e:?}"
        );
    }
    for args in [
        &[
            "create",
            "role",
            "shell",
            "--verb=create",
            "--resource=pods/exec",
        ][..],
        &[
            "create",
            "rolebinding",
            "shell",
            "--role=shell",
            "--user=viewer",
        ],
    ] {
        c.run(None, args).await.ok();
    }
    for version in [None, Some(27)] {
        let o = c
            .run(version, &[&viewer, "exec", "sh", "--", "echo", "in"])
            .await;
        assert_eq!(o.ok(), "in\n", "{version:?}");
    }

    // Errors.
    let e = c
        .run(None, &["exec", "sh", "-c", "nope", "--", "true"])
        .await;
    assert!(
        e.stderr.contains("container nope is not valid for pod sh"),
        "{e:?}"
    );
    let e = c.run(None, &["exec", "ghost", "--", "true"]).await;
    assert!(e.stderr.contains("pods \"ghost\" not found"), "{e:?}");
    let e = c.run(None, &["exec", "sh", "--", "/no/such/program"]).await;
    assert_eq!(e.code, Some(1), "{e:?}");
    assert!(
        e.stderr
            .starts_with("error: Internal error occurred: error executing command in container:")
            && e.stderr.contains("'/no/such/program' not found"),
        "{e:?}"
    );
    // A container that ended: the kubelet has nothing to exec into.
    let gone = c.run_pod("gone", &[Spec::sh("main", "true")], false).await;
    tokio::time::timeout(
        Duration::from_secs(20),
        c.rt.wait_container(&gone.containers[0].1.id),
    )
    .await
    .unwrap()
    .unwrap();
    for version in [None, Some(27)] {
        let e = c.run(version, &["exec", "gone", "--", "true"]).await;
        assert_eq!(
            (e.code, e.stderr.as_str()),
            (
                Some(1),
                "error: unable to upgrade connection: container not found (\"main\")\n"
            ),
            "{version:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, kubectl and the test registry (scripts/test-images)"]
async fn attach_to_the_main_process() {
    require_node!();
    let c = Cluster::start().await;
    for (pod, version) in [("att", None), ("att-spdy", Some(27))] {
        let spec = Spec {
            stdin: true,
            stdin_once: true,
            ..Spec::sh(
                "main",
                "echo ready; while read l; do echo got:$l; done; echo bye",
            )
        };
        let p = c.run_pod(pod, &[spec], false).await;
        c.wait_log(&p.containers[0].1, "ready").await;
        let o = c
            .run_with_input(version, &["attach", "-i", pod], b"hello\nworld\n")
            .await;
        assert_eq!(o.code, Some(0), "{version:?} {o:?}");
        assert!(
            o.stdout.contains("got:hello\ngot:world\n"),
            "{version:?} {o:?}"
        );
        // stdinOnce: the end of our input ended the container's.
        c.wait_log(&p.containers[0].1, "bye").await;
    }

    // A container with a terminal: attach -it gets its size and drives its shell.
    for (pod, kubectl) in [("tty", "kubectl"), ("tty-spdy", "kubectl.1.27")] {
        let spec = Spec {
            stdin: true,
            tty: true,
            ..Spec::sh("main", "exec sh")
        };
        let p = c.run_pod(pod, &[spec], false).await;
        let o = c
            .run_in_terminal(
                &format!("stty cols 83 rows 21; {kubectl} attach -it {pod}"),
                b"stty size; echo attached-$((6*7)); exit 4\n",
            )
            .await;
        assert!(o.stdout.contains("21 83"), "{kubectl}: {o:?}");
        assert!(o.stdout.contains("attached-42"), "{kubectl}: {o:?}");
        let status = tokio::time::timeout(
            Duration::from_secs(20),
            c.rt.wait_container(&p.containers[0].1.id),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            status.exit_code,
            Some(4),
            "{kubectl}: the shell we typed into ended"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(body)
}

/// Sends `data` on a new connection to a local port while reading the answer, then
/// half-closes; everything read until the other side closes.
async fn echo_through(port: u16, data: Vec<u8>) -> Vec<u8> {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("the echo ended in time")
        .unwrap();
    writer.await.unwrap();
    got
}

/// Starts `kubectl port-forward <target> <ports>...` and waits until it listens on
/// the first of them.
async fn port_forward(
    c: &Cluster,
    version: Option<u32>,
    target: &str,
    ports: &[(u16, u16)],
) -> tokio::process::Child {
    let specs: Vec<String> = ports.iter().map(|(l, r)| format!("{l}:{r}")).collect();
    let mut args = vec!["port-forward", target];
    args.extend(specs.iter().map(String::as_str));
    let mut pf = c
        .kubectl(version, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(pf.stdout.take().unwrap()).lines();
    let listening = format!("127.0.0.1:{} -> ", ports[0].0);
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = out.next_line().await.unwrap() {
            if l.contains(&listening) {
                return;
            }
        }
        panic!("kubectl port-forward {target} ended");
    })
    .await
    .expect("kubectl port-forward listening");
    // Keep reading: kubectl dies of a closed pipe when it writes its next line.
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    pf
}

/// GET / through a forwarded port; the server may still be starting, so the first
/// request is retried a little. On failure, what kubectl said.
async fn http_get_retrying(port: u16, pf: &mut tokio::process::Child) -> String {
    let mut last = Ok(String::new());
    for _ in 0..50 {
        last = http_get(port).await;
        match &last {
            Ok(b) if b.contains("hello from rkube httpd") => return b.clone(),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    pf.kill().await.unwrap();
    let mut err = String::new();
    let _ = pf.stderr.take().unwrap().read_to_string(&mut err).await;
    panic!("no answer through port {port} ({last:?}); kubectl: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, kubectl and the test registry (scripts/test-images)"]
async fn port_forward_into_the_pod_network_namespace() {
    require_node!();
    let c = Cluster::start().await;
    let httpd = Spec {
        name: "httpd".into(),
        image: HTTPD.into(),
        ..Default::default()
    };
    // An echo server beside it, in the same network namespace.
    let echo = Spec::sh("echo", "exec nc -ll -p 9000 -e cat");
    c.run_pod("web", &[httpd, echo], true).await;
    let bulk: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // kubectl 1.33 and 1.32 tunnel SPDY in a WebSocket; 1.30 and 1.27 speak SPDY.
    for version in [None, Some(32), Some(30), Some(27)] {
        let (web, echo) = (free_port(), free_port());
        let mut pf = port_forward(&c, version, "pod/web", &[(web, 8080), (echo, 9000)]).await;
        let body = http_get_retrying(web, &mut pf).await;
        assert!(body.starts_with("HTTP/1."), "{version:?}: {body}");
        // More connections over the same port-forward.
        for _ in 0..3 {
            assert!(
                http_get(web)
                    .await
                    .unwrap()
                    .contains("hello from rkube httpd")
            );
        }
        // Megabytes both ways at once, on two connections side by side.
        let (a, b) = tokio::join!(
            echo_through(echo, bulk.clone()),
            echo_through(echo, bulk[..1_000_000].to_vec())
        );
        assert_eq!(a.len(), bulk.len(), "{version:?}");
        assert!(a == bulk, "{version:?}: the echo came back altered");
        assert!(b == bulk[..1_000_000], "{version:?}");
        pf.kill().await.unwrap();
    }

    // A Service: kubectl finds its pod and maps the service port to the target port.
    c.create_service("web", 80, 8080).await;
    let local = free_port();
    let mut pf = port_forward(&c, None, "svc/web", &[(local, 80)]).await;
    assert!(
        http_get_retrying(local, &mut pf)
            .await
            .starts_with("HTTP/1.")
    );
    pf.kill().await.unwrap();

    // A port nobody listens on: the connection closes and kubectl says why.
    let port = free_port();
    let mut pf = c
        .kubectl(None, &["port-forward", "pod/web", &format!("{port}:9")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(pf.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .unwrap()
        .unwrap();
    let got = http_get(port).await.unwrap_or_default();
    assert!(!got.contains("HTTP/1."), "{got}");
    let status = tokio::time::timeout(Duration::from_secs(20), pf.wait()).await;
    let mut err = String::new();
    let _ = pf.stderr.take().unwrap().read_to_string(&mut err).await;
    assert!(
        err.contains("error forwarding port 9 to pod web"),
        "{status:?} {err}"
    );
}

/// A caller of the kubelet port.
enum Caller<'a> {
    Anonymous,
    Certificate(&'a (std::path::PathBuf, std::path::PathBuf)),
    Token(&'a str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, kubectl and the test registry (scripts/test-images)"]
async fn kubelet_port_authenticates_and_asks_the_api_server() {
    require_node!();
    let c = Cluster::start().await;
    let ca = c.dir.join("ca.crt");
    std::fs::write(&ca, &c.pki.ca.cert_pem).unwrap();
    let write_pair = |name: &str, pair: &rkube_apiserver::pki::CertPair| {
        let (crt, key) = (
            c.dir.join(format!("{name}.crt")),
            c.dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        (crt, key)
    };
    let stranger = write_pair(
        "stranger",
        &c.pki.issue_client("someone", &["devs"]).unwrap(),
    );
    let ops = write_pair("ops", &c.pki.issue_client("ops", &["operators"]).unwrap());
    let apiserver = write_pair("apiserver", &c.pki.kubelet_client().unwrap());
    let base = format!("https://127.0.0.1:{}", c.kubelet_addr.port());
    let curl = |who: Caller, method: &str, path: &str| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-w", " %{http_code}", "-X", method, "--cacert"])
            .arg(&ca);
        match who {
            Caller::Anonymous => {}
            Caller::Certificate((crt, key)) => {
                cmd.arg("--cert").arg(crt).arg("--key").arg(key);
            }
            Caller::Token(t) => {
                cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
            }
        }
        let out = cmd.arg(format!("{base}{path}")).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let forbidden = |user: &str, verb: &str, sub: &str| {
        format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource={sub}) 403")
    };

    // Certificates of the cluster CA; the API server decides what they may do.
    assert_eq!(
        curl(Caller::Anonymous, "GET", "/healthz"),
        "Unauthorized 401"
    );
    assert_eq!(
        curl(Caller::Certificate(&stranger), "GET", "/healthz"),
        forbidden("someone", "get", "proxy")
    );
    assert_eq!(
        curl(Caller::Certificate(&apiserver), "GET", "/healthz"),
        "ok 200"
    );

    // Bearer tokens, reviewed by the API server.
    assert_eq!(
        curl(Caller::Token("not-a-token"), "GET", "/healthz"),
        "Unauthorized 401"
    );
    // (Through the API: kubectl 1.33's `create token` sends a protobuf body this
    // API server does not decode yet.)
    let mut tokens = Vec::new();
    for sa in ["reader", "prober"] {
        tokens.push(c.service_account_token(sa).await);
    }
    let (reader, prober) = (&tokens[0], &tokens[1]);
    assert_eq!(
        curl(Caller::Token(reader), "GET", "/healthz"),
        forbidden("system:serviceaccount:default:reader", "get", "proxy")
    );

    // RBAC on nodes/proxy opens the port to exactly what it grants.
    c.run(
        None,
        &[
            "create",
            "clusterrole",
            "node-prober",
            "--verb=get",
            "--resource=nodes/proxy",
        ],
    )
    .await
    .ok();
    c.run(
        None,
        &[
            "create",
            "clusterrolebinding",
            "node-prober",
            "--clusterrole=node-prober",
            "--serviceaccount=default:prober",
            "--group=operators",
        ],
    )
    .await
    .ok();
    let prober_user = "system:serviceaccount:default:prober";
    assert_eq!(curl(Caller::Token(prober), "GET", "/healthz"), "ok 200");
    assert_eq!(
        curl(
            Caller::Token(prober),
            "POST",
            "/exec/default/p/c?command=id"
        ),
        forbidden(prober_user, "create", "proxy")
    );
    assert_eq!(
        curl(Caller::Token(prober), "GET", "/stats/summary"),
        forbidden(prober_user, "get", "stats")
    );
    assert_eq!(curl(Caller::Certificate(&ops), "GET", "/healthz"), "ok 200");

    // Node proxy reaches the same kubelet through the API server.
    assert_eq!(
        c.run(
            None,
            &[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{}/proxy/healthz", streaming::NODE)
            ]
        )
        .await
        .ok(),
        "ok"
    );
}
