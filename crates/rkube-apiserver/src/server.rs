//! The API server: its state, and the dispatch of every request.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Body;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use rkube_api::cidr::Ipv4Cidr;
use rkube_store::Store;
use serde_json::{Value, json};

use crate::auth::{TokenAuthenticator, UserInfo};
use crate::cache::{Cache, FieldsFn};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::output::{self, error_response};
use crate::registry::Registry;
use crate::request::{self, Query, Route};

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct Config {
    pub service_cidr: Ipv4Cidr,
    pub node_port_range: (u16, u16),
    /// The address clients reach the API at (`host:port`), for discovery.
    pub advertise_address: String,
    /// Recent changes always kept for watches resuming from an older resourceVersion.
    pub watch_cache_events: usize,
    /// Beyond `watch_cache_events`, changes younger than this are kept too (up to
    /// 100 Ki changes), as upstream's watch cache keeps 75 s of history.
    pub watch_cache_window: std::time::Duration,
    /// Where the ServiceAccount token signing key lives (`None`: a key for this
    /// process only, as tests want).
    pub service_account_key_dir: Option<std::path::PathBuf>,
    /// Credentials towards kubelets (logs, exec, attach, port-forward, node proxy).
    pub kubelet_client: Option<crate::kubelet::KubeletClientConfig>,
    /// Authorizers asked in order (`--authorization-mode`); the first to allow wins.
    pub authorization_modes: Vec<crate::authz::Mode>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_cidr: "10.43.0.0/16".parse().expect("valid default CIDR"),
            node_port_range: (30000, 32767),
            advertise_address: "127.0.0.1:6443".into(),
            watch_cache_events: 10_000,
            watch_cache_window: std::time::Duration::from_secs(75),
            service_account_key_dir: None,
            kubelet_client: None,
            authorization_modes: vec![crate::authz::Mode::Rbac],
        }
    }
}

impl Config {
    /// The ClusterIP of the `kubernetes` Service: the first address of the range.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_cidr.nth(1)
    }
}

/// The Kubernetes version rkube reports.
pub const KUBE_VERSION: &str = "v1.33.0";

/// The API server's shared state.
pub struct ApiServer {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub tokens: TokenAuthenticator,
    pub openapi: crate::openapi::DocCache,
    /// Signs and checks ServiceAccount tokens.
    pub token_signer: Option<crate::serviceaccount::TokenSigner>,
    /// Client for kubelets, when credentials were configured.
    pub kubelet: Option<crate::kubelet::KubeletClient>,
    pub started: Instant,
    ready: AtomicBool,
}

/// The identity of a request, put in its extensions by whoever authenticated it
/// (the TLS acceptor from a client certificate, or an in-process client).
#[derive(Clone, Debug)]
pub struct Identity(pub UserInfo);

impl ApiServer {
    /// Starts the server's state over a store: loads the cache, registers custom
    /// resources, repairs allocations and creates the objects every cluster has.
    pub async fn new(config: Config, store: Arc<dyn Store>) -> ApiResult<Arc<ApiServer>> {
        let registry = Arc::new(Registry::new());
        let reg = registry.clone();
        let fields: FieldsFn = Arc::new(move |key: &str, value: &Value| {
            reg.for_key(key)
                .map(|s| s.strategy.fields(value))
                .unwrap_or_default()
        });
        let ring = crate::cache::RingLimits {
            events: config.watch_cache_events,
            window: config.watch_cache_window,
            max_events: 100 * 1024,
        };
        let cache = Cache::start(store.clone(), fields, ring).await?;
        let token_signer = match &config.service_account_key_dir {
            Some(dir) => crate::serviceaccount::TokenSigner::load_or_create(dir),
            None => crate::serviceaccount::TokenSigner::ephemeral(),
        }
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let kubelet = match &config.kubelet_client {
            Some(c) => Some(crate::kubelet::KubeletClient::new(c).map_err(ApiError::internal)?),
            None => None,
        };
        let server = Arc::new(ApiServer {
            config,
            store,
            cache,
            registry,
            metrics: Metrics::default(),
            tokens: TokenAuthenticator::default(),
            openapi: Default::default(),
            token_signer: Some(token_signer),
            kubelet,
            started: Instant::now(),
            ready: AtomicBool::new(false),
        });
        crate::crd::sync_registry(&server);
        crate::crd::spawn_watcher(&server);
        crate::admission::repair_allocations(&server).await?;
        crate::bootstrap::ensure_defaults(&server).await?;
        server.ready.store(true, Ordering::SeqCst);
        Ok(server)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Answers one request. Never fails: errors become `Status` responses.
    pub async fn handle(self: &Arc<Self>, mut req: Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let user = match self.authenticate(&req) {
            Some(u) => u,
            None => return error_response(&ApiError::unauthorized()),
        };
        let user = match crate::impersonation::impersonate(self, user, req.headers_mut()) {
            Ok(u) => u,
            Err(e) => return error_response(&e),
        };
        let path = req.uri().path().to_string();
        let query = Query::parse(req.uri().query());
        let watch = query.flag("watch");
        let route = request::route(&method, &path, watch);
        let (verb, resource) = match &route {
            Route::Resource(r) => (r.verb.as_str(), r.resource.clone()),
            _ => (method.as_str(), String::new()),
        };
        let resp = match self.dispatch(req, route, query, user).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        self.metrics
            .observe_request(verb, &resource, resp.status().as_u16(), started.elapsed());
        resp
    }

    /// The user of a bearer token: a static or bootstrap token, else a
    /// ServiceAccount token (requests and TokenReviews alike).
    pub fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        self.tokens
            .authenticate(token)
            .or_else(|| crate::serviceaccount::authenticate(self, token))
    }

