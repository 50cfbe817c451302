//! POST, PUT, PATCH, DELETE and DELETE of a collection.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};
use rkube_api::meta;
use serde_json::{Value, json};

use super::Ctx;
use super::read::Selectors;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::output;
use crate::patching::PatchBody;
use crate::registry::Served;
use crate::storage::{DeleteOptions, Deleted, Part};
use rkube_api::patch::PatchType;

/// Decodes an object body, checks it is of the resource's kind and its fields;
/// returns the object and the warnings to send.
pub fn decode_object(ctx: &Ctx, bytes: &[u8]) -> ApiResult<(Value, Vec<String>)> {
    let ct = body::content_type(&ctx.headers);
    let mut obj = body::decode_object_of(&ctx.served.info.kind, &ct, bytes)?;
    check_kind(&ctx.served, &obj)?;
    let warnings = crate::validation::check_fields(ctx, &mut obj, bytes)?;
    Ok((obj, warnings))
}

/// Refuses an object of another kind than the resource's.
pub fn check_kind(served: &Served, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): the body is not an object",
            served.info.kind
        )));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, _) = rkube_api::resource::split_api_version(api_version);
    if (!kind.is_empty() && kind != served.info.kind)
        || (!api_version.is_empty() && group != served.info.group)
    {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): {kind} in version {api_version:?} cannot be handled as a {}",
            served.info.kind, served.info.kind
        )));
    }
    Ok(())
}

pub fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        // The text is an RFC 9110 quoted-string: quotes and backslashes escaped.
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

pub async fn create(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let (obj, mut warnings) = decode_object(&ctx, &bytes)?;
    let opts = ctx.write_options()?;
    warnings.extend(ctx.served.strategy.warnings(&obj));
    let created = ctx
        .server
        .create_object(&ctx.served, ctx.namespace(), obj, &opts)
        .await?;
    after_write(&ctx, &created);
    let created = super::read::converted(&ctx.served, created);
    Ok(with_warnings(
        ctx.respond_written(StatusCode::CREATED, &created),
        &warnings,
    ))
}

/// Keeps server-side state derived from objects current right after a write.
fn after_write(ctx: &Ctx, _obj: &Value) {
    if ctx.served.info.group == "apiextensions.k8s.io" {
        // Serve (or stop serving) a custom resource as soon as its CRD is written.
        let server = ctx.server.clone();
        tokio::spawn(async move {
            if server.cache.wait_fresh().await.is_ok() {
                crate::crd::sync_registry(&server);
            }
        });
    }
}

pub async fn update(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let (obj, warnings) = decode_object(&ctx, &bytes)?;
    let opts = ctx.write_options()?;
    let name = ctx.name().to_string();
    let (updated, created) = ctx
        .server
        .update_object(
            &ctx.served,
            ctx.namespace(),
            &name,
            Part::Main,
            &opts,
            |_| Ok(obj.clone()),
        )
        .await?;
    after_write(&ctx, &updated);
    let updated = super::read::converted(&ctx.served, updated);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_warnings(
        ctx.respond_written(status, &updated),
        &warnings,
    ))
}

/// Reads a PATCH body.
pub async fn patch_body(ctx: &Ctx, body: Body) -> ApiResult<PatchBody> {
    let ct = body::content_type(&ctx.headers);
    let bytes = body::read(body).await?;
    PatchBody::parse(&ct, bytes)
}

