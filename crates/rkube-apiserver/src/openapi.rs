//! `/openapi/v2` and `/openapi/v3`: the API's schemas, for `kubectl explain`,
//! client-side apply and server-side field validation.

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};

use crate::error::{ApiError, ApiResult};
use crate::request::Query;
use crate::server::ApiServer;

pub fn serve(
    _server: &ApiServer,
    _headers: &HeaderMap,
    _path: &str,
    _query: &Query,
) -> ApiResult<Response<Body>> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    ))
}
