//! Port-forward (`portforward.k8s.io`) over SPDY: for each forwarded connection
//! the client opens an `error` and a `data` stream with the same `port` and
//! `requestid` headers; the data stream is piped to the port dialed inside the pod's
//! network namespace, and a failure is reported on the error stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::netns;
use super::spdy::{Connection, IncomingStream, Stream};

/// The SPDY protocol name of port-forward.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// How long the second stream of a pair may take to arrive.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
    port: u16,
    since: Option<Instant>,
}

/// Checks a stream's headers: its type and port.
fn check(s: &IncomingStream) -> Result<(String, u16), String> {
    let port = s.headers.get("port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port == 0 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    let kind = s.headers.get("streamtype").unwrap_or("");
    if kind != "error" && kind != "data" {
        return Err(format!("invalid stream type {kind:?}"));
    }
    Ok((kind.to_string(), port))
}

/// Old clients send no `requestid`: pair streams by id, as the kubelet did for them
/// (the error stream first, its data stream two ids later).
fn request_id(s: &IncomingStream, kind: &str) -> String {
    match s.headers.get("requestid") {
        Some(id) => id.to_string(),
        None if kind == "error" => s.id.to_string(),
        None => s.id.saturating_sub(2).to_string(),
    }
}

/// Serves port-forward on a SPDY connection until the client closes it.
pub async fn serve(mut conn: Connection, netns: PathBuf, pod: String) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            incoming = conn.accept() => {
                let Some(incoming) = incoming else { break };
                let (kind, port) = match check(&incoming) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("port-forward to {pod}: {e}");
                        incoming.refuse().await;
                        continue;
                    }
                };
                let id = request_id(&incoming, &kind);
                let Ok(stream) = incoming.accept().await else { break };
                let pair = pairs.entry(id.clone()).or_default();
                pair.port = port;
                pair.since.get_or_insert_with(Instant::now);
                let slot = if kind == "data" { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    let msg = format!("error processing stream for request {id}: {kind} stream already assigned");
                    if let Some(e) = &pair.error {
                        let _ = e.writer.send(msg.as_bytes()).await;
                    }
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some() && pair.error.is_some() {
                    let p = pairs.remove(&id).expect("present");
                    let (data, error) = (p.data.expect("data"), p.error.expect("error"));
                    tokio::spawn(forward(data, error, p.port, netns.clone(), pod.clone()));
                }
            }
            _ = tick.tick() => {
                let stale: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() > STREAM_CREATION_TIMEOUT))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in stale {
                    let p = pairs.remove(&id).expect("present");
                    if let Some(e) = p.error {
                        let msg = format!("timed out waiting for streams of request {id}");
                        let _ = e.writer.send(msg.as_bytes()).await;
                        e.writer.close().await;
                    }
                    if let Some(d) = p.data {
                        d.writer.close().await;
                    }
                }
            }
        }
    }
}

/// Pipes one forwarded connection: client data to the pod's port and back.
async fn forward(data: Stream, error: Stream, port: u16, netns: PathBuf, pod: String) {
    let tcp = match netns::dial(&netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = serde_json::json!({
                "closeConnection": true,
                "message": format!("error forwarding port {port} to pod {pod}: {e}"),
            });
            let _ = error.writer.send(msg.to_string().as_bytes()).await;
            error.writer.close().await;
            data.writer.close().await;
            return;
        }
    };
    let (mut from_client, to_client) = data.split();
    let (mut pod_r, mut pod_w) = tcp.into_split();
    // Client to pod; the client's half-close becomes ours towards the pod.
    let upstream = tokio::spawn(async move {
        while let Some(b) = from_client.recv().await {
            if pod_w.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = pod_w.shutdown().await;
    });
    // Pod to client, until the pod closes its side.
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pod_r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_client.send(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    upstream.abort();
    to_client.close().await;
    error.writer.close().await;
}
