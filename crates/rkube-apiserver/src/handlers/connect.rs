//! Pod subresources the kubelet serves (`log`, `exec`, `attach`, `portforward`)
//! and node `proxy`: checked here as upstream's pod strategy does, then proxied to
//! the kubelet of the pod's node. Streams pass through untouched.

use axum::body::Body;
use http::{Method, Response, StatusCode};
use serde_json::Value;

use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::kubelet::{self, KubeletClient, KubeletEndpoint};
use crate::request::Verb;

fn client(ctx: &Ctx) -> ApiResult<&KubeletClient> {
    ctx.server
        .kubelet
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this API server has no kubelet client credentials"))
}

async fn object(
    ctx: &Ctx,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let served = ctx
        .server
        .registry
        .lookup("", "v1", resource)
        .ok_or_else(|| ApiError::internal(format!("no {resource} resource")))?;
    ctx.server
        .read_current(&served, namespace, name)
        .await?
        .map(|(v, _)| v)
        .ok_or_else(|| ApiError::not_found("", resource, name))
}

async fn endpoint(ctx: &Ctx, node: &str) -> ApiResult<KubeletEndpoint> {
    let node_obj = object(ctx, "nodes", None, node).await?;
    KubeletEndpoint::of_node(&node_obj).ok_or_else(|| {
        ApiError::bad_request(format!("node {node} has no address to reach its kubelet"))
    })
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request names, or the pod's only one (upstream's
/// `validateContainer`).
pub fn container_name(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let containers = names(pod, "containers");
    let all: Vec<String> = names(pod, "initContainers")
        .into_iter()
        .chain(containers.iter().cloned())
        .chain(names(pod, "ephemeralContainers"))
        .collect();
    match requested {
        Some(c) => {
            if all.iter().any(|n| n == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
    }
}

/// Whether the container has logs to show (the kubelet's
/// `validateContainerLogStatus`, read from the pod's status).
pub fn check_log_status(pod: &Value, container: &str, previous: bool) -> ApiResult<()> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|f| {
        pod.pointer(&format!("/status/{f}"))
            .and_then(Value::as_array)
    })
    .flatten()
    .find(|s| s["name"] == container);
    let Some(status) = status else {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        )));
    };
    let last_terminated = status
        .pointer("/lastState/terminated")
        .is_some_and(Value::is_object);
    if previous {
        if !last_terminated {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            )));
        }
        return Ok(());
    }
    let state = &status["state"];
    if state["running"].is_object() || state["terminated"].is_object() || last_terminated {
        return Ok(());
    }
    if let Some(waiting) = state["waiting"].as_object() {
        let reason = waiting.get("reason").and_then(Value::as_str).unwrap_or("");
        let why = match reason {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            r => r.to_string(),
        };
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        )));
    }
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {pod_name:?} is not available"
    )))
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// The pod, and the kubelet of its node (`None` before scheduling).
async fn pod_and_kubelet(ctx: &Ctx) -> ApiResult<(Value, Option<KubeletEndpoint>)> {
    let pod = object(ctx, "pods", ctx.namespace(), ctx.name()).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let endpoint = match node {
        Some(n) => Some(endpoint(ctx, &n).await?),
        None => None,
    };
    Ok((pod, endpoint))
}

fn non_negative(ctx: &Ctx, key: &str, min: i64) -> ApiResult<Option<String>> {
    let Some(v) = ctx.query.non_empty(key) else {
        return Ok(None);
    };
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(Some(n.to_string())),
        _ => Err(ApiError::bad_request(format!(
            "{key}: Invalid value: {v:?}: must be an integer of at least {min}"
        ))),
    }
}

