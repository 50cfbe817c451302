//! Virtual resources that are created but never stored: reviews and bindings.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Ctx;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::output;
use crate::request::Verb;

pub async fn handle(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    if ctx.req.verb != Verb::Create {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            ctx.req.verb.as_str()
        )));
    }
    if ctx.served.info.plural == "bindings" {
        return super::subresource::binding(ctx, body).await;
    }
    let bytes = body::read(body).await?;
    let ct = body::content_type(&ctx.headers);
    let mut obj = body::decode_object_of(&ctx.served.info.kind, &ct, &bytes)?;
    super::write::check_kind(&ctx.served, &obj)?;
    obj["apiVersion"] = json!(ctx.served.info.api_version());
    obj["kind"] = json!(ctx.served.info.kind);
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let status = match ctx.served.info.plural.as_str() {
        "selfsubjectreviews" => json!({"userInfo": ctx.user.to_json()}),
        "tokenreviews" => {
            let token = obj
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("");
            match ctx.server.tokens.authenticate(token) {
                Some(u) => {
                    json!({"authenticated": true, "user": u.to_json(), "audiences": ["https://kubernetes.default.svc.cluster.local"]})
                }
                None => {
                    json!({"authenticated": false, "user": {}, "error": "invalid bearer token"})
                }
            }
        }
        "subjectaccessreviews" | "selfsubjectaccessreviews" | "localsubjectaccessreviews" => {
            crate::authz::review(&ctx, &mut obj)?
        }
        "selfsubjectrulesreviews" => crate::authz::rules_review(&ctx, &obj)?,
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "{other} cannot be created"
            )));
        }
    };
    obj["status"] = status;
    Ok(output::json_response(StatusCode::CREATED, &obj))
}
