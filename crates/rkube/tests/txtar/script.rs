//! Runs one testscript file the way upstream's harness (`test/cmd/cmd_test.go`) does:
//! a namespace of its own set as the kubeconfig's default (with a `default`
//! ServiceAccount), `HOME` and `$WORK` in a fresh directory, the fixtures folder as
//! working directory, `--wait=false` added to `kubectl delete` without a `--wait`
//! flag. Unlike testscript, it goes on after a failing line and reports every line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::parse::{Archive, Line, split_words};

/// How long one kubectl command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What became of one script line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    /// Not run (after a failure, when stopping on the first one).
    Skipped,
}

#[derive(Clone, Debug)]
pub struct LineResult {
    pub number: usize,
    pub text: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug)]
pub struct FileReport {
    /// The file's name without `.txtar`.
    pub name: String,
    pub results: Vec<LineResult>,
}

impl FileReport {
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .count()
    }

    pub fn failures(&self) -> impl Iterator<Item = &LineResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
    }
}

/// Options of a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Print every line with its outcome and the command output as it runs.
    pub verbose: bool,
    /// Stop at the first failing line, as testscript does.
    pub stop_on_fail: bool,
}

/// The output of the last command.
#[derive(Clone, Debug, Default)]
struct Output {
    stdout: String,
    stderr: String,
}

/// The state of one running script.
struct Script<'a> {
    /// The fixtures folder: the working directory of every kubectl.
    root: &'a Path,
    work: PathBuf,
    kubeconfig: PathBuf,
    env: HashMap<String, String>,
    last: Output,
    verbose: bool,
}

