//! Development companion of rkube-runtime, so the crate can be tested and measured
//! without the `rkube` binary:
//!
//! * `rkube-runtime-dev shim ...`: the shim, exactly as `rkube shim ...`;
//! * `rkube-runtime-dev bench [--starts N] [--pulls N]`: container start latency
//!   side by side with `runc run`, and pull+unpack time (see `bench.rs`);
//! * `rkube-runtime-dev run-detached ROOT RUN_ROOT CGROUP_PARENT IMAGE CMD...`:
//!   a caller that starts one container, prints its ID and waits to be killed
//!   (used by the re-adoption test).

mod bench;

use rkube_runtime::{ContainerConfig, OciRuntime, Runtime, RuntimeConfig};
use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args.first().and_then(|a| a.to_str()) {
        Some("shim") => rkube_runtime::shim::main(args[1..].to_vec()),
        Some("run-detached") => run_detached(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: rkube-runtime-dev shim ... | bench [options] | run-detached ROOT RUN_ROOT CGROUP_PARENT IMAGE CMD..."
            );
            2
        }
    };
    std::process::exit(code);
}

fn run_detached(args: &[OsString]) -> i32 {
    if args.len() < 5 {
        eprintln!("run-detached ROOT RUN_ROOT CGROUP_PARENT IMAGE CMD...");
        return 2;
    }
    let s = |i: usize| args[i].to_string_lossy().into_owned();
    let mut cfg = RuntimeConfig::new("/unused");
    cfg.root = s(0).into();
    cfg.run_root = s(1).into();
    cfg.cgroup_parent = s(2);
    cfg.shim = vec![
        std::env::current_exe().expect("own path").into(),
        "shim".into(),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let runtime = OciRuntime::new(cfg).expect("runtime");
        let config = ContainerConfig {
            name: "detached".into(),
            image: s(3),
            command: args[4..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            ..Default::default()
        };
        let id = runtime
            .create_container(None, config)
            .await
            .expect("create");
        runtime.start_container(&id).await.expect("start");
        println!("{id}");
        std::future::pending::<()>().await;
    });
    0
}
