//! Development companion of the kubelet's streaming server, so its tests run real
//! containers without the `rkube` binary: `rkube-streaming-dev shim ...` is the
//! container shim, exactly as `rkube shim ...`.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let code = match args.first().and_then(|a| a.to_str()) {
        Some("shim") => rkube_runtime::shim::main(args[1..].to_vec()),
        _ => {
            eprintln!("usage: rkube-streaming-dev shim ...");
            2
        }
    };
    std::process::exit(code);
}