    fn authenticate(&self, req: &Request<Body>) -> Option<UserInfo> {
        if let Some(auth) = req.headers().get(http::header::AUTHORIZATION)
            && let Ok(v) = auth.to_str()
            && let Some(token) = v.strip_prefix("Bearer ").map(str::trim)
        {
            return self.authenticate_token(token);
        }
        if let Some(Identity(u)) = req.extensions().get::<Identity>() {
            return Some(u.clone());
        }
        Some(UserInfo::anonymous())
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Body>,
        route: Route,
        query: Query,
        user: UserInfo,
    ) -> ApiResult<Response<Body>> {
        match route {
            Route::NonResource(path) => self.non_resource(req.headers(), &path, &query).await,
            Route::CoreVersions => Ok(crate::discovery::core_versions(self, req.headers())),
            Route::Groups => Ok(crate::discovery::groups(self, req.headers())),
            Route::Group { group } => crate::discovery::group(self, &group),
            Route::GroupVersion { group, version } => {
                crate::discovery::group_version(self, &group, &version)
            }
            Route::Resource(r) => crate::handlers::resource(self, req, r, query, user).await,
        }
    }

    async fn non_resource(
        &self,
        headers: &http::HeaderMap,
        path: &str,
        query: &Query,
    ) -> ApiResult<Response<Body>> {
        let path = path.trim_end_matches('/');
        if path.starts_with("/healthz") || path.starts_with("/livez") || path.starts_with("/readyz")
        {
            return Ok(self.health(path, query));
        }
        match path {
            "/version" => Ok(output::json_response(StatusCode::OK, &version_info())),
            "/metrics" => Ok(output::respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(self),
            )),
            p if p.starts_with("/openapi/") => crate::openapi::serve(self, headers, p, query),
            "" => {
                let mut paths: Vec<String> = vec!["/api".into(), "/api/v1".into(), "/apis".into()];
                for s in self.registry.all() {
                    paths.push(format!("/apis/{}", s.info.group));
                    paths.push(format!("/apis/{}/{}", s.info.group, s.info.version));
                }
                paths.retain(|p| p != "/apis/" && !p.starts_with("/apis//"));
                paths.extend(
                    [
                        "/healthz",
                        "/livez",
                        "/metrics",
                        "/openapi/v2",
                        "/openapi/v3",
                        "/readyz",
                        "/version",
                    ]
                    .map(String::from),
                );
                paths.sort();
                paths.dedup();
                Ok(output::json_response(
                    StatusCode::OK,
                    &json!({"paths": paths}),
                ))
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )),
        }
    }

    fn health(&self, path: &str, query: &Query) -> Response<Body> {
        let ok = !path.starts_with("/readyz") || self.is_ready();
        let body = if query.get("verbose").is_some() {
            let name = path.trim_start_matches('/');
            let checks = [
                "ping",
                "log",
                "etcd",
                "informer-sync",
                "poststarthook/bootstrap",
            ];
            let mut s = String::new();
            for c in checks {
                s.push_str(&format!("[+]{c} ok\n"));
            }
            s.push_str(&format!(
                "{name} check {}\n",
                if ok { "passed" } else { "failed" }
            ));
            s
        } else if ok {
            "ok".to_string()
        } else {
            "not ready".to_string()
        };
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        output::respond(status, "text/plain; charset=utf-8", body)
    }

    /// A tower service that answers requests in-process, as `user`: what the
    /// controllers, scheduler and kubelet inside `rkube server` use via `kube::Client`.
    pub fn local_service(self: &Arc<Self>, user: UserInfo) -> LocalService {
        LocalService {
            server: self.clone(),
            user: user.authenticated(),
            user_agent: None,
        }
    }
}

/// `/version`.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": KUBE_VERSION,
        "gitCommit": "rkube",
        "gitTreeState": "clean",
        "buildDate": "2026-11-01T00:00:00Z",
        "goVersion": concat!("rust", env!("CARGO_PKG_VERSION")),
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// An in-process client connection to the API server (see `local_service`).
#[derive(Clone)]
pub struct LocalService {
    server: Arc<ApiServer>,
    user: UserInfo,
    user_agent: Option<http::HeaderValue>,
}

impl LocalService {
    /// Names the in-process component in requests that carry no User-Agent, so
    /// that its writes are tracked in managedFields under that component's name
    /// (as upstream's `kube-controller-manager/v1.33.0 (linux/amd64)`).
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = http::HeaderValue::from_str(user_agent).ok();
        self
    }
}

impl<B> tower::Service<Request<B>> for LocalService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        futures::future::BoxFuture<'static, Result<Response<Body>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let server = self.server.clone();
        let user = self.user.clone();
        let user_agent = self.user_agent.clone();
        Box::pin(async move {
            let mut req = req.map(Body::new);
            req.headers_mut().remove(http::header::AUTHORIZATION);
            if let Some(agent) = user_agent {
                req.headers_mut()
                    .entry(http::header::USER_AGENT)
                    .or_insert(agent);
            }
            req.extensions_mut().insert(Identity(user));
            Ok(server.handle(req).await)
        })
    }
}

/// Collects a streaming body (tests and internal callers).
pub async fn body_bytes(body: Body) -> bytes::Bytes {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
    }
    bytes::Bytes::from(out)
}
