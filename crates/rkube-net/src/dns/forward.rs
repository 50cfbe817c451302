//! Forwarding questions outside the cluster domain to upstream resolvers, as raw
//! messages: the client's id and flags go up, the upstream's answer comes back as is.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::netns::Netns;

/// A UDP socket in `ns` (sockets made on a tokio worker would be in the process's
/// own namespace, where the upstream may not be reachable).
async fn udp_socket(ns: &Netns, bind: SocketAddr) -> Option<UdpSocket> {
    if *ns == Netns::Current {
        return UdpSocket::bind(bind).await.ok();
    }
    ns.run_in_runtime(move || {
        let s = std::net::UdpSocket::bind(bind)?;
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s)
    })
    .await
    .ok()?
    .ok()
}

async fn tcp_connect(ns: &Netns, to: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    if *ns == Netns::Current {
        return TcpStream::connect(to).await.ok();
    }
    ns.run_in_runtime(move || {
        let s = std::net::TcpStream::connect_timeout(&to, timeout)?;
        s.set_nonblocking(true)?;
        TcpStream::from_std(s)
    })
    .await
    .ok()?
    .ok()
}

/// Asks each upstream in turn over UDP; the first answer with the right id wins.
pub async fn udp(
    ns: &Netns,
    upstreams: &[SocketAddr],
    query: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .ok()?;
        let Some(sock) = udp_socket(ns, bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            if n >= 12 && &buf[..2] == id {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// Asks each upstream in turn over TCP.
pub async fn tcp(
    ns: &Netns,
    upstreams: &[SocketAddr],
    query: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    for up in upstreams {
        let attempt = async {
            let mut s = tcp_connect(ns, *up, timeout).await?;
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(query);
            s.write_all(&framed).await.ok()?;
            let len = s.read_u16().await.ok()?;
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        if let Ok(Some(answer)) = tokio::time::timeout(timeout, attempt).await {
            return Some(answer);
        }
    }
    None
}
