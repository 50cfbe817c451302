//! GET and LIST, served from the watch cache (or the store for paged lists).

use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use rkube_api::selector::{FieldSelector, LabelSelector};
use serde_json::{Value, json};

use super::Ctx;
use crate::cache::CachedObject;
use crate::error::{ApiError, ApiResult};
use crate::output;
use crate::registry::Served;
use crate::server::ApiServer;

/// Waits until the cache can answer a read at a resourceVersion the request set
/// ("0": any state, at once).
pub async fn wait_for_rv(server: &ApiServer, rv: &str) -> ApiResult<()> {
    if rv != "0" {
        let rev: i64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        server.cache.wait_for(rev).await?;
    }
    Ok(())
}

/// A GET: as upstream, the latest state (no resourceVersion) is read from the
/// store itself, so that a cache running behind a busy store delays no one; a GET
/// at a resourceVersion is answered by the cache.
pub async fn get(ctx: Ctx) -> ApiResult<Response<Body>> {
    let key = ctx.served.info.key(ctx.namespace(), ctx.name());
    let value = match ctx.query.non_empty("resourceVersion") {
        None => {
            let kv = ctx
                .server
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ctx.not_found())?;
            crate::storage::decode_kv(&kv)?
        }
        Some(rv) => {
            wait_for_rv(&ctx.server, rv).await?;
            ctx.server
                .cache
                .get(&key)
                .ok_or_else(|| ctx.not_found())?
                .value()
        }
    };
    Ok(ctx.respond(StatusCode::OK, &converted(&ctx.served, value)))
}

/// Sets `apiVersion` to the served version (custom resources stored in another).
pub fn converted(served: &Served, mut v: Value) -> Value {
    if served.is_custom() {
        v["apiVersion"] = json!(served.info.api_version());
    }
    v
}

