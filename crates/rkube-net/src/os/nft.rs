//! nftables through the `nft` program: a script on stdin is one kernel transaction.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use async_trait::async_trait;

use super::Nft;
use crate::netns::{Netns, NetnsError};

/// Why a ruleset was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started (not installed?).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program path.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `nft` rejected the ruleset; nothing was changed.
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// Runs `nft -f -` in a namespace.
#[derive(Clone, Debug)]
pub struct NftCommand {
    netns: Netns,
    program: PathBuf,
}

impl NftCommand {
    /// `nft` from `PATH`, in `netns`.
    pub fn new(netns: Netns) -> Self {
        Self {
            netns,
            program: PathBuf::from("nft"),
        }
    }

    /// Runs `nft` with `args` (e.g. `list table ip NAME`) and returns its stdout.
    pub async fn run(&self, args: &[&str], stdin: Option<String>) -> Result<String, NftError> {
        let program = self.program.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // The child is forked from the thread inside the namespace, so it runs there.
        self.netns
            .run_async(move || -> Result<String, NftError> {
                let spawn = |source| NftError::Spawn {
                    program: program.clone(),
                    source,
                };
                let mut child = Command::new(&program)
                    .args(&args)
                    .stdin(if stdin.is_some() {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(spawn)?;
                if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
                    pipe.write_all(input.as_bytes()).map_err(spawn)?;
                }
                let out = child.wait_with_output().map_err(spawn)?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(NftError::Rejected(trim_error(&err)));
                }
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .await?
    }
}

/// Keeps the first lines of an `nft` error: a rejected 10,000-service script can
/// echo much of itself.
fn trim_error(err: &str) -> String {
    let lines: Vec<&str> = err.lines().take(12).collect();
    lines.join("\n")
}

#[async_trait]
impl Nft for NftCommand {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script.to_string()))
            .await
            .map(|_| ())
    }
}