/// `GET pods/<name>/log`: plain text, streamed while `follow=true`.
pub async fn log(ctx: Ctx) -> ApiResult<Response<Body>> {
    let mut params: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if ctx.query.flag(flag) {
            params.push((flag, "true".into()));
        }
    }
    for (key, min) in [("sinceSeconds", 1), ("tailLines", 0), ("limitBytes", 1)] {
        if let Some(v) = non_negative(&ctx, key, min)? {
            params.push((key, v));
        }
    }
    if let Some(t) = ctx.query.non_empty("sinceTime") {
        if ctx.query.non_empty("sinceSeconds").is_some() {
            return Err(ApiError::bad_request(
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        params.push(("sinceTime", t.to_string()));
    }
    if let Some(s) = ctx.query.non_empty("stream") {
        params.push(("stream", s.to_string()));
    }
    let (pod, kubelet) = pod_and_kubelet(&ctx).await?;
    let container = container_name(&pod, ctx.query.non_empty("container"))?;
    let Some(kubelet) = kubelet else {
        // Not scheduled yet: no logs, as upstream answers.
        return Ok(crate::output::respond(StatusCode::OK, "text/plain", ""));
    };
    check_log_status(&pod, &container, ctx.query.flag("previous"))?;
    let path = format!(
        "/containerLogs/{}/{}/{}{}",
        ctx.namespace().unwrap_or_default(),
        ctx.name(),
        container,
        query_string(&params)
    );
    kubelet::stream_get(client(&ctx)?, &kubelet, &path).await
}

/// A WebSocket upgrade is a GET, authorized as `get`; it also needs `create`,
/// which the SPDY POST needs anyway (upstream's
/// AuthorizePodWebsocketUpgradeCreatePermission, on by default since 1.30): `get
/// pods/exec` alone must not open a shell.
fn authorize_websocket_upgrade(ctx: &Ctx) -> ApiResult<()> {
    if ctx.req.verb != Verb::Get {
        return Ok(());
    }
    let mut create = ctx.req.clone();
    create.verb = Verb::Create;
    crate::authz::authorize(&ctx.server, &ctx.user, &create, &ctx.served)
}

/// `pods/<name>/exec` and `pods/<name>/attach` (GET with a WebSocket, POST with
/// SPDY).
pub async fn remote_command(ctx: Ctx) -> ApiResult<Response<Body>> {
    authorize_websocket_upgrade(&ctx)?;
    let sub = ctx.req.subresource.clone().unwrap_or_default();
    let (pod, kubelet) = pod_and_kubelet(&ctx).await?;
    let container = container_name(&pod, ctx.query.non_empty("container"))?;
    let mut params: Vec<(&str, String)> = Vec::new();
    let (stdin, stdout, stderr, tty) = (
        ctx.query.flag("stdin"),
        ctx.query.flag("stdout"),
        ctx.query.flag("stderr"),
        ctx.query.flag("tty"),
    );
    if !stdin && !stdout && !stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    for (k, on) in [
        ("stdin", stdin),
        ("stdout", stdout),
        ("stderr", stderr),
        ("tty", tty),
    ] {
        if on {
            params.push((k, "1".into()));
        }
    }
    if sub == "exec" {
        let command = ctx.query.all("command");
        if command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        params.extend(command.into_iter().map(|c| ("command", c.to_string())));
    }
    let Some(kubelet) = kubelet else {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            ctx.name()
        )));
    };
    let path = format!(
        "/{sub}/{}/{}/{}{}",
        ctx.namespace().unwrap_or_default(),
        ctx.name(),
        container,
        query_string(&params)
    );
    upgrade(ctx, &kubelet, &path).await
}

/// `pods/<name>/portforward`: the ports travel inside the streams.
pub async fn port_forward(ctx: Ctx) -> ApiResult<Response<Body>> {
    authorize_websocket_upgrade(&ctx)?;
    let (_pod, kubelet) = pod_and_kubelet(&ctx).await?;
    let Some(kubelet) = kubelet else {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            ctx.name()
        )));
    };
    let ports: Vec<(&str, String)> = ctx
        .query
        .all("ports")
        .into_iter()
        .map(|p| ("ports", p.to_string()))
        .collect();
    let path = format!(
        "/portForward/{}/{}{}",
        ctx.namespace().unwrap_or_default(),
        ctx.name(),
        query_string(&ports)
    );
    upgrade(ctx, &kubelet, &path).await
}

async fn upgrade(mut ctx: Ctx, kubelet: &KubeletEndpoint, path: &str) -> ApiResult<Response<Body>> {
    let method = if ctx.req.verb == Verb::Get {
        Method::GET
    } else {
        Method::POST
    };
    let on_upgrade = ctx.upgrade.take();
    kubelet::proxy_upgrade(
        client(&ctx)?,
        kubelet,
        method,
        path,
        &ctx.headers,
        on_upgrade,
    )
    .await
}

/// `nodes/<name>/proxy/<path>`: any request to the node's kubelet.
pub async fn node_proxy(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let kubelet = endpoint(&ctx, ctx.name()).await?;
    let method = match ctx.req.verb {
        Verb::Get => Method::GET,
        Verb::Create => Method::POST,
        Verb::Update => Method::PUT,
        Verb::Patch => Method::PATCH,
        Verb::Delete => Method::DELETE,
        _ => {
            return Err(ApiError::method_not_allowed(
                "unsupported method for node proxy",
            ));
        }
    };
    let pairs: Vec<(String, String)> = ctx.query.to_map().into_iter().collect();
    let params: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let path = format!("/{}{}", ctx.req.rest.join("/"), query_string(&params));
    kubelet::proxy(client(&ctx)?, &kubelet, method, &path, &ctx.headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(statuses: Value) -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"containerStatuses": statuses},
        })
    }

    #[test]
    fn container_is_chosen_as_upstream() {
        let p = pod(json!([]));
        assert_eq!(container_name(&p, Some("b")).unwrap(), "b");
        assert_eq!(container_name(&p, Some("init")).unwrap(), "init");
        assert_eq!(
            container_name(&p, Some("x")).unwrap_err().message,
            "container x is not valid for pod web"
        );
        assert_eq!(
            container_name(&p, None).unwrap_err().message,
            "a container name must be specified for pod web, choose one of: [init a b]"
        );
        let single = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container_name(&single, None).unwrap(), "only");
    }

    #[test]
    fn log_status_as_the_kubelet_checks_it() {
        let p = pod(json!([
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "b", "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}},
        ]));
        assert_eq!(
            check_log_status(&p, "a", false).unwrap_err().message,
            "container \"a\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            check_log_status(&p, "a", true).unwrap_err().message,
            "previous terminated container \"a\" in pod \"web\" not found"
        );
        assert!(check_log_status(&p, "b", false).is_ok());
        assert!(check_log_status(&p, "b", true).is_ok());
        assert_eq!(
            check_log_status(&p, "init", false).unwrap_err().message,
            "container \"init\" in pod \"web\" is not available"
        );
    }
}
