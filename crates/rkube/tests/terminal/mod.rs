//! A command line run under `script`, which gives it a terminal, with input typed
//! the way a person would: once the remote shell has drawn its prompt. A fixed
//! delay is not enough: busybox's shell asks the terminal for the cursor position
//! and redraws its prompt, and a line typed before it reads lands nowhere.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the terminal showed and how the command ended.
pub struct Screen {
    pub code: Option<i32>,
    /// Everything the terminal showed (stdout and stderr of the command line).
    pub shown: Vec<u8>,
    /// `script`'s own complaints.
    pub stderr: Vec<u8>,
}

/// Runs `line` (a shell command line) under `script` with `envs`, types `input`
/// once, and waits for the end. Input goes in when the terminal is quiet after the
/// remote shell's prompt or kubectl attach's "try pressing enter", or after 20 s
/// without either. Panics after a minute, showing what the terminal showed.
pub fn run(line: &str, envs: Vec<(OsString, OsString)>, input: &[u8]) -> Screen {
    let mut child = Command::new("script")
        .args(["-qefc", line, "/dev/null"])
        .envs(envs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = stderr.read_to_end(&mut e);
        e
    });
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut shown = Vec::new();
    let mut typed = false;
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(300));
        match rx.recv_timeout(wait) {
            Ok(chunk) => shown.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{line:?} did not finish within a minute; the terminal showed {:?}",
                    String::from_utf8_lossy(&shown)
                );
            }
            // Quiet: type if the prompt is there.
            Err(mpsc::RecvTimeoutError::Timeout) if !typed => {
                let text = String::from_utf8_lossy(&shown);
                let last_line = text.rsplit('\n').next().unwrap_or_default();
                if last_line.contains("# ")
                    || last_line.contains("$ ")
                    || text.contains("try pressing enter")
                    || started.elapsed() > Duration::from_secs(20)
                {
                    let _ = stdin.write_all(input);
                    let _ = stdin.flush();
                    typed = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    // The terminal stayed open (stdin held) until the command line ended.
    let status = child.wait().expect("script's exit");
    drop(stdin);
    Screen {
        code: status.code(),
        shown,
        stderr: errors.join().unwrap_or_default(),
    }
}