/// The selectors of a list or watch request.
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn from_query(ctx: &Ctx) -> ApiResult<Selectors> {
        let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.0))?;
        let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.0))?;
        let allowed = ctx.served.strategy.field_names();
        for r in &fields.requirements {
            let ok = r.field == "metadata.name"
                || (r.field == "metadata.namespace" && ctx.served.info.namespaced())
                || allowed.contains(&r.field.as_str());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, o: &CachedObject) -> bool {
        self.labels.matches_map(&o.labels) && self.fields.matches(|f| o.field(f))
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// A continue token: where a paged list stopped, and at which revision.
fn encode_continue(rv: i64, start: &str) -> String {
    let t = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

pub async fn list(ctx: Ctx) -> ApiResult<Response<Body>> {
    let sel = Selectors::from_query(&ctx)?;
    let limit = ctx
        .query
        .int("limit")
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let prefix = ctx.served.info.namespace_prefix(ctx.namespace());
    let custom = ctx.served.is_custom();
    if let Some(token) = ctx.query.non_empty("continue") {
        return list_from_store(&ctx, &sel, &prefix, limit, token).await;
    }
    let rv_param = ctx.query.get("resourceVersion");
    let exact = ctx.query.get("resourceVersionMatch") == Some("Exact");
    if exact && let Some(rv) = rv_param.and_then(|v| v.parse::<i64>().ok()) {
        return list_store_at(&ctx, &sel, &prefix, limit, rv, None).await;
    }
    // As upstream's watch cache: a list at resourceVersion "0" (any state, the
    // informers' initial list) is served whole from the cache, ignoring `limit`.
    // Its continue pages would otherwise be read from the store, each at a past
    // revision while the cluster keeps writing.
    let limit = if rv_param == Some("0") { None } else { limit };
    match rv_param.filter(|v| !v.is_empty()) {
        Some(rv) => wait_for_rv(&ctx.server, rv).await?,
        None => {
            // A consistent list: from the cache once it has caught up with the
            // store, else (as upstream) from the store.
            let rev = ctx.server.store.current_revision().await?;
            if ctx.server.cache.wait_for(rev).await.is_err() {
                return list_store_at(&ctx, &sel, &prefix, limit, rev, None).await;
            }
        }
    }
    let (objects, rev) = ctx.server.cache.list(&prefix);
    let mut page = Page::default();
    let mut remaining = 0i64;
    for o in objects.iter().filter(|o| sel.matches(o)) {
        if page.full(limit) {
            remaining += 1;
            continue;
        }
        page.push(item_json(&ctx.served, o, custom), &o.key);
    }
    let remaining = (page.more && sel.is_empty()).then_some(remaining);
    Ok(page.response(&ctx, rev, rev, remaining))
}

/// A page of a list as it is filled.
#[derive(Default)]
struct Page {
    items: Vec<Bytes>,
    last_key: Option<String>,
    /// Matching objects follow the page.
    more: bool,
}

impl Page {
    /// Whether the page holds `limit` items already (then the list continues).
    fn full(&mut self, limit: Option<usize>) -> bool {
        let full = limit.is_some_and(|l| self.items.len() >= l);
        self.more |= full;
        full
    }

    fn push(&mut self, item: Bytes, key: &str) {
        self.items.push(item);
        self.last_key = Some(key.to_string());
    }

    /// The list response; a continue token at `token_rv` when more follow.
    fn response(
        self,
        ctx: &Ctx,
        token_rv: i64,
        list_rv: i64,
        remaining: Option<i64>,
    ) -> Response<Body> {
        let cont = if self.more {
            self.last_key.map(|k| encode_continue(token_rv, &k))
        } else {
            None
        };
        let meta = output::list_meta(list_rv, cont, remaining);
        output::list_response(&ctx.served, &self.items, meta, ctx.format)
    }
}

fn item_json(served: &Arc<Served>, o: &CachedObject, custom: bool) -> Bytes {
    if custom {
        let v = converted(served, o.value());
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    } else {
        o.json.clone()
    }
}

async fn list_from_store(
    ctx: &Ctx,
    sel: &Selectors,
    prefix: &str,
    limit: Option<usize>,
    token: &str,
) -> ApiResult<Response<Body>> {
    let (rv, start) = decode_continue(token)?;
    if !start.starts_with(prefix) {
        return Err(ApiError::bad_request(
            "continue key is not valid: the continue token does not belong to this list",
        ));
    }
    if let Some(page) = list_from_cache_at(ctx, sel, prefix, limit, rv, &start) {
        return Ok(page);
    }
    list_store_at(ctx, sel, prefix, limit, rv, Some(start)).await
}

/// A continued page served from the watch cache, rolled back to the list's revision,
/// while the cache's ring still reaches back to it (an informer's initial list of
/// thousands of objects would otherwise read a past revision from the store for
/// every page).
fn list_from_cache_at(
    ctx: &Ctx,
    sel: &Selectors,
    prefix: &str,
    limit: Option<usize>,
    rv: i64,
    start: &str,
) -> Option<Response<Body>> {
    let custom = ctx.served.is_custom();
    let mut page = Page::default();
    let served = ctx.server.cache.visit_at(prefix, start, rv, |o| {
        if !sel.matches(o) {
            return true;
        }
        if page.full(limit) {
            return false;
        }
        page.push(item_json(&ctx.served, o, custom), &o.key);
        true
    });
    served.then(|| page.response(ctx, rv, rv, None))
}

/// A (paged) list read from the store at a revision.
async fn list_store_at(
    ctx: &Ctx,
    sel: &Selectors,
    prefix: &str,
    limit: Option<usize>,
    rv: i64,
    start: Option<String>,
) -> ApiResult<Response<Body>> {
    let mut page = Page::default();
    let mut revision = rv;
    // Read the store a chunk at a time, so that a page costs its own size rather
    // than everything after it.
    let chunk = limit.map(|l| (l + 1).max(STORE_CHUNK));
    let mut after = start;
    loop {
        let opts = rkube_store::ListOptions {
            revision: Some(rv),
            limit: chunk,
            start_after: after.clone(),
        };
        let result = ctx.server.store.list(prefix, opts).await.map_err(|e| match e {
            rkube_store::StoreError::Compacted { .. } => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            other => other.into(),
        })?;
        revision = revision.max(result.revision);
        if page_from_store(ctx, sel, limit, &result.kvs, &mut page)? {
            break;
        }
        if !result.more {
            break;
        }
        after = result.kvs.last().map(|kv| kv.key.clone());
    }
    Ok(page.response(ctx, rv, revision, None))
}

/// Keys read from the store per request of a paged list.
const STORE_CHUNK: usize = 256;

/// Adds the stored objects that match the selectors to a page; `true` once one
/// more matches than the page holds (the list continues).
fn page_from_store(
    ctx: &Ctx,
    sel: &Selectors,
    limit: Option<usize>,
    kvs: &[rkube_store::KeyValue],
    page: &mut Page,
) -> ApiResult<bool> {
    for kv in kvs {
        let mut v = crate::storage::decode_kv(kv)?;
        let served = &ctx.served;
        let fields = served.strategy.fields(&v);
        let labels = rkube_api::meta::labels(&v)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| (k.clone(), x.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let probe = CachedObject {
            key: kv.key.clone(),
            rv: kv.mod_revision,
            name: rkube_api::meta::name(&v).unwrap_or_default().to_string(),
            namespace: rkube_api::meta::namespace(&v).map(str::to_string),
            labels,
            fields,
            json: Bytes::new(),
        };
        if !sel.matches(&probe) {
            continue;
        }
        if page.full(limit) {
            return Ok(true);
        }
        v = converted(served, v);
        page.push(
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            &kv.key,
        );
    }
    Ok(false)
}
