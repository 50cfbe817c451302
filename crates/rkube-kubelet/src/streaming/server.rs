//! The HTTPS server on the kubelet port: TLS, the caller's identity, and the
//! routes `/containerLogs`, `/exec`, `/attach`, `/portForward` and `/healthz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use rkube_runtime::{ContainerState, Runtime};
use tokio::net::TcpListener;

use super::auth::{Attributes, AuthMode, CacheTtls, Gate, Identity};
use super::logs::{self, LogOptions};
use super::query::Query;
use super::remotecommand::{self, Command, Options};
use super::tls;
use super::upgrade::{self, Supported, Transport};
use super::{StreamingError, portforward, spdy, websocket};
use crate::lookup::{LookupError, PodLookup};

/// The kubelet's port, as upstream.
pub const DEFAULT_PORT: u16 = 10250;
/// The user the API server's kubelet-client certificate names.
pub const API_SERVER_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// How to serve.
#[derive(Clone, Debug)]
pub struct StreamingConfig {
    /// Where to listen (`0.0.0.0:10250`).
    pub address: SocketAddr,
    /// This node's name: requests are authorized on `nodes/<subresource>` of it.
    pub node_name: String,
    /// The kubelet's serving certificate and key, PEM (issued by the cluster CA
    /// for the node's name and addresses; the API server verifies it).
    pub tls: ServingTls,
    /// How callers are authenticated and authorized.
    pub auth: AuthMode,
}

/// The serving certificate, its key, and the CA of client certificates (PEM).
#[derive(Clone)]
pub struct ServingTls {
    pub cert_pem: String,
    pub key_pem: String,
    /// Client certificates must chain to it (the cluster CA).
    pub client_ca_pem: String,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingTls { .. }")
    }
}

impl StreamingConfig {
    /// Listening on `address` for node `node_name`, open to client certificates of
    /// the API server's kubelet client and of `system:masters` only. A node agent
    /// with an API client uses [`StreamingConfig::webhook`] instead.
    pub fn new(address: SocketAddr, node_name: &str, tls: ServingTls) -> StreamingConfig {
        StreamingConfig {
            address,
            node_name: node_name.to_string(),
            tls,
            auth: AuthMode::Fixed {
                users: vec![API_SERVER_CLIENT_USER.into()],
                groups: vec!["system:masters".into()],
            },
        }
    }

    /// Bearer tokens reviewed and every request authorized by the API server that
    /// `client` talks to, as upstream's kubelet in webhook mode.
    pub fn webhook(mut self, client: kube::Client) -> StreamingConfig {
        self.auth = AuthMode::Webhook {
            client,
            ttls: CacheTtls::default(),
        };
        self
    }
}

struct State {
    lookup: Arc<dyn PodLookup>,
    runtime: Arc<dyn Runtime>,
    gate: Gate,
}

/// The streaming server, bound and ready to run.
pub struct StreamingServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
}

