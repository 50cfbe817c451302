//! The kubelet's streaming server driven by the real kubectl through the API
//! server: logs, exec (WebSocket and SPDY, with and without a terminal), cp,
//! attach and port-forward, against real containers. Root only.

mod support;

use std::time::Duration;

use rkube_runtime::Runtime;
use serde_json::json;
use support::{BUSYBOX, Cluster, HTTPD, Spec};
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

    // kubectl 1.33 speaks WebSocket v5; kubectl 1.27 SPDY only.
    for version in [None, Some(27)] {
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
    }

    // cp both ways (tar through exec).
    let up = c.dir.join("upload.txt");
    let content = "payload line\n".repeat(5000);
    std::fs::write(&up, &content).unwrap();
    c.run(None, &["cp", up.to_str().unwrap(), "sh:/tmp/up.txt"])
        .await
        .ok();
    assert_eq!(
        c.run(None, &["exec", "sh", "--", "cat", "/tmp/up.txt"])
            .await
            .ok(),
        content
    );
    let down = c.dir.join("download.txt");
    c.run(None, &["cp", "sh:/tmp/up.txt", down.to_str().unwrap()])
        .await
        .ok();
    assert_eq!(std::fs::read_to_string(&down).unwrap(), content);

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
    c.run_pod("web", &[httpd], true).await;
    // kubectl 1.33 tunnels SPDY in a WebSocket; kubectl 1.27 speaks SPDY.
    for version in [None, Some(27)] {
        let port = free_port();
        let mut pf = c
            .kubectl(
                version,
                &["port-forward", "pod/web", &format!("{port}:8080"), "9:9"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(pf.stdout.take().unwrap()).lines();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = out.next_line().await.unwrap() {
                if l.contains(&format!("127.0.0.1:{port} -> 8080")) {
                    return;
                }
            }
            panic!("port-forward ended");
        })
        .await
        .expect("kubectl port-forward listening");
        // The server may still be starting: retry the first request a little.
        let mut body = String::new();
        for _ in 0..50 {
            match http_get(port).await {
                Ok(b) if b.contains("hello from rkube httpd") => {
                    body = b;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert!(body.starts_with("HTTP/1."), "{version:?}: {body}");
        assert!(
            body.contains("hello from rkube httpd"),
            "{version:?}: {body}"
        );
        // More connections over the same port-forward.
        for _ in 0..3 {
            assert!(
                http_get(port)
                    .await
                    .unwrap()
                    .contains("hello from rkube httpd")
            );
        }
        pf.kill().await.unwrap();
        let mut err = String::new();
        let _ = pf.stderr.take().unwrap().read_to_string(&mut err).await;
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, kubectl and the test registry (scripts/test-images)"]
async fn kubelet_port_admits_only_the_api_server() {
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
    let apiserver = write_pair("apiserver", &c.pki.kubelet_client().unwrap());
    let url = format!("https://127.0.0.1:{}/healthz", c.kubelet_addr.port());
    let curl = |cert: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-w", " %{http_code}", "--cacert"]).arg(&ca);
        if let Some((crt, key)) = cert {
            cmd.arg("--cert").arg(crt).arg("--key").arg(key);
        }
        let out = cmd.arg(&url).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(None), "Unauthorized 401");
    assert_eq!(
        curl(Some(&stranger)),
        "Forbidden (user=someone, verb=get, resource=nodes, subresource=proxy) 403"
    );
    assert_eq!(curl(Some(&apiserver)), "ok 200");
    // Node proxy reaches the same kubelet through the API server.
    assert_eq!(
        c.run(
            None,
            &[
                "get",
                "--raw",
                &format!("/api/v1/nodes/{}/proxy/healthz", support::NODE)
            ]
        )
        .await
        .ok(),
        "ok"
    );
}
