//! Containers for real: root, the local test registry (scripts/test-images), and
//! cgroups. Each test has its own directories, cgroup parent and names.

mod support;

use rkube_runtime::{AttachOptions, ContainerState, ExecConfig, Resources, Runtime, SandboxConfig};
use std::time::{Duration, Instant};
use support::{Fixture, HTTPD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NEEDS: &str = "needs root, cgroups and the local test registry (scripts/test-images)";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn runs_a_container_and_logs_its_output_and_exit_code() {
    let _ = NEEDS;
    let f = Fixture::new().await;
    let id = f
        .run(f.config(&["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"]))
        .await;
    let st = f.wait(&id).await;
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(3));
    assert_eq!(st.reason, "Error");
    assert!(st.started_at.is_some() && st.finished_at.is_some());
    let lines = f.log_lines(&id);
    assert!(lines.contains(&"stdout hello".to_string()), "{lines:?}");
    assert!(lines.contains(&"stderr oops".to_string()), "{lines:?}");
    // Full CRI record: timestamp, stream, tag, text.
    let first = f.log(&id).lines().next().unwrap().to_string();
    let parts: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(parts[0].parse::<jiff::Timestamp>().is_ok(), "{first}");
    assert_eq!(parts[2], "F");

    let ok = f.run(f.config(&["/bin/true"])).await;
    let st = f.wait(&ok).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (Some(0), "Completed"));
    f.rt.remove_container(&ok).await.unwrap();
    assert!(f.rt.container_status(&ok).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn passes_env_and_merges_command_with_args() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/sh", "-c"]);
    c.args = vec![
        "echo \"$GREETING $0 $1\"; pwd; id -u; id -g".into(),
        "first".into(),
        "second".into(),
    ];
    c.env = vec![("GREETING".into(), "hi".into())];
    c.working_dir = Some("/made/for/us".into());
    c.user.uid = Some(1234);
    c.user.gid = Some(5678);
    let id = f.run(c).await;
    assert_eq!(f.wait(&id).await.exit_code, Some(0), "{}", f.log(&id));
    let lines = f.log_lines(&id);
    assert_eq!(
        lines,
        [
            "stdout hi first second",
            "stdout /made/for/us",
            "stdout 1234",
            "stdout 5678"
        ]
    );

    // Only args: the image's entrypoint (none) + args; the image CMD is dropped.
    let mut c = f.config(&[]);
    c.args = vec!["/bin/echo".into(), "from-args".into()];
    let id = f.run(c).await;
    f.wait(&id).await;
    assert_eq!(f.log_lines(&id), ["stdout from-args"]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn memory_limit_oom_kill_is_reported() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/tail", "/dev/zero"]);
    c.resources.memory_limit = Some(32 << 20);
    let id = f.run(c).await;
    let st = f.wait(&id).await;
    assert_eq!(st.reason, "OOMKilled");
    assert_eq!(st.exit_code, Some(137));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn cpu_and_pids_limits_reach_the_cgroup() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/sleep", "1000"]);
    c.resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        pids_limit: Some(42),
        ..Default::default()
    };
    let id = f.run(c).await;
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(f.cgroup_dir(ctrl, &id).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("pids", "pids.max"), "42");
    let pid = f.rt.container_status(&id).await.unwrap().pid.unwrap();
    assert!(
        read("cpu", "cgroup.procs")
            .lines()
            .any(|l| l == pid.to_string())
    );
    f.rt.stop_container(&id, Duration::ZERO).await.unwrap();
    f.rt.remove_container(&id).await.unwrap();
    assert!(
        !f.cgroup_dir("cpu", &id).exists(),
        "cgroup removed with the container"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn exec_returns_output_and_exit_code() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/sleep", "1000"]);
    c.env = vec![("FROM_CONTAINER".into(), "yes".into())];
    let id = f.run(c).await;
    let out =
        f.rt.exec_sync(
            &id,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo out $FROM_CONTAINER; echo err >&2; exit 7".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out yes\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 7);
    // The exec'd process shares the container's PID namespace: it sees sleep as 1.
    let ps =
        f.rt.exec_sync(
            &id,
            vec!["/bin/cat".into(), "/proc/1/cmdline".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout)
            .replace('\0', " ")
            .trim(),
        "/bin/sleep 1000"
    );

    // With stdin.
    let mut s =
        f.rt.exec(
            &id,
            ExecConfig {
                cmd: vec!["/bin/cat".into()],
                stdin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    drop(stdin);
    let mut got = String::new();
    s.stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .await
        .unwrap();
    assert_eq!(got, "ping\n");
    assert_eq!(s.wait().await.unwrap(), 0);

    // With a terminal: it opens with the size asked for, and a resize reaches it.
    let mut s =
        f.rt.exec(
            &id,
            ExecConfig {
                cmd: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "tty; stty size; while read x && [ \"$x\" != q ]; do stty size; done".into(),
                ],
                tty: true,
                stdin: true,
                size: Some(rkube_runtime::TermSize { cols: 99, rows: 33 }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdout = s.stdout.take().unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("33 99") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no size in {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(n > 0, "ended early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s.resize(rkube_runtime::TermSize {
        cols: 120,
        rows: 40,
    })
    .await
    .unwrap();
    // The resize reaches the terminal a moment later: ask for the size until it shows.
    let stdin = s.stdin.as_mut().unwrap();
    for _ in 0..100 {
        if String::from_utf8_lossy(&got).contains("40 120") {
            break;
        }
        stdin.write_all(b"\n").await.unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(100), stdout.read(&mut buf)).await
        {
            got.extend_from_slice(&buf[..n.unwrap()]);
        }
    }
    stdin.write_all(b"q\n").await.unwrap();
    stdout.read_to_end(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got);
    let code = s.wait().await;
    assert!(got.contains("/dev/pts/"), "{got:?} {code:?}");
    assert!(got.contains("40 120"), "{got:?}");
    assert_eq!(code.unwrap(), 0);

    f.rt.stop_container(&id, Duration::ZERO).await.unwrap();
    assert!(
        f.rt.exec_sync(&id, vec!["/bin/true".into()], Duration::from_secs(5))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn stop_honours_the_grace_period() {
    let f = Fixture::new().await;
    // Traps TERM and exits cleanly.
    let polite = f
        .run(f.config(&[
            "/bin/sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ]))
        .await;
    f.wait_log(&polite, "ready").await;
    let t = Instant::now();
    f.rt.stop_container(&polite, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    let st = f.rt.container_status(&polite).await.unwrap();
    assert_eq!(st.exit_code, Some(0));
    assert!(f.log(&polite).contains("got TERM"));

    // PID 1 without a handler ignores TERM: SIGKILL after the grace period.
    let stubborn = f.run(f.config(&["/bin/sleep", "1000"])).await;
    let t = Instant::now();
    f.rt.stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let st = f.rt.container_status(&stubborn).await.unwrap();
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::Exited, Some(137))
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn sandbox_containers_share_network_and_hostname() {
    let f = Fixture::new().await;
    f.rt.pull_image(HTTPD, None).await.unwrap();
    let sb =
        f.rt.run_pod_sandbox(SandboxConfig {
            name: "pod".into(),
            hostname: "pod-a".into(),
            hosts: vec![("10.42.0.9".into(), vec!["pod-a".into()])],
            ..Default::default()
        })
        .await
        .unwrap();
    let netns = sb.netns_path.clone().unwrap();
    assert!(netns.exists());
    let mut web = f.config(&[]);
    web.image = HTTPD.into();
    let web = f.rt.create_container(Some(&sb.id), web).await.unwrap();
    f.rt.start_container(&web).await.unwrap();
    let client = f
        .rt
        .create_container(
            Some(&sb.id),
            f.config(&["/bin/sh", "-c", "hostname; grep pod-a /etc/hosts; for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1"]),
        )
        .await
        .unwrap();
    f.rt.start_container(&client).await.unwrap();
    let st = f.wait(&client).await;
    assert_eq!(st.exit_code, Some(0), "{}", f.log(&client));
    let lines = f.log_lines(&client);
    assert_eq!(lines[0], "stdout pod-a");
    assert_eq!(lines[1], "stdout 10.42.0.9\tpod-a");
    assert_eq!(lines[2], "stdout hello from rkube httpd");
    // Host loopback is another namespace: nothing listens on 8080 there for us.
    assert_eq!(f.rt.list_containers().await.unwrap().len(), 2);

    f.rt.stop_pod_sandbox(&sb.id, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        f.rt.container_status(&web).await.unwrap().state,
        ContainerState::Exited
    );
    f.rt.remove_pod_sandbox(&sb.id).await.unwrap();
    assert!(!netns.exists());
    assert!(f.rt.list_containers().await.unwrap().is_empty());
    assert!(f.rt.list_pod_sandboxes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn attach_reaches_stdin_and_stdout() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/cat"]);
    c.stdin = true;
    c.stdin_once = true;
    let id = f.run(c).await;
    let mut a =
        f.rt.attach(
            &id,
            AttachOptions {
                stdin: true,
                stdout: true,
                stderr: true,
            },
        )
        .await
        .unwrap();
    let mut stdin = a.stdin.take().unwrap();
    let mut stdout = a.stdout.take().unwrap();
    stdin.write_all(b"echo me\n").await.unwrap();
    let mut buf = [0u8; 8];
    stdout.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo me\n");
    drop(stdin); // stdin_once: cat sees EOF and exits
    let code = tokio::time::timeout(Duration::from_secs(10), a.wait())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    f.wait_log(&id, "echo me").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn container_survives_its_caller_and_is_adopted() {
    let f = Fixture::new().await;
    let mut caller = std::process::Command::new(env!("CARGO_BIN_EXE_rkube-runtime-dev"))
        .arg("run-detached")
        .arg(&f.cfg.root)
        .arg(&f.cfg.run_root)
        .arg(&f.cfg.cgroup_parent)
        .arg(support::BUSYBOX)
        .args([
            "/bin/sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(caller.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let id = line.trim().to_string();
    assert!(!id.is_empty(), "caller printed no ID");
    // kill -9 the caller.
    caller.kill().unwrap();
    caller.wait().unwrap();
    f.wait_log(&id, "tick 3").await;

    // A new caller (this fixture's runtime is just as new to it) finds it running.
    let found = f.rt.list_containers().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].state, ContainerState::Running);
    let before = f.log(&id).lines().count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.log(&id).lines().count() > before, "the shim still logs");
    let out =
        f.rt.exec_sync(
            &id,
            vec!["/bin/echo".into(), "adopted".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"adopted\n");
    f.rt.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        f.rt.container_status(&id).await.unwrap().state,
        ContainerState::Exited
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn read_only_rootfs_and_dropped_capabilities() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/sh", "-c", "touch /x 2>/dev/null && echo wrote-root; touch /tmp/y 2>/dev/null && echo wrote-tmp; chown 1:1 /dev/termination-log 2>/dev/null && echo chowned; echo done"]);
    c.read_only_rootfs = true;
    c.capabilities.drop = vec!["CHOWN".into()];
    c.termination_log = Some(f.base.join("termlog"));
    let id = f.run(c).await;
    f.wait(&id).await;
    assert_eq!(f.log_lines(&id), ["stdout done"]);
    assert!(f.base.join("termlog").exists());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, cgroups and the local test registry (scripts/test-images)"]
async fn tty_container_logs_its_terminal_and_takes_resizes() {
    let f = Fixture::new().await;
    let mut c = f.config(&["/bin/sh", "-c", "tty; read line; stty size; echo got $line"]);
    c.tty = true;
    c.stdin = true;
    let id = f.run(c).await;
    let a =
        f.rt.attach(
            &id,
            AttachOptions {
                stdin: true,
                stdout: true,
                stderr: false,
            },
        )
        .await
        .unwrap();
    a.resize(rkube_runtime::TermSize {
        cols: 120,
        rows: 40,
    })
    .await;
    let mut a = a;
    let mut stdin = a.stdin.take().unwrap();
    f.wait_log(&id, "/dev/pts/").await;
    stdin.write_all(b"typed\r").await.unwrap();
    let st = f.wait(&id).await;
    assert_eq!(st.exit_code, Some(0), "{}", f.log(&id));
    let log = f.log(&id);
    assert!(log.contains("stdout F 40 120"), "{log}");
    assert!(log.contains("got typed"), "{log}");
}
