//! The runtime benchmark: prints figures, asserts nothing.
//!
//! * Container start latency over N starts of `/bin/sleep` from the local busybox
//!   image: rkube's create+start (overlay mount, spec, shim, libcontainer) and start
//!   alone (bundle ready), side by side in the same run with Debian's `runc run -d`
//!   on the same bundle (same config.json, same rootfs), interleaved so that both
//!   see the same machine load.
//! * Pull+unpack of the multi-layer image from the local registry into an empty
//!   store, and of the shell image.
//!
//! Needs root, `runc`, and the registry of `scripts/test-images` on 127.0.0.1:5000.

use rkube_runtime::{ContainerConfig, OciRuntime, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "127.0.0.1:5000/rkube-test/busybox:1";
const MULTI: &str = "127.0.0.1:5000/rkube-test/multi:1";

/// Everything the benchmark made, torn down on drop (even after a failure).
struct Scratch {
    base: PathBuf,
    run_root: PathBuf,
    cgroup_parent: String,
    runc_root: PathBuf,
    runc_ids: Vec<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for id in &self.runc_ids {
            let _ = runc(&self.runc_root).args(["delete", "-f", id]).status();
        }
        let containers = self.base.join("runtime/containers");
        for e in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(s) = std::fs::read(e.path().join("shim.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&s)
            {
                for k in ["pid", "shim_pid"] {
                    if let Some(p) = v[k].as_i64() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(p as i32),
                            nix::sys::signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
        std::thread::sleep(Duration::from_millis(100));
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = ctrl.path().join(self.cgroup_parent.trim_start_matches('/'));
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
        let _ = std::fs::remove_dir_all(&self.base);
        let _ = std::fs::remove_dir_all(&self.run_root);
    }
}

fn runc(root: &Path) -> Command {
    let mut c = Command::new("runc");
    c.arg("--root").arg(root);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let p50 = percentile(&v, 50);
    println!(
        "{name:<34} n={:<4} p50 {:>7.2} ms   p99 {:>7.2} ms   mean {:>7.2} ms   min {:>7.2} ms",
        v.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&v, 99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
    );
    p50
}

pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let mut starts = 100usize;
    let mut pulls = 5usize;
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        let n = it.next().and_then(|v| v.parse().ok());
        match (a.as_str(), n) {
            ("--starts", Some(n)) if n > 0 => starts = n,
            ("--pulls", Some(n)) if n > 0 => pulls = n,
            _ => {
                eprintln!("usage: bench [--starts N] [--pulls N]");
                return 2;
            }
        }
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench: needs root");
        return 1;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    match rt.block_on(run(starts, pulls)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench: {e}");
            1
        }
    }
}

async fn run(starts: usize, pulls: usize) -> Result<(), Box<dyn std::error::Error>> {
    let tag = format!("{:08x}", rand_u32());
    let mut scratch = Scratch {
        base: std::env::temp_dir().join(format!("rkube-bench-{tag}")),
        run_root: PathBuf::from(format!("/run/rkube-bench-{tag}")),
        cgroup_parent: format!("/rkube-bench-{tag}"),
        runc_root: PathBuf::from(format!("/run/rkube-bench-{tag}/runc")),
        runc_ids: Vec::new(),
    };
    let mut cfg = RuntimeConfig::new(&scratch.base);
    cfg.run_root = scratch.run_root.clone();
    cfg.cgroup_parent = scratch.cgroup_parent.clone();
    cfg.shim = vec![std::env::current_exe()?.into(), "shim".into()];
    let runtime = OciRuntime::new(cfg)?;
    runtime.pull_image(BUSYBOX, None).await?;
    let runc_version = Command::new("runc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8(o.stdout)
                .ok()?
                .lines()
                .next()
                .map(str::to_string)
        });
    println!(
        "rkube-runtime benchmark ({starts} starts, {pulls} pulls; {})",
        runc_version.as_deref().unwrap_or("runc not found")
    );
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let container = |name: &str| ContainerConfig {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["/bin/sleep".into(), "1000".into()],
        ..Default::default()
    };

    // One bundle for runc: a created (never started) rkube container's directory,
    // with its config.json and mounted overlay rootfs.
    let bundle_id = runtime
        .create_container(None, container("runc-bundle"))
        .await?;
    let bundle = scratch.base.join("runtime/containers").join(&bundle_id);

    let (mut rk_full, mut rk_start, mut rc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..starts {
        // rkube: create + start, measured from the call to a running process.
        let t = Instant::now();
        let id = runtime.create_container(None, container("bench")).await?;
        let t_start = Instant::now();
        runtime.start_container(&id).await?;
        let end = Instant::now();
        rk_full.push(end - t);
        rk_start.push(end - t_start);
        runtime.remove_container(&id).await?;

        // runc run -d on the same bundle: returns once the process runs.
        let rid = format!("bench-{tag}-{i}");
        scratch.runc_ids.push(rid.clone());
        // The container inherits runc's stdio: a file, not a pipe nobody closes.
        let errors = std::fs::File::create(scratch.base.join("runc.err"))?;
        let t = Instant::now();
        let status = runc(&scratch.runc_root)
            .stderr(errors)
            .arg("run")
            .arg("-d")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&rid)
            .status()?;
        rc.push(t.elapsed());
        if !status.success() {
            let err = std::fs::read_to_string(scratch.base.join("runc.err")).unwrap_or_default();
            return Err(format!("runc run failed: {err}").into());
        }
        runc(&scratch.runc_root)
            .args(["delete", "-f", &rid])
            .status()?;
        scratch.runc_ids.pop();
    }
    println!("\ncontainer start latency (create -> process running):");
    let full = report("rkube create+start", rk_full);
    let start = report("rkube start (bundle ready)", rk_start);
    let base = report("runc run -d (same bundle)", rc);
    println!(
        "ratio to runc (p50): create+start {:.2}x, start alone {:.2}x",
        full.as_secs_f64() / base.as_secs_f64(),
        start.as_secs_f64() / base.as_secs_f64()
    );
    runtime.remove_container(&bundle_id).await?;

    println!("\npull + unpack from the local registry into an empty store:");
    for image in [MULTI, BUSYBOX] {
        let mut times = Vec::new();
        let mut layers = 0;
        let mut size = 0;
        for _ in 0..pulls {
            let dir = scratch.base.join(format!("pull-{}", rand_u32()));
            let store = rkube_runtime::image::ImageStore::open(&dir, Default::default())?;
            let t = Instant::now();
            let img = store.pull(image, None, None).await?;
            times.push(t.elapsed());
            layers = img.layers.len();
            size = img.size;
            std::fs::remove_dir_all(&dir)?;
        }
        report(
            &format!(
                "{} ({layers} layers, {} kB)",
                image.rsplit('/').next().unwrap_or(image),
                size / 1000
            ),
            times,
        );
    }
    Ok(())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}
