//! `rkube image` as a user types it, against the local test registry
//! (scripts/test-images).

use std::path::PathBuf;
use std::process::{Command, Output};

struct DataDir(PathBuf);
impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rkube(data: &DataDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rkube"))
        .arg("image")
        .arg("--data-dir")
        .arg(&data.0)
        .arg("--registries")
        .arg(data.0.join("registries.yaml"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[ignore = "needs root and the local test registries (scripts/test-images)"]
fn pull_list_remove_and_refuse_bad_input() {
    let data = DataDir(std::env::temp_dir().join(format!("rkube-cli-{}", std::process::id())));
    let pull = rkube(&data, &["pull", "127.0.0.1:5000/rkube-test/multi:1"]);
    assert!(pull.status.success(), "{}", text(&pull));
    assert!(
        text(&pull).contains("unpacked"),
        "progress is shown: {}",
        text(&pull)
    );

    let auth = rkube(
        &data,
        &[
            "pull",
            "127.0.0.1:5001/rkube-test/httpd:1",
            "--user",
            "rkube:rkube-test",
        ],
    );
    assert!(auth.status.success(), "{}", text(&auth));

    let ls = rkube(&data, &["ls"]);
    let out = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(
        out.contains("127.0.0.1:5000/rkube-test/multi")
            && out.contains("127.0.0.1:5001/rkube-test/httpd"),
        "{out}"
    );

    // Bad input: a clear error, and nothing changes.
    for bad in [
        vec!["pull", "Not:A:Ref"],
        vec!["rm", "no-such-image:1"],
        vec!["import", "/nonexistent.tar"],
    ] {
        let o = rkube(&data, &bad);
        assert!(!o.status.success(), "{bad:?} succeeded");
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with("Error: "),
            "{}",
            text(&o)
        );
    }
    assert_eq!(String::from_utf8_lossy(&rkube(&data, &["ls"]).stdout), out);

    let rm = rkube(&data, &["rm", "127.0.0.1:5000/rkube-test/multi:1"]);
    assert!(rm.status.success(), "{}", text(&rm));
    assert!(text(&rm).contains("freed"), "{}", text(&rm));
    let ls = String::from_utf8_lossy(&rkube(&data, &["ls"]).stdout).into_owned();
    assert!(
        !ls.contains("rkube-test/multi") && ls.contains("rkube-test/httpd"),
        "{ls}"
    );
}
