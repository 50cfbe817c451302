//! The actions probes and lifecycle hooks perform against a container: an HTTP GET,
//! a TCP connect, a command run inside it, a gRPC health check, a sleep. Each ends in
//! success or a failure message worded as upstream's kubelet words it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rkube_runtime::Runtime;
use tokio::net::TcpStream;

/// The User-Agent of HTTP probes and hooks.
pub const USER_AGENT: &str = "kube-probe/1.33";

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Success,
    /// It did not; why.
    Failure(String),
}

/// Where actions go: the pod's address and the container.
#[derive(Clone)]
pub struct Target {
    /// The pod IP (the node IP for host-network pods).
    pub ip: IpAddr,
    /// The runtime's container ID.
    pub container_id: String,
    /// The container's spec (named ports).
    pub container: Container,
    /// The runtime, for exec.
    pub runtime: Arc<dyn Runtime>,
}

/// A port number, or a name looked up in the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) if (1..=65535).contains(n) => Ok(*n as u16),
        IntOrString::Int(n) => Err(format!("invalid port number: {n}")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<i32>() {
                return resolve_port(&IntOrString::Int(n), c);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port as u16)
                .ok_or_else(|| format!("couldn't find port: {s} in {}", c.name))
        }
    }
}

fn host_of(host: Option<&String>, t: &Target) -> String {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => h.clone(),
        None => t.ip.to_string(),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = join_host_port(host, port);
    TcpStream::connect(&addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
            _ => e.to_string(),
        };
        format!("dial tcp {addr}: {why}")
    })
}

/// A TCP connect.
pub async fn tcp_socket(a: &TCPSocketAction, t: &Target, timeout: Duration) -> Outcome {
    let port = match resolve_port(&a.port, &t.container) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let host = host_of(a.host.as_ref(), t);
    match tokio::time::timeout(timeout, dial(&host, port)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(e),
        Err(_) => Outcome::Failure(format!(
            "dial tcp {}: i/o timeout",
            join_host_port(&host, port)
        )),
    }
}

/// Accepts any certificate: upstream's HTTPS probes do not verify the server.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn http_status(
    https: bool,
    host: &str,
    port: u16,
    req: http::Request<Empty<Bytes>>,
) -> Result<http::StatusCode, String> {
    let tcp = dial(host, port).await?;
    macro_rules! send {
        ($io:expr) => {{
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($io))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            Ok(resp.status())
        }};
    }
    if https {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tls_connector()
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send!(tls)
    } else {
        send!(tcp)
    }
}

/// An HTTP GET; 2xx and 3xx are success.
pub async fn http_get(a: &HTTPGetAction, t: &Target, timeout: Duration) -> Outcome {
    let port = match resolve_port(&a.port, &t.container) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let https = a
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let host = host_of(a.host.as_ref(), t);
    let mut path = a.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", join_host_port(&host, port));
    let mut builder = http::Request::get(path.as_str())
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::ACCEPT, "*/*");
    let mut host_header = join_host_port(&host, port);
    for h in a.http_headers.iter().flatten() {
        if h.name.eq_ignore_ascii_case("host") {
            host_header = h.value.clone();
        } else {
            builder = builder.header(h.name.as_str(), h.value.as_str());
        }
    }
    let req = match builder
        .header(http::header::HOST, host_header)
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("invalid request for {url}: {e}")),
    };
    match tokio::time::timeout(timeout, http_status(https, &host, port, req)).await {
        Ok(Ok(s)) if (200..400).contains(&s.as_u16()) => Outcome::Success,
        Ok(Ok(s)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {}", s.as_u16())),
        Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
        Err(_) => Outcome::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// A command run in the container; exit code 0 is success.
pub async fn exec(cmd: &[String], t: &Target, timeout: Duration) -> Outcome {
    match t
        .runtime
        .exec_sync(&t.container_id, cmd.to_vec(), timeout)
        .await
    {
        Ok(out) if out.exit_code == 0 => Outcome::Success,
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let text = text.trim();
            if text.is_empty() {
                Outcome::Failure(format!("command {cmd:?} exited with {}", out.exit_code))
            } else {
                Outcome::Failure(text.to_string())
            }
        }
        Err(rkube_runtime::RuntimeError::Timeout { .. }) => Outcome::Failure(format!(
            "command timed out: {:?} timed out after {}s",
            cmd.join(" "),
            timeout.as_secs()
        )),
        Err(e) => Outcome::Failure(e.to_string()),
    }
}

/// The gRPC health check request (`grpc.health.v1.HealthCheckRequest{service}`) in
/// its length-prefixed message frame.
fn grpc_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        let mut n = service.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                msg.push(b);
                break;
            }
            msg.push(b | 0x80);
        }
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

/// The `status` of a `HealthCheckResponse` frame (1 = SERVING).
fn grpc_status(body: &[u8]) -> Option<u64> {
    let msg = body.get(5..)?;
    let mut i = 0;
    while i < msg.len() {
        let key = msg[i];
        i += 1;
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *msg.get(i)?;
            i += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if key == 0x08 {
            return Some(v);
        }
        if key & 7 == 2 {
            i += v as usize;
        }
    }
    Some(0)
}

async fn grpc_call(host: &str, port: u16, service: &str) -> Result<Option<u64>, String> {
    let tcp = dial(host, port).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::post(format!(
        "http://{}/grpc.health.v1.Health/Check",
        join_host_port(host, port)
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header(http::header::USER_AGENT, USER_AGENT)
    .body(Full::new(Bytes::from(grpc_request(service))))
    .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let header_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let grpc_code = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(header_status);
    if let Some(code) = grpc_code.filter(|c| c != "0") {
        return Err(format!("health rpc failed with grpc-status {code}"));
    }
    Ok(grpc_status(&collected.to_bytes()))
}

/// A gRPC health check (`grpc.health.v1.Health/Check`); SERVING is success.
pub async fn grpc(a: &GRPCAction, t: &Target, timeout: Duration) -> Outcome {
    let Ok(port) = u16::try_from(a.port) else {
        return Outcome::Failure(format!("invalid port number: {}", a.port));
    };
    let host = t.ip.to_string();
    let service = a.service.clone().unwrap_or_default();
    let addr = SocketAddr::new(t.ip, port);
    match tokio::time::timeout(timeout, grpc_call(&host, port, &service)).await {
        Ok(Ok(Some(1))) => Outcome::Success,
        Ok(Ok(status)) => {
            let word = match status {
                Some(2) => "NOT_SERVING",
                Some(3) => "SERVICE_UNKNOWN",
                _ => "UNKNOWN",
            };
            Outcome::Failure(format!("service unhealthy (responded with \"{word}\")"))
        }
        Ok(Err(e)) => Outcome::Failure(format!("failed to connect service \"{addr}\": {e}")),
        Err(_) => Outcome::Failure(format!(
            "timeout: failed to connect service \"{addr}\" within {}s",
            timeout.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_frames() {
        assert_eq!(grpc_request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(grpc_request("ab"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']);
        assert_eq!(grpc_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(grpc_status(&[0, 0, 0, 0, 0]), Some(0));
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(serde_json::json!(
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert_eq!(resolve_port(&IntOrString::Int(9), &c), Ok(9));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &c).is_err());
    }
}
