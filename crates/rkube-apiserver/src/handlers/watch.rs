//! WATCH: a chunked stream of newline-delimited events from the watch cache.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::Ctx;
use super::read::Selectors;
use crate::cache::{CacheEvent, CachedObject, EventType};
use crate::error::{ApiError, ApiResult};
use crate::output::{self, Format};
use crate::registry::Served;

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// Which event, if any, a watcher with these selectors sees for a change.
fn decide(ev: &CacheEvent, sel: &Selectors) -> Option<EventType> {
    let now = sel.matches(&ev.obj);
    let before = ev.prev.as_ref().map(|p| sel.matches(p));
    match ev.kind {
        EventType::Added => now.then_some(EventType::Added),
        EventType::Modified => match (before.unwrap_or(false), now) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
        EventType::Deleted => (before.unwrap_or(now)).then_some(EventType::Deleted),
    }
}

/// The object's JSON as this watcher must see it (custom resources carry the served
/// version).
fn object_json(served: &Served, o: &CachedObject) -> Bytes {
    if served.is_custom() {
        let v = super::read::converted(served, o.value());
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    } else {
        o.json.clone()
    }
}

/// A watch response holding a single ERROR event.
fn error_event_stream(e: &ApiError, format: Format) -> Response<Body> {
    let mut line = serde_json::to_vec(&serde_json::json!({"type": "ERROR", "object": e.status()}))
        .unwrap_or_default();
    line.push(b'\n');
    let mut resp = Response::new(Body::from(line));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(output::watch_content_type(format)),
    );
    resp
}

pub async fn watch(ctx: Ctx) -> ApiResult<Response<Body>> {
    let sel = Selectors::from_query(&ctx)?;
    // A watch of one object by name (`/pods/web?watch=1`) selects it by name.
    let mut sel = sel;
    if let Some(name) = &ctx.req.name {
        sel.fields
            .requirements
            .push(rkube_api::selector::FieldRequirement {
                field: "metadata.name".into(),
                value: name.clone(),
                equal: true,
            });
    }
    let prefix = ctx.served.info.namespace_prefix(ctx.namespace());
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    let send_initial = ctx.query.flag("sendInitialEvents");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = match ctx.query.int("timeoutSeconds") {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => {
            use rand::Rng;
            Duration::from_secs(1800 + rand::rng().random_range(0..1800))
        }
    };
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[crate::error::FieldError::forbidden(
                "allowWatchBookmarks",
                "allowWatchBookmarks must be set to true when sendInitialEvents is true",
            )],
        ));
    }
    let server = ctx.server.clone();
    // The initial state for unset/"0" resourceVersions, or when asked explicitly.
    let (initial, sub) = if rv.is_empty() || rv == "0" || send_initial {
        if rv.is_empty() {
            server.cache.wait_fresh().await?;
        } else if rv != "0" {
            super::read::wait_for_rv(&server, rv).await?;
        }
        let (objs, sub) = server.cache.snapshot_and_subscribe(&prefix);
        let objs: Vec<Arc<CachedObject>> = objs.into_iter().filter(|o| sel.matches(o)).collect();
        (objs, sub)
    } else {
        let after: i64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        if after > server.cache.revision() {
            server.cache.wait_for(after).await?;
        }
        match server.cache.subscribe(&prefix, Some(after)) {
            Ok(sub) => (Vec::new(), sub),
            // As upstream: a 200 whose only event is an ERROR carrying the 410.
            Err(e) => return Ok(error_event_stream(&e, ctx.format)),
        }
    };
    let served = ctx.served.clone();
    let format = match ctx.format {
        Format::Yaml => Format::Json,
        Format::Protobuf => {
            return Err(ApiError::not_acceptable(
                "watch streams are served as application/json only",
            ));
        }
        f => f,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let cache = server.cache.clone();
    tokio::spawn(async move {
        let mut first = true;
        let mut last_rv = sub.revision;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for o in &initial {
            let line =
                output::watch_line(&served, "ADDED", &object_json(&served, o), format, first);
            first = false;
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if send_initial
            && tx
                .send(Ok(output::bookmark_line(&served, sub.revision, true)))
                .await
                .is_err()
        {
            return;
        }
        // Events the watcher missed (a resumed watch, or one that fell behind its
        // live feed) come from the ring, then live events.
        let mut backlog = sub.backlog;
        let mut live = sub.live;
        // The line for a change, if this watch shows it; moves past it either way.
        let next_line = |ev: &CacheEvent, last_rv: &mut i64, first: &mut bool| {
            if ev.revision() <= *last_rv {
                return None;
            }
            *last_rv = ev.revision();
            if !ev.obj.key.starts_with(&prefix) {
                return None;
            }
            let kind = decide(ev, &sel)?;
            let make = || {
                output::watch_line(
                    &served,
                    kind.as_str(),
                    &object_json(&served, &ev.obj),
                    format,
                    *first,
                )
            };
            // A plain JSON line is the same for every watcher that shows the change
            // as `kind`: made once.
            let line = if format == Format::Json && !served.is_custom() {
                cache.lines.get_or_make(ev.revision(), kind, make)
            } else {
                make()
            };
            *first = false;
            Some(line)
        };
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        loop {
            for ev in backlog.drain(..) {
                if let Some(line) = next_line(&ev, &mut last_rv, &mut first)
                    && tx.send(Ok(line)).await.is_err()
                {
                    return;
                }
            }
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    // Everything of this resource up to the cache's revision has been
                    // seen when the feed is drained: a quiet resource's watch moves on.
                    last_rv = cache.progress(&live).unwrap_or(last_rv).max(last_rv);
                    if tx.send(Ok(output::bookmark_line(&served, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                ev = live.recv() => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        // Behind the live feed: catch up from the ring if it still
                        // holds what was missed, else end the stream (the client
                        // resumes from the last resourceVersion it saw).
                        Err(RecvError::Lagged(_)) => match cache.subscribe(&prefix, Some(last_rv)) {
                            Ok(s) => {
                                backlog = s.backlog;
                                live = s.live;
                                continue;
                            }
                            Err(_) => return,
                        },
                        // The cache restarted.
                        Err(RecvError::Closed) => return,
                    };
                    if let Some(line) = next_line(&ev, &mut last_rv, &mut first)
                        && tx.send(Ok(line)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(output::watch_content_type(format)),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