impl StreamingServer {
    /// Binds the address and prepares TLS. Containers are found through `lookup`
    /// and run through `runtime`.
    pub async fn bind(
        config: StreamingConfig,
        lookup: Arc<dyn PodLookup>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<StreamingServer, StreamingError> {
        let tls = tls::server_config(
            &config.tls.cert_pem,
            &config.tls.key_pem,
            &config.tls.client_ca_pem,
        )?;
        let listener =
            TcpListener::bind(config.address)
                .await
                .map_err(|source| StreamingError::Bind {
                    address: config.address,
                    source,
                })?;
        Ok(StreamingServer {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            state: Arc::new(State {
                lookup,
                runtime,
                gate: Gate::new(config.auth, config.node_name),
            }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves connections, each on its own task, for as long as the future runs.
    pub async fn run(self) {
        loop {
            let (tcp, _) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("kubelet streaming accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!("kubelet streaming TLS handshake: {e}");
                        return;
                    }
                };
                let identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|der| tls::identity_of(der));
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let identity = identity.clone();
                    async move { Ok::<_, Infallible>(route(state, identity, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!("kubelet streaming connection: {e}");
                }
            });
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn lookup_status(e: &LookupError) -> StatusCode {
    match e {
        LookupError::PodNotFound { .. } | LookupError::ContainerNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        LookupError::NotRunning { .. } | LookupError::Ambiguous { .. } => StatusCode::BAD_REQUEST,
    }
}

async fn route(
    state: Arc<State>,
    certificate: Option<Identity>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let attrs = Attributes::of(req.method(), &path);
    let admitted = match state
        .gate
        .authenticate(certificate.as_ref(), req.headers())
        .await
    {
        Ok(who) => state.gate.authorize(&who, &attrs).await,
        Err(e) => Err(e),
    };
    if let Err(denied) = admitted {
        return text(denied.status(), denied.to_string());
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let q = Query::parse(req.uri().query());
    let method = req.method().clone();
    match (method, parts.as_slice()) {
        (Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(&state, ns, pod, container, &q).await
        }
        (Method::GET | Method::POST, ["exec" | "attach", ns, pod, container])
        | (Method::GET | Method::POST, ["exec" | "attach", ns, pod, _, container]) => {
            let attach = parts[0] == "attach";
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            remote_command(&state, req, &ns, &pod, &container, &q, attach).await
        }
        (Method::GET | Method::POST, ["portForward", ns, pod])
        | (Method::GET | Method::POST, ["portForward", ns, pod, _]) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            port_forward(&state, req, &ns, &pod).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

async fn container_logs(
    state: &State,
    ns: &str,
    pod: &str,
    container: &str,
    q: &Query,
) -> Response<Body> {
    let c = match state.lookup.container(ns, pod, Some(container)) {
        Ok(c) => c,
        Err(e) => return text(lookup_status(&e), e.to_string()),
    };
    let opts = match LogOptions::from_query(q, jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let (path, running) = if opts.previous {
        match c.previous_log_path {
            Some(p) => (p, None),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                );
            }
        }
    } else {
        let runtime = state.runtime.clone();
        let id = c.id.clone();
        let check: logs::RunningCheck = Box::new(move || {
            let runtime = runtime.clone();
            let id = id.clone();
            Box::pin(async move {
                matches!(runtime.container_status(&id).await, Ok(s) if s.state == ContainerState::Running)
            })
        });
        (c.log_path, Some(check))
    };
    if let Err(e) = tokio::fs::metadata(&path).await {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "failed to open log file {:?}: {e}",
                path.display().to_string()
            ),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        if let Err(e) = logs::stream(path, opts, running, tx).await {
            tracing::debug!("container logs: {e}");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Answers the upgrade with 101 and runs `serve` on the upgraded connection.
fn upgrade_then<F, Fut>(
    mut req: Request<Incoming>,
    supported: &Supported<'_>,
    serve: F,
) -> Response<Body>
where
    F: FnOnce(Transport, TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (transport, answer) = match upgrade::negotiate(req.headers(), supported) {
        Ok(v) => v,
        Err(refusal) => {
            let mut r = text(refusal.code, refusal.message.clone());
            r.headers_mut().extend(refusal.headers());
            return r;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(transport, TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!("streaming upgrade: {e}"),
        }
    });
    let (parts, ()) = answer.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()).boxed_unsync())
}

async fn remote_command(
    state: &State,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
    q: &Query,
    attach: bool,
) -> Response<Body> {
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )
    };
    let c = match state.lookup.container(ns, pod, Some(container)) {
        Ok(c) => c,
        Err(LookupError::PodNotFound { .. }) => {
            return text(StatusCode::NOT_FOUND, "pod does not exist");
        }
        Err(LookupError::ContainerNotFound { .. } | LookupError::NotRunning { .. }) => {
            return not_found();
        }
        Err(e) => return text(lookup_status(&e), e.to_string()),
    };
    match state.runtime.container_status(&c.id).await {
        Ok(s) if s.state == ContainerState::Running => {}
        _ => return not_found(),
    }
    let opts = match Options::from_query(q) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let cmd = q.all("command");
    let command = if attach {
        Command::Attach { container_id: c.id }
    } else {
        if cmd.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "you must specify at least one command for the container",
            );
        }
        Command::Exec {
            container_id: c.id,
            cmd: cmd.clone(),
        }
    };
    let supported = Supported {
        websocket: websocket::CHANNEL_PROTOCOLS,
        spdy: remotecommand::spdy::PROTOCOLS,
        spdy_default: "channel.k8s.io",
    };
    let runtime = state.runtime.clone();
    upgrade_then(req, &supported, move |transport, io| async move {
        let session = move |io| remotecommand::run(runtime, command, opts, io);
        match transport {
            Transport::WebSocket(p) => {
                let proto = websocket::ChannelProtocol::parse(&p).expect("negotiated");
                let ws = websocket::server(io).await;
                remotecommand::websocket::serve(ws, proto, opts, cmd, session).await;
            }
            Transport::Spdy(p) => {
                let (r, w) = tokio::io::split(io);
                let conn = spdy::Connection::server(r, w);
                remotecommand::spdy::serve(conn, &p, opts, cmd, session).await;
            }
        }
    })
}

async fn port_forward(
    state: &State,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
    let sandbox = match state.lookup.sandbox(ns, pod) {
        Ok(s) => s,
        Err(e) => return text(lookup_status(&e), e.to_string()),
    };
    let supported = Supported {
        websocket: &[websocket::SPDY_PORTFORWARD_TUNNEL],
        spdy: &[portforward::PROTOCOL],
        spdy_default: portforward::PROTOCOL,
    };
    let pod = pod.to_string();
    upgrade_then(req, &supported, move |transport, io| async move {
        let conn = match transport {
            Transport::WebSocket(_) => {
                let ws = websocket::server(io).await;
                let (r, w) = tokio::io::split(websocket::tunnel(ws));
                spdy::Connection::server(r, w)
            }
            Transport::Spdy(_) => {
                let (r, w) = tokio::io::split(io);
                spdy::Connection::server(r, w)
            }
        };
        portforward::serve(conn, sandbox.netns_path, pod).await;
    })
}
