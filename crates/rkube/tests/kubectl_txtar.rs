//! Upstream's kubectl command tests (`test/cmd/testdata/*.txtar`, vendored with their
//! fixtures under `tests/kubectl-txtar/`, see its SOURCE.md) run through the real
//! kubectl against `rkube server`: one fresh server per file, as upstream gives each
//! file its own API server.
//!
//! The test fails when a line fails that is not listed below (lines that only hold
//! on upstream's in-process test server, and lines waiting on work in progress), and
//! when a listed line passes (so the lists stay true).
//!
//! One file, every line shown as it runs:
//!
//! ```text
//! TXTAR_FILE=apply TXTAR_VERBOSE=1 cargo test -p rkube --test kubectl_txtar -- --nocapture
//! ```
//!
//! `TXTAR_FILE` takes a comma-separated list; `TXTAR_STOP_ON_FAIL=1` stops each file
//! at its first failing line (testscript's behaviour); `TXTAR_JOBS=N` runs N files at
//! once (default 2).

mod common;
mod txtar;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::Cluster;
use txtar::script::{Outcome, RunOptions};
use txtar::{FileReport, parse_archive, run_file};

/// A script line expected to fail, and why.
struct Known {
    file: &'static str,
    line: usize,
    /// The line's text, checked so that the list follows edits of the files.
    text: &'static str,
    reason: &'static str,
}

// Why lines only hold on upstream's in-process test server.
const LOOPBACK_USER: &str = "upstream's in-process test server answers `auth whoami` for its loopback \
     client, `system:apiserver`; rkube's admin kubeconfig is `system:admin`";
const AS_USER_EXTRA: &str = "upstream runs the kubectl of its own tree, which has `--as-user-extra` \
     (kubectl 1.34+); the newest kubectl here is 1.33, which refuses the flag, so the CSR is \
     never created (rkube's server side of Impersonate-Extra-* is tested in kubectl_auth.rs)";
const ENV_NOT_SEEN: &str = "upstream's in-process kubectl reads the process environment, which \
     testscript's `env` does not change, so it runs `diff` (exit 1); a real kubectl sees \
     KUBECTL_EXTERNAL_DIFF=find, and find exits 0";

/// Lines that can only hold on upstream's in-process test server (or its kubectl).
const UPSTREAM_ONLY: &[Known] = &[
    Known {
        file: "auth_whoami",
        line: 34,
        text: "stdout 'system:apiserver'",
        reason: LOOPBACK_USER,
    },
    Known {
        file: "authorization",
        line: 78,
        text: "kubectl create -f hack/testdata/csr.yml --as=user1 --as-uid=abc123 --as-user-extra 'key1=hello there' --as-user-extra 'key1=one,two' --as-user-extra 'key1=pandas are' --as-user-extra 'key1=the best' --as-user-extra key2=val3",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 81,
        text: "kubectl get csr/foo -o jsonpath='{.spec.username}'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 82,
        text: "stdout 'user1'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 84,
        text: "kubectl get csr/foo -o jsonpath='{.spec.uid}'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 85,
        text: "stdout 'abc123'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 88,
        text: "kubectl get csr/foo -o jsonpath='{range .spec.extra.key1}{@} {end}'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 89,
        text: "stdout 'hello there'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 90,
        text: "stdout 'one,two'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 91,
        text: "stdout 'pandas are'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 92,
        text: "stdout 'the best'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 95,
        text: "kubectl get csr/foo -o jsonpath='{range .spec.extra.key2}{@} {end}'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 96,
        text: "stdout 'val3'",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "authorization",
        line: 99,
        text: "kubectl delete -f hack/testdata/csr.yml",
        reason: AS_USER_EXTRA,
    },
    Known {
        file: "diff",
        line: 182,
        text: "! kubectl diff -Rf hack/testdata/diff/",
        reason: ENV_NOT_SEEN,
    },
];

/// Lines waiting on work in progress elsewhere.
const PENDING: &[Known] = &[];

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubectl-txtar")
}

