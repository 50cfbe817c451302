//! Talking to kubelets: where a node's kubelet listens, and an HTTPS client that
//! authenticates with the API server's kubelet-client certificate, verifies the
//! kubelet against the cluster CA, and forwards requests (upgrades included).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::pki::CertPair;

/// The kubelet port when a Node does not say.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials the API server uses towards kubelets.
#[derive(Clone)]
pub struct KubeletClientConfig {
    /// CA that signed the kubelets' serving certificates (the cluster CA).
    pub ca_pem: String,
    /// The API server's client certificate (`kube-apiserver-kubelet-client`).
    pub client: CertPair,
}

impl std::fmt::Debug for KubeletClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletClientConfig { .. }")
    }
}

/// Where a kubelet listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletEndpoint {
    pub host: String,
    pub port: u16,
}

impl KubeletEndpoint {
    /// The kubelet of a Node: its InternalIP (else Hostname, ExternalIP, ...) and
    /// `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub fn of_node(node: &Value) -> Option<KubeletEndpoint> {
        let addresses = node.pointer("/status/addresses")?.as_array()?;
        let host = [
            "InternalIP",
            "Hostname",
            "InternalDNS",
            "ExternalIP",
            "ExternalDNS",
        ]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"] == *kind)
                .and_then(|a| a["address"].as_str())
                .filter(|a| !a.is_empty())
        })?;
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .filter(|p| (1..=65535).contains(p))
            .map(|p| p as u16)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Some(KubeletEndpoint {
            host: host.to_string(),
            port,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An HTTPS client for kubelets.
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl KubeletClient {
    pub fn new(cfg: &KubeletClientConfig) -> Result<KubeletClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(cfg.ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cfg.client.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(cfg.client.key_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| e.to_string())?;
        // Upgrades need HTTP/1.1.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        })
    }

    /// Sends one request on a new connection; the connection is driven on its own
    /// task and can be upgraded.
    pub async fn send(
        &self,
        to: &KubeletEndpoint,
        mut req: Request<Body>,
    ) -> ApiResult<Response<hyper::body::Incoming>> {
        let dial_err =
            |e: &dyn std::fmt::Display| ApiError::internal(format!("error dialing backend: {e}"));
        let tcp = tokio::time::timeout(
            DIAL_TIMEOUT,
            tokio::net::TcpStream::connect((to.host.as_str(), to.port)),
        )
        .await
        .map_err(|_| dial_err(&format!("dial tcp {}: i/o timeout", to.authority())))?
        .map_err(|e| dial_err(&format!("dial tcp {}: {e}", to.authority())))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(to.host.clone()).map_err(|e| dial_err(&e))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| dial_err(&format!("tls: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| dial_err(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("kubelet connection: {e}");
            }
        });
        if let Ok(v) = HeaderValue::from_str(&to.authority()) {
            req.headers_mut().insert(header::HOST, v);
        }
        sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::internal(format!("error talking to the kubelet: {e}")))
    }
}

/// Headers of a client request that matter to the kubelet's upgrade.
const FORWARDED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
    "content-type",
    "accept",
    "user-agent",
];

fn forwarded_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARDED {
        for v in from.get_all(*name) {
            to.append(*name, v.clone());
        }
    }
}

fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        _ => "InternalError",
    }
}

/// A kubelet's error answer as a `Status` carrying its text.
async fn kubelet_error(resp: Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    ApiError::new(code, reason_for(code), text)
}

/// GET a streamed resource (container logs): its body, passed on as it comes.
pub async fn stream_get(
    client: &KubeletClient,
    to: &KubeletEndpoint,
    path_and_query: &str,
) -> ApiResult<Response<Body>> {
    let req = Request::get(path_and_query)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = client.send(to, req).await?;
    if !resp.status().is_success() {
        return Err(kubelet_error(resp).await);
    }
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

/// Forwards an upgrade request (exec, attach, port-forward): on 101 both
/// connections are spliced byte for byte; any other answer is passed back as is,
/// so the client sees the kubelet's own refusal (and may fall back to SPDY).
pub async fn proxy_upgrade(
    client: &KubeletClient,
    to: &KubeletEndpoint,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    on_client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> ApiResult<Response<Body>> {
    let Some(on_client_upgrade) = on_client_upgrade else {
        return Err(ApiError::bad_request(
            "Upgrade request required: this connection cannot be upgraded",
        ));
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    forwarded_headers(headers, req.headers_mut());
    let mut resp = client.send(to, req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let on_kubelet_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client_side, kubelet_side) = tokio::join!(on_client_upgrade, on_kubelet_upgrade);
        match (client_side, kubelet_side) {
            (Ok(c), Ok(k)) => {
                let (mut c, mut k) = (TokioIo::new(c), TokioIo::new(k));
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut k).await {
                    tracing::debug!("kubelet stream proxy: {e}");
                }
            }
            (c, k) => tracing::debug!(
                "kubelet stream proxy: upgrade failed (client: {:?}, kubelet: {:?})",
                c.err(),
                k.err()
            ),
        }
    });
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

/// Forwards a plain request (node proxy) with its body; the answer as is.
pub async fn proxy(
    client: &KubeletClient,
    to: &KubeletEndpoint,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response<Body>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for name in ["content-type", "accept", "content-length"] {
        for v in headers.get_all(name) {
            req.headers_mut().append(name, v.clone());
        }
    }
    let resp = client.send(to, req).await?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_prefers_the_internal_ip_and_the_advertised_port() {
        let node = json!({"status": {
            "addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "InternalIP", "address": "10.0.0.5"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}},
        }});
        assert_eq!(
            KubeletEndpoint::of_node(&node),
            Some(KubeletEndpoint {
                host: "10.0.0.5".into(),
                port: 12345
            })
        );
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "node-a"}]}});
        assert_eq!(
            KubeletEndpoint::of_node(&node),
            Some(KubeletEndpoint {
                host: "node-a".into(),
                port: DEFAULT_KUBELET_PORT
            })
        );
        assert_eq!(KubeletEndpoint::of_node(&json!({"status": {}})), None);
    }
}
