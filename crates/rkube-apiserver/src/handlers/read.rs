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

/// Waits until the cache can answer a read at the requested resourceVersion.
pub async fn wait_for_rv(server: &ApiServer, rv: Option<&str>) -> ApiResult<()> {
    match rv {
        None | Some("") => {
            server.cache.wait_fresh().await?;
        }
        Some("0") => {}
        Some(v) => {
            let rev: i64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
            server.cache.wait_for(rev).await?;
        }
    }
    Ok(())
}

pub async fn get(ctx: Ctx) -> ApiResult<Response<Body>> {
    wait_for_rv(&ctx.server, ctx.query.get("resourceVersion")).await?;
    let key = ctx.served.info.key(ctx.namespace(), ctx.name());
    let obj = ctx.server.cache.get(&key).ok_or_else(|| ctx.not_found())?;
    let value = converted(&ctx.served, obj.value());
    Ok(ctx.respond(StatusCode::OK, &value))
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
    wait_for_rv(&ctx.server, rv_param).await?;
    let (objects, rev) = ctx.server.cache.list(&prefix);
    let mut items: Vec<Bytes> = Vec::new();
    let mut last_key = None;
    let mut more = false;
    let mut remaining = 0i64;
    for o in objects.iter().filter(|o| sel.matches(o)) {
        if let Some(l) = limit
            && items.len() >= l
        {
            more = true;
            remaining += 1;
            continue;
        }
        items.push(item_json(&ctx.served, o, custom));
        last_key = Some(o.key.clone());
    }
    let cont = if more {
        last_key.map(|k| encode_continue(rev, &k))
    } else {
        None
    };
    let remaining = (more && sel.is_empty()).then_some(remaining);
    let meta = output::list_meta(rev, cont, remaining);
    Ok(output::list_response(&ctx.served, &items, meta, ctx.format))
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
    list_store_at(ctx, sel, prefix, limit, rv, Some(start)).await
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
    let opts = rkube_store::ListOptions {
        revision: Some(rv),
        limit: None,
        start_after: start,
    };
    let result = ctx.server.store.list(prefix, opts).await.map_err(|e| match e {
        rkube_store::StoreError::Compacted { .. } => ApiError::gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ),
        other => other.into(),
    })?;
    let mut items = Vec::new();
    let mut last_key = None;
    let mut more = false;
    for kv in &result.kvs {
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
        if let Some(l) = limit
            && items.len() >= l
        {
            more = true;
            break;
        }
        v = converted(served, v);
        items.push(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
        last_key = Some(kv.key.clone());
    }
    let cont = if more {
        last_key.map(|k| encode_continue(rv, &k))
    } else {
        None
    };
    let meta = output::list_meta(result.revision.max(rv), cont, None);
    Ok(output::list_response(&ctx.served, &items, meta, ctx.format))
}