fn script_names(root: &Path) -> Vec<String> {
    let dir = root.join("test/cmd/testdata");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {dir:?}: {e}"))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".txtar"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs one file against a fresh server.
fn run_one(root: &Path, name: &str, opts: &RunOptions) -> FileReport {
    let path = root.join(format!("test/cmd/testdata/{name}.txtar"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let archive = parse_archive(&text);
    // As upstream's test server (cmd/kube-apiserver/app/testing): Service range
    // 10.0.0.0/16 (service-revision2.yaml asks for clusterIP 10.0.0.12) and
    // kube-apiserver's default authorizer, AlwaysAllow (impersonated users create CSRs).
    // That server runs no ServiceAccount controller: the scripts create `default`.
    let cluster = Cluster::start_with(&[
        "--controllers",
        "*,-serviceaccount,-pvc-protection,-pv-protection",
        "--service-cidr",
        "10.0.0.0/16",
        "--authorization-mode",
        "AlwaysAllow",
    ]);
    let work = cluster.data_dir().join("work");
    let report = run_file(name, &archive, root, &cluster.kubeconfig, &work, opts);
    if report.failures().next().is_some() && opts.verbose {
        eprintln!("--- rkube server log ({name}) ---\n{}", cluster.log());
    }
    report
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn find<'a>(list: &'a [Known], file: &str, line: usize) -> Option<&'a Known> {
    list.iter().find(|k| k.file == file && k.line == line)
}

#[test]
fn kubectl_txtar() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("skipped: kubectl is not installed");
        return;
    }
    let root = fixtures_root();
    let all = script_names(&root);
    let selected: Vec<String> = match std::env::var("TXTAR_FILE") {
        Ok(v) if !v.is_empty() => v
            .split(',')
            .map(|s| s.trim().trim_end_matches(".txtar").to_string())
            .collect(),
        _ => all.clone(),
    };
    for s in &selected {
        assert!(all.contains(s), "no such file {s}.txtar; files: {all:?}");
    }
    let opts = RunOptions {
        verbose: env_flag("TXTAR_VERBOSE"),
        stop_on_fail: env_flag("TXTAR_STOP_ON_FAIL"),
    };
    let jobs: usize = std::env::var("TXTAR_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(if opts.verbose { 1 } else { 2 });

    // Files run `jobs` at a time, each against its own server.
    let queue = Mutex::new(selected.clone());
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let Some(name) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let r = run_one(&root, &name, &opts);
                    reports.lock().expect("reports").push(r);
                }
            });
        }
    });
    let mut reports = reports.into_inner().expect("reports");
    reports.sort_by(|a, b| a.name.cmp(&b.name));

    // Every listed line must still say what the list says.
    for k in UPSTREAM_ONLY.iter().chain(PENDING) {
        let path = root.join(format!("test/cmd/testdata/{}.txtar", k.file));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let line = text.lines().nth(k.line - 1).unwrap_or("").trim();
        assert_eq!(
            line, k.text,
            "the known-failure entry {}:{} no longer matches its file",
            k.file, k.line
        );
    }

    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut expected = Vec::new();
    let (mut total, mut passed, mut known) = (0, 0, 0);
    println!("\nkubectl txtar results (lines passed / lines):");
    for r in &reports {
        let mut file_known = 0;
        for res in &r.results {
            let listed = find(UPSTREAM_ONLY, &r.name, res.number)
                .or_else(|| find(PENDING, &r.name, res.number));
            match (&res.outcome, listed) {
                (Outcome::Fail(why), Some(k)) => {
                    file_known += 1;
                    expected.push(format!(
                        "{}.txtar:{}: {}\n    listed: {}\n{}",
                        r.name,
                        res.number,
                        res.text,
                        k.reason,
                        indent(why)
                    ));
                }
                (Outcome::Fail(why), None) => unexpected.push(format!(
                    "{}.txtar:{}: {}\n{}",
                    r.name,
                    res.number,
                    res.text,
                    indent(why)
                )),
                (Outcome::Pass, Some(k)) => now_passing.push(format!(
                    "{}.txtar:{}: {} (listed: {})",
                    r.name, res.number, res.text, k.reason
                )),
                _ => {}
            }
        }
        println!(
            "  {:<14} {:>4} / {:<4} ({} listed as expected failures)",
            r.name,
            r.passed(),
            r.results.len(),
            file_known
        );
        total += r.results.len();
        passed += r.passed();
        known += file_known;
    }
    println!(
        "  {:<14} {passed:>4} / {total:<4} ({known} listed)",
        "total"
    );
    for f in &expected {
        println!("\nexpected failure {f}");
    }
    for f in &unexpected {
        println!("\nFAIL {f}");
    }
    if !opts.stop_on_fail {
        for p in &now_passing {
            println!("\nNOW PASSES (remove it from the list): {p}");
        }
    }
    assert!(
        unexpected.is_empty() && (opts.stop_on_fail || now_passing.is_empty()),
        "{} unexpected failing lines, {} listed lines now pass (see above)",
        unexpected.len(),
        now_passing.len()
    );
}