/// Runs `archive` (the file `name`) against the cluster whose admin kubeconfig is
/// `admin_kubeconfig`, in `work` (created empty), with `root` as working directory.
pub fn run_file(
    name: &str,
    archive: &Archive,
    root: &Path,
    admin_kubeconfig: &Path,
    work: &Path,
    opts: &RunOptions,
) -> FileReport {
    let mut report = FileReport {
        name: name.to_string(),
        results: Vec::new(),
    };
    let mut script = match Script::setup(root, admin_kubeconfig, work, archive, opts.verbose) {
        Ok(s) => s,
        Err(e) => {
            for l in &archive.lines {
                report.results.push(LineResult {
                    number: l.number,
                    text: l.text.clone(),
                    outcome: Outcome::Fail(format!("setup failed: {e}")),
                });
            }
            return report;
        }
    };
    let mut stopped = false;
    for line in &archive.lines {
        let outcome = if stopped {
            Outcome::Skipped
        } else {
            script.run_line(line)
        };
        if script.verbose {
            match &outcome {
                Outcome::Pass => eprintln!("{name}:{} ok   {}", line.number, line.text),
                Outcome::Fail(why) => {
                    eprintln!("{name}:{} FAIL {}\n{}", line.number, line.text, indent(why))
                }
                Outcome::Skipped => {}
            }
        }
        if matches!(outcome, Outcome::Fail(_)) && opts.stop_on_fail {
            stopped = true;
        }
        report.results.push(LineResult {
            number: line.number,
            text: line.text.clone(),
            outcome,
        });
    }
    report
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Shortens long output for reports.
fn clip(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... ({} more bytes)", &s[..end], s.len() - end)
}

fn show(label: &str, s: &str) -> String {
    if s.is_empty() {
        format!("{label}: (empty)")
    } else {
        format!("{label}:\n{}", clip(s.trim_end()))
    }
}

impl<'a> Script<'a> {
    fn setup(
        root: &'a Path,
        admin_kubeconfig: &Path,
        work: &Path,
        archive: &Archive,
        verbose: bool,
    ) -> Result<Script<'a>, String> {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work).map_err(|e| format!("creating {work:?}: {e}"))?;
        for (name, body) in &archive.files {
            let path = work.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            std::fs::write(&path, body).map_err(|e| format!("writing {path:?}: {e}"))?;
        }
        let kubeconfig = work.join("kubeconfig");
        std::fs::copy(admin_kubeconfig, &kubeconfig).map_err(|e| e.to_string())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let namespace = format!("namespace-{}-{}", now.as_secs(), now.subsec_nanos());
        let mut env = HashMap::new();
        let work_s = work.to_string_lossy().to_string();
        for (k, v) in [
            ("WORK", work_s.as_str()),
            ("HOME", work_s.as_str()),
            ("TMPDIR", work_s.as_str()),
            ("KUBE_ROOT", &root.to_string_lossy()),
            ("KUBECONFIG", &kubeconfig.to_string_lossy()),
            ("KUBECTL_PLUGINS_PATH", ""),
            // As upstream's harness sets them (test/cmd/cmd_test.go).
            ("IMAGE_NGINX", "registry.k8s.io/nginx:1.7.9"),
            ("IMAGE_DEPLOYMENT_R1", "registry.k8s.io/nginx:test-cmd"),
            ("IMAGE_DEPLOYMENT_R2", "registry.k8s.io/nginx:1.7.9"),
            ("IMAGE_PERL", "registry.k8s.io/perl"),
            ("IMAGE_PAUSE_V2", "registry.k8s.io/pause:2.0"),
            ("IMAGE_DAEMONSET_R2", "registry.k8s.io/pause:latest"),
            ("IMAGE_DAEMONSET_R2_2", "registry.k8s.io/nginx:test-cmd"),
            ("IMAGE_STATEFULSET_R1", "registry.k8s.io/nginx-slim:0.7"),
            ("IMAGE_STATEFULSET_R2", "registry.k8s.io/nginx-slim:0.8"),
        ] {
            env.insert(k.to_string(), v.to_string());
        }
        let s = Script {
            root,
            work: work.to_path_buf(),
            kubeconfig,
            env,
            last: Output::default(),
            verbose,
        };
        // The file's namespace, its default ServiceAccount, and the kubeconfig's
        // context pointing at it.
        for args in [
            vec!["create", "namespace", namespace.as_str()],
            vec![
                "create",
                "serviceaccount",
                "default",
                "-n",
                namespace.as_str(),
            ],
            vec![
                "config",
                "set-context",
                "--current",
                &format!("--namespace={namespace}"),
            ],
        ] {
            let args: Vec<String> = args.into_iter().map(str::to_string).collect();
            let (ok, out) = s.kubectl(&args)?;
            if !ok && !out.stderr.contains("AlreadyExists") {
                return Err(format!(
                    "kubectl {}: {}{}",
                    args.join(" "),
                    out.stdout,
                    out.stderr
                ));
            }
        }
        Ok(s)
    }

    /// Runs kubectl with the script's environment; returns success and output.
    fn kubectl(&self, args: &[String]) -> Result<(bool, Output), String> {
        let out_path = self.work.join(".kubectl.stdout");
        let err_path = self.work.join(".kubectl.stderr");
        let out_file = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
        let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .current_dir(self.root)
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .envs(&self.env)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file);
        let mut child = cmd.spawn().map_err(|e| format!("running kubectl: {e}"))?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for kubectl: {e}")),
            }
        };
        let mut out = Output {
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        };
        if status.is_none() {
            out.stderr.push_str(&format!(
                "\n[runner: killed after {}s]",
                COMMAND_TIMEOUT.as_secs()
            ));
        }
        Ok((status.is_some_and(|s| s.success()), out))
    }

    fn run_line(&mut self, line: &Line) -> Outcome {
        let mut words = match split_words(&line.text, &self.env) {
            Ok(w) => w,
            Err(e) => return Outcome::Fail(e),
        };
        let negated = words.first().map(String::as_str) == Some("!");
        if negated {
            words.remove(0);
        }
        let Some(cmd) = words.first().cloned() else {
            return Outcome::Fail("empty command".into());
        };
        let args = &words[1..];
        let result = match cmd.as_str() {
            "kubectl" => self.cmd_kubectl(args, negated),
            "stdout" | "stderr" => self.cmd_match(&cmd, args, negated),
            "kube-retry" => self.cmd_retry(args, negated),
            "cp" => self.cmd_cp(args),
            "cmp" => self.cmd_cmp(args, negated),
            "env" => self.cmd_env(args),
            other => Err(format!("unknown command {other:?}")),
        };
        match result {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        }
    }

    fn cmd_kubectl(&mut self, args: &[String], negated: bool) -> Result<(), String> {
        let mut args = args.to_vec();
        if args.first().map(String::as_str) == Some("delete")
            && !args.iter().any(|a| a.starts_with("--wait"))
        {
            args.push("--wait=false".into());
        }
        let (ok, out) = self.kubectl(&args)?;
        if self.verbose {
            if !out.stdout.is_empty() {
                eprintln!(
                    "{}",
                    indent(&format!("[stdout]\n{}", out.stdout.trim_end()))
                );
            }
            if !out.stderr.is_empty() {
                eprintln!(
                    "{}",
                    indent(&format!("[stderr]\n{}", out.stderr.trim_end()))
                );
            }
        }
        self.last = out;
        let shown = || {
            format!(
                "{}\n{}",
                show("stdout", &self.last.stdout),
                show("stderr", &self.last.stderr)
            )
        };
        match (ok, negated) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(format!("kubectl failed\n{}", shown())),
            (true, true) => Err(format!("kubectl succeeded unexpectedly\n{}", shown())),
        }
    }

    fn cmd_match(&self, stream: &str, args: &[String], negated: bool) -> Result<(), String> {
        let [pattern] = args else {
            return Err(format!("usage: {stream} 'regexp'"));
        };
        let re = regex::Regex::new(&format!("(?m){pattern}"))
            .map_err(|e| format!("bad regexp {pattern:?}: {e}"))?;
        let text = if stream == "stdout" {
            &self.last.stdout
        } else {
            &self.last.stderr
        };
        match (re.is_match(text), negated) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(format!("no match for {pattern:?}\n{}", show(stream, text))),
            (true, true) => Err(format!(
                "unexpected match for {pattern:?}\n{}",
                show(stream, text)
            )),
        }
    }

    /// `kube-retry 'GET-ARGS' 'JSONPATH' 'WANT' [SECONDS]`: `kubectl get` until the
    /// trimmed output is WANT, at most 10 tries with a growing pause (as upstream).
    fn cmd_retry(&mut self, args: &[String], negated: bool) -> Result<(), String> {
        if args.len() < 3 {
            return Err("usage: kube-retry 'get args' 'jsonpath' 'want'".into());
        }
        let mut get: Vec<String> = vec!["get".into()];
        get.extend(args[0].split_whitespace().map(str::to_string));
        get.push("-o".into());
        get.push(format!("jsonpath={}", args[1]));
        let want = &args[2];
        let mut last = String::new();
        for i in 0..10u64 {
            let (ok, out) = self.kubectl(&get)?;
            let got = out.stdout.trim().to_string();
            if ok && got == *want {
                return if negated {
                    Err(format!("kube-retry: unexpected match {got:?}"))
                } else {
                    Ok(())
                };
            }
            last = format!("got {got:?}, stderr {:?}", out.stderr.trim());
            std::thread::sleep(Duration::from_millis((i * 500).min(3000)));
        }
        if negated {
            Ok(())
        } else {
            Err(format!(
                "kube-retry: wanted {want:?} after 10 tries; {last}"
            ))
        }
    }

    fn cmd_cp(&self, args: &[String]) -> Result<(), String> {
        let [from, to] = args else {
            return Err("usage: cp FROM TO".into());
        };
        let data = self.read_operand(from)?;
        std::fs::write(self.work.join(to), data).map_err(|e| format!("cp: {e}"))
    }

    fn cmd_cmp(&self, args: &[String], negated: bool) -> Result<(), String> {
        let [a, b] = args else {
            return Err("usage: cmp A B".into());
        };
        let (x, y) = (self.read_operand(a)?, self.read_operand(b)?);
        match (x == y, negated) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(format!("{a} and {b} differ: {x:?} vs {y:?}")),
            (true, true) => Err(format!("{a} and {b} are the same: {x:?}")),
        }
    }

    fn read_operand(&self, name: &str) -> Result<String, String> {
        match name {
            "stdout" => Ok(self.last.stdout.clone()),
            "stderr" => Ok(self.last.stderr.clone()),
            f => std::fs::read_to_string(self.work.join(f)).map_err(|e| format!("{f}: {e}")),
        }
    }

    fn cmd_env(&mut self, args: &[String]) -> Result<(), String> {
        for a in args {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("env: {a:?} is not NAME=VALUE"))?;
            self.env.insert(k.to_string(), v.to_string());
        }
        Ok(())
    }
}
