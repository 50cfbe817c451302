//! Dialing a TCP port inside a pod's network namespace.
//!
//! Namespaces belong to threads: a short-lived dedicated thread enters the pod's
//! network namespace, connects, and hands the socket back. A socket stays in the
//! namespace it was made in, so the async side can use it from any thread. No
//! tokio worker ever changes namespace, and nothing forks.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use nix::sched::CloneFlags;
use tokio::net::TcpStream;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `localhost:port` in the network namespace at `netns` (IPv4, then IPv6).
pub async fn dial(netns: &Path, port: u16) -> io::Result<TcpStream> {
    let netns = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rkube-netns-dial".into())
        .spawn(move || {
            let r = (|| {
                let ns = std::fs::File::open(&netns)?;
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let mut last = None;
                for addr in [
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                ] {
                    match std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT) {
                        Ok(s) => return Ok(s),
                        Err(e) => {
                            last = Some(io::Error::new(e.kind(), format!("dial tcp {addr}: {e}")))
                        }
                    }
                }
                Err(last.expect("two addresses tried"))
            })();
            let _ = tx.send(r);
        })?;
    let s = rx
        .await
        .map_err(|_| io::Error::other("the dialing thread ended early"))??;
    s.set_nonblocking(true)?;
    let s = TcpStream::from_std(s)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}