/// Applies a patch to a subresource-aware part of an object, with field checks.
pub async fn patch_object(
    ctx: &Ctx,
    body: &PatchBody,
    part: Part,
) -> ApiResult<(Value, bool, Vec<String>)> {
    let mut opts = ctx.write_options()?;
    let mode = crate::validation::mode(ctx)?;
    let name = ctx.name().to_string();
    let apply = body.ty == PatchType::Apply;
    let force = ctx.query.flag("force");
    opts.apply = apply;
    if apply {
        check_kind(&ctx.served, &body.value)?;
        if ctx.query.non_empty("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
    } else if force {
        return Err(ApiError::bad_request(
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let mut warnings = if body.ty == PatchType::Json {
        Vec::new()
    } else {
        crate::validation::check_patch_body(&ctx.served, &body.raw, mode)?
    };
    // Unknown fields of an applied configuration are dropped (or refused) before
    // the apply, so that nobody comes to own them.
    let checked_config;
    let body = if apply {
        let (config, w) =
            crate::validation::check_patched(&ctx.served, body.value.clone(), None, mode)?;
        warnings.extend(w);
        checked_config = PatchBody {
            ty: body.ty,
            raw: body.raw.clone(),
            value: config,
        };
        &checked_config
    } else {
        body
    };
    let served = ctx.served.clone();
    let mut patch_warnings = Vec::new();
    let result = ctx
        .server
        .update_object(&served, ctx.namespace(), &name, part, &opts, |cur| {
            let patched = crate::patching::apply_patch(&served, body, cur, &name, &opts, force)?;
            let (mut checked, w) = crate::validation::check_patched(&served, patched, cur, mode)?;
            if let (Some(sub), Some(cur)) = (&ctx.req.subresource, cur) {
                served
                    .strategy
                    .prepare_for_subresource_update(sub, &mut checked, cur);
            }
            patch_warnings = w;
            Ok(checked)
        })
        .await;
    let (obj, created) = match result {
        Ok(r) => r,
        // Apply creates what does not exist yet.
        Err(e) if apply && part == Part::Main && e.code == StatusCode::NOT_FOUND => {
            let obj = crate::patching::apply_patch(&served, body, None, &name, &opts, force)?;
            let (mut obj, w) = crate::validation::check_patched(&served, obj, None, mode)?;
            patch_warnings = w;
            meta::set_meta_str(&mut obj, "name", name.as_str());
            let created = ctx
                .server
                .create_object(&served, ctx.namespace(), obj, &opts)
                .await?;
            (created, true)
        }
        Err(e) => return Err(e),
    };
    warnings.extend(patch_warnings);
    Ok((obj, created, warnings))
}

pub async fn patch(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let body = patch_body(&ctx, body).await?;
    let (obj, created, warnings) = patch_object(&ctx, &body, Part::Main).await?;
    after_write(&ctx, &obj);
    let obj = super::read::converted(&ctx.served, obj);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_warnings(ctx.respond_written(status, &obj), &warnings))
}

/// DeleteOptions from the body (if any) and the query string.
pub async fn delete_options(ctx: &Ctx, body: Body) -> ApiResult<DeleteOptions> {
    let bytes = body::read(body).await?;
    let mut opts = if bytes.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let ct = body::content_type(&ctx.headers);
        let v = body::decode_object(&ct, &bytes)?;
        DeleteOptions::from_json(&v)
    };
    if let Some(g) = ctx.query.int("gracePeriodSeconds") {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = ctx.query.non_empty("propagationPolicy") {
        opts.propagation_policy = Some(p.to_string());
    }
    if ctx.query.all("dryRun").contains(&"All") {
        opts.dry_run = true;
    }
    if let Some(p) = &opts.propagation_policy
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &[crate::error::FieldError::not_supported(
                "propagationPolicy",
                p.as_str(),
                &["Foreground", "Background", "Orphan"],
            )],
        ));
    }
    Ok(opts)
}

pub async fn delete(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let opts = delete_options(&ctx, body).await?;
    let name = ctx.name().to_string();
    match ctx
        .server
        .delete_object(&ctx.served, ctx.namespace(), &name, &opts)
        .await?
    {
        Deleted::Gone(obj) => {
            after_write(&ctx, &obj);
            Ok(ctx.respond(StatusCode::OK, &super::read::converted(&ctx.served, obj)))
        }
        Deleted::Pending(obj) => {
            after_write(&ctx, &obj);
            let status = if opts.dry_run {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(ctx.respond(status, &super::read::converted(&ctx.served, obj)))
        }
    }
}

pub async fn delete_collection(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let opts = delete_options(&ctx, body).await?;
    let sel = Selectors::from_query(&ctx)?;
    ctx.server.cache.wait_fresh().await?;
    let prefix = ctx.served.info.namespace_prefix(ctx.namespace());
    let (objects, rev) = ctx.server.cache.list(&prefix);
    let mut deleted = Vec::new();
    let served: Arc<Served> = ctx.served.clone();
    for o in objects.iter().filter(|o| sel.matches(o)) {
        let ns = o.namespace.clone();
        match ctx
            .server
            .delete_object(&served, ns.as_deref(), &o.name, &opts)
            .await
        {
            Ok(Deleted::Gone(v)) | Ok(Deleted::Pending(v)) => deleted.push(v),
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": served.info.list_kind(),
        "apiVersion": served.info.api_version(),
        "metadata": {"resourceVersion": rev.to_string()},
        "items": deleted,
    });
    Ok(output::json_response(StatusCode::OK, &list))
}
