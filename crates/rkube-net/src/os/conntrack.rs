//! Connection-tracking entries, deleted through the `conntrack` program.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use async_trait::async_trait;

use super::Conntrack;
use crate::netns::{Netns, NetnsError};

/// UDP flows to forget: those sent to `dst:dport` (any destination when `dst` is
/// unset) and, when `reply_src` is set, answered by that endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UdpFlows {
    /// Original destination address (a ClusterIP, external or load-balancer IP).
    pub dst: Option<Ipv4Addr>,
    /// Original destination port (the Service port or NodePort).
    pub dport: u16,
    /// The endpoint that answered.
    pub reply_src: Option<Ipv4Addr>,
}

/// Why entries could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// `conntrack` could not be started (not installed?).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `conntrack` failed.
    #[error("conntrack failed: {0}")]
    Failed(String),
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// Runs `conntrack -D` in a namespace.
#[derive(Clone, Debug)]
pub struct ConntrackCommand {
    netns: Netns,
    program: PathBuf,
}

impl ConntrackCommand {
    /// `conntrack` from `PATH`, in `netns`.
    pub fn new(netns: Netns) -> Self {
        Self {
            netns,
            program: PathBuf::from("conntrack"),
        }
    }
}

/// The `conntrack -D` arguments for `flows`.
pub fn delete_args(flows: &UdpFlows) -> Vec<String> {
    let mut args = vec!["-D".into(), "-p".into(), "udp".into()];
    if let Some(dst) = flows.dst {
        args.extend(["--orig-dst".into(), dst.to_string()]);
    }
    args.extend(["--orig-port-dst".into(), flows.dport.to_string()]);
    if let Some(src) = flows.reply_src {
        args.extend(["--reply-src".into(), src.to_string()]);
    }
    args
}

#[async_trait]
impl Conntrack for ConntrackCommand {
    async fn delete_udp(&self, flows: &UdpFlows) -> Result<(), ConntrackError> {
        let args = delete_args(flows);
        let program = self.program.clone();
        let out = self
            .netns
            .run_async(move || {
                Command::new(&program)
                    .args(&args)
                    .output()
                    .map_err(|source| (program, source))
            })
            .await?
            .map_err(|(program, source)| ConntrackError::Spawn { program, source })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // It exits 1 when nothing matched, which is what usually happens.
        if out.status.success() || stderr.contains("0 flow entries") {
            Ok(())
        } else {
            Err(ConntrackError::Failed(stderr.trim().to_string()))
        }
    }
}
