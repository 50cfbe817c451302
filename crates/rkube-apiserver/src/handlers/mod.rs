//! Resource request handlers: one module per group of verbs.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response, StatusCode};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::output::{self, Format};
use crate::registry::Served;
use crate::request::{Query, ResourceRequest, Verb};
use crate::server::ApiServer;
use crate::storage::WriteOptions;

mod connect;
mod read;
mod review;
mod subresource;
mod watch;
mod write;

/// Everything a handler needs about one request.
pub struct Ctx {
    pub server: Arc<ApiServer>,
    pub served: Arc<Served>,
    pub req: ResourceRequest,
    pub query: Query,
    pub user: UserInfo,
    pub headers: http::HeaderMap,
    pub format: Format,
    /// The connection's upgrade, for subresources that switch protocols.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Ctx {
    pub fn namespace(&self) -> Option<&str> {
        if self.served.info.namespaced() {
            self.req.namespace.as_deref()
        } else {
            None
        }
    }

    pub fn name(&self) -> &str {
        self.req.name.as_deref().unwrap_or_default()
    }

    pub fn write_options(&self) -> ApiResult<WriteOptions> {
        let dry_run = match self.query.all("dryRun").as_slice() {
            [] => false,
            v if v.iter().all(|x| *x == "All") => true,
            v => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value {v:?}: only 'All' is supported"
                )));
            }
        };
        let field_manager = self.query.non_empty("fieldManager").map(str::to_string);
        if let Some(m) = &field_manager
            && m.len() > 128
        {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: may not be more than 128 bytes",
            ));
        }
        // Without `?fieldManager=`, writes are recorded under a name taken from
        // the User-Agent (`kubectl/v1.33.1 ...` is `kubectl`; none is ""), as upstream.
        let field_manager = field_manager.unwrap_or_else(|| {
            let ua = self.headers.get(http::header::USER_AGENT);
            let ua = ua.and_then(|v| v.to_str().ok()).unwrap_or("");
            rkube_api::apply::manager_from_user_agent(ua)
        });
        Ok(WriteOptions {
            dry_run,
            field_manager: Some(field_manager),
            user: self.user.clone(),
            subresource: self.req.subresource.clone(),
            apply: false,
        })
    }

    pub fn respond(&self, status: StatusCode, obj: &serde_json::Value) -> Response<Body> {
        output::object_response(&self.served, status, obj, self.format)
    }

    /// Answers a write with the object it stored: as JSON, the bytes the watch
    /// cache keeps for that version (no second encoding); else as `respond`.
    /// Custom resources are encoded again, as they are answered in the version
    /// asked for; so is a dry run's object, which was never stored.
    pub fn respond_written(&self, status: StatusCode, obj: &serde_json::Value) -> Response<Body> {
        let dry_run = self.write_options().is_ok_and(|o| o.dry_run);
        if self.format == output::Format::Json && !self.served.is_custom() && !dry_run {
            let rv = rkube_api::meta::resource_version(obj).and_then(|rv| rv.parse().ok());
            let key = rkube_api::meta::name(obj)
                .map(|name| self.served.info.key(rkube_api::meta::namespace(obj), name));
            if let (Some(rv), Some(key)) = (rv, key)
                && let Some(json) = self.server.cache.written(&key, rv)
            {
                return output::respond(status, output::JSON, json);
            }
        }
        self.respond(status, obj)
    }

    /// A 404 for this request's object.
    pub fn not_found(&self) -> ApiError {
        ApiError::not_found(
            &self.served.info.group,
            &self.served.info.plural,
            self.name(),
        )
    }
}

fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Dispatches a resource request to its handler.
pub async fn resource(
    server: &Arc<ApiServer>,
    req: Request<Body>,
    r: ResourceRequest,
    query: Query,
    user: UserInfo,
) -> ApiResult<Response<Body>> {
    let served = server
        .registry
        .lookup(&r.group, &r.version, &r.resource)
        .ok_or_else(no_route)?;
    let namespaced = served.info.namespaced();
    // Namespaced objects are addressed under a namespace; only list and watch span all.
    if namespaced && r.namespace.is_none() && !matches!(r.verb, Verb::List | Verb::Watch) {
        return Err(no_route());
    }
    if !namespaced && r.namespace.is_some() && r.resource != "namespaces" {
        return Err(no_route());
    }
    if let Some(sub) = &r.subresource
        && served.info.subresource(sub).is_none()
    {
        return Err(no_route());
    }
    let format = output::negotiate(
        req.headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
        query.get("includeObject"),
    )?;
    crate::authz::authorize(server, &user, &r, &served)?;
    let (mut parts, body) = req.into_parts();
    let ctx = Ctx {
        server: server.clone(),
        served,
        req: r,
        query,
        user,
        headers: parts.headers,
        format,
        upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
    };
    if !ctx.served.info.stored {
        return review::handle(ctx, body).await;
    }
    if ctx.req.subresource.is_some() {
        return subresource::handle(ctx, body).await;
    }
    let verb_allowed = ctx.served.info.has_verb(ctx.req.verb.as_str());
    if !verb_allowed {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            ctx.req.verb.as_str()
        )));
    }
    match ctx.req.verb {
        Verb::Get => read::get(ctx).await,
        Verb::List => read::list(ctx).await,
        Verb::Watch => watch::watch(ctx).await,
        Verb::Create => write::create(ctx, body).await,
        Verb::Update => write::update(ctx, body).await,
        Verb::Patch => write::patch(ctx, body).await,
        Verb::Delete => write::delete(ctx, body).await,
        Verb::DeleteCollection => write::delete_collection(ctx, body).await,
    }
}
