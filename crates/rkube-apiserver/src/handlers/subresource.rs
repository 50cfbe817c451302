//! Subresources: status, scale, pods/binding, pods/eviction, namespaces/finalize,
//! certificatesigningrequests/approval; the kubelet's ones (pods/log, exec,
//! attach, portforward, nodes/proxy) are in `connect`.

use axum::body::Body;
use http::{Response, StatusCode};
use rkube_api::meta;
use rkube_api::selector::LabelSelector;
use serde_json::{Value, json};

use super::Ctx;
use super::write::{decode_object, patch_body};
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::output;
use crate::request::Verb;
use crate::storage::{DeleteOptions, Part};
use rkube_api::patch::PatchType;

pub async fn handle(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let sub = ctx.req.subresource.clone().unwrap_or_default();
    match (sub.as_str(), ctx.req.verb) {
        ("status" | "approval" | "ephemeralcontainers" | "resize", Verb::Get) => {
            get_object(&ctx).await
        }
        ("status", Verb::Update) => update_part(ctx, body, Part::Status).await,
        ("status", Verb::Patch) => patch_part(ctx, body, Part::Status).await,
        ("approval", Verb::Update) => update_part(ctx, body, Part::Status).await,
        ("approval", Verb::Patch) => patch_part(ctx, body, Part::Status).await,
        ("finalize", Verb::Update) => finalize(ctx, body).await,
        ("scale", Verb::Get) => {
            let obj = current(&ctx).await?;
            Ok(output::json_response(
                StatusCode::OK,
                &scale_of(&ctx, &obj)?,
            ))
        }
        ("scale", Verb::Update) => scale_update(ctx, body, false).await,
        ("scale", Verb::Patch) => scale_update(ctx, body, true).await,
        ("binding", Verb::Create) => binding(ctx, body).await,
        ("eviction", Verb::Create) => eviction(ctx, body).await,
        ("token", Verb::Create) => token_request(ctx, body).await,
        ("log", Verb::Get) => super::connect::log(ctx).await,
        ("exec" | "attach", Verb::Get | Verb::Create) => super::connect::remote_command(ctx).await,
        ("portforward", Verb::Get | Verb::Create) => super::connect::port_forward(ctx).await,
        ("proxy", _) if ctx.served.info.plural == "nodes" => {
            super::connect::node_proxy(ctx, body).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {sub})",
            ctx.req.verb.as_str()
        ))),
    }
}

async fn current(ctx: &Ctx) -> ApiResult<Value> {
    let (v, _) = ctx
        .server
        .read_current(&ctx.served, ctx.namespace(), ctx.name())
        .await?
        .ok_or_else(|| ctx.not_found())?;
    Ok(super::read::converted(&ctx.served, v))
}

async fn get_object(ctx: &Ctx) -> ApiResult<Response<Body>> {
    let obj = current(ctx).await?;
    Ok(ctx.respond(StatusCode::OK, &obj))
}

async fn update_part(ctx: Ctx, body: Body, part: Part) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let (obj, _) = decode_object(&ctx, &bytes)?;
    let opts = ctx.write_options()?;
    let name = ctx.name().to_string();
    let sub = ctx.req.subresource.clone().unwrap_or_default();
    let (updated, _) = ctx
        .server
        .update_object(&ctx.served, ctx.namespace(), &name, part, &opts, |cur| {
            let mut new = obj.clone();
            if let Some(cur) = cur {
                ctx.served
                    .strategy
                    .prepare_for_subresource_update(&sub, &mut new, cur);
            }
            Ok(new)
        })
        .await?;
    Ok(ctx.respond_written(
        StatusCode::OK,
        &super::read::converted(&ctx.served, updated),
    ))
}

async fn patch_part(ctx: Ctx, body: Body, part: Part) -> ApiResult<Response<Body>> {
    let body = patch_body(&ctx, body).await?;
    let (updated, _, warnings) = super::write::patch_object(&ctx, &body, part).await?;
    let resp = ctx.respond_written(
        StatusCode::OK,
        &super::read::converted(&ctx.served, updated),
    );
    Ok(super::write::with_warnings(resp, &warnings))
}

/// `PUT /api/v1/namespaces/<ns>/finalize`: only `spec.finalizers` changes.
async fn finalize(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let (obj, _) = decode_object(&ctx, &bytes)?;
    let finalizers = obj
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or(json!([]));
    let rv = meta::resource_version(&obj).map(str::to_string);
    let opts = ctx.write_options()?;
    let name = ctx.name().to_string();
    let (updated, _) = ctx
        .server
        .update_object(&ctx.served, None, &name, Part::All, &opts, |cur| {
            let mut cur = cur.cloned().unwrap_or(Value::Null);
            cur["spec"]["finalizers"] = finalizers.clone();
            if let Some(rv) = &rv {
                meta::set_meta_str(&mut cur, "resourceVersion", rv.as_str());
            }
            Ok(cur)
        })
        .await?;
    Ok(ctx.respond(StatusCode::OK, &updated))
}

/// Where a resource keeps its replica count and selector (built-ins and CRDs).
struct ScalePaths {
    spec_replicas: String,
    status_replicas: String,
    selector: Option<String>,
    /// Whether the selector is a `metav1.LabelSelector` object (workloads) or a map
    /// (replication controllers) — CRDs give a string path to a string.
    selector_object: bool,
}

fn scale_paths(ctx: &Ctx) -> ScalePaths {
    if let Some(v) = &ctx.served.crd_version {
        let p = |f: &str| {
            v.pointer(&format!("/subresources/scale/{f}"))
                .and_then(Value::as_str)
                .map(|s| s.trim_start_matches('.').replace('.', "/"))
        };
        return ScalePaths {
            spec_replicas: p("specReplicasPath").unwrap_or_else(|| "spec/replicas".into()),
            status_replicas: p("statusReplicasPath").unwrap_or_else(|| "status/replicas".into()),
            selector: p("labelSelectorPath"),
            selector_object: false,
        };
    }
    let rc = ctx.served.info.plural == "replicationcontrollers";
    ScalePaths {
        spec_replicas: "spec/replicas".into(),
        status_replicas: "status/replicas".into(),
        selector: Some("spec/selector".into()),
        selector_object: !rc,
    }
}

/// The `autoscaling/v1` Scale of an object.
fn scale_of(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let paths = scale_paths(ctx);
    let replicas = obj
        .pointer(&format!("/{}", paths.spec_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = obj
        .pointer(&format!("/{}", paths.status_replicas))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = match paths
        .selector
        .and_then(|p| obj.pointer(&format!("/{p}")).cloned())
    {
        Some(Value::String(s)) => s,
        Some(Value::Object(m)) if !paths.selector_object => LabelSelector::from_map(&m).to_string(),
        Some(v @ Value::Object(_)) => LabelSelector::from_object(&v)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let m = meta::metadata(obj).cloned().unwrap_or_default();
    let mut status = json!({"replicas": status_replicas});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name").cloned().unwrap_or(json!("")),
            "namespace": m.get("namespace").cloned().unwrap_or(json!("")),
            "uid": m.get("uid").cloned().unwrap_or(json!("")),
            "resourceVersion": m.get("resourceVersion").cloned().unwrap_or(json!("")),
            "creationTimestamp": m.get("creationTimestamp").cloned().unwrap_or(Value::Null),
        },
        "spec": {"replicas": replicas},
        "status": status,
    }))
}

async fn scale_update(ctx: Ctx, body: Body, is_patch: bool) -> ApiResult<Response<Body>> {
    let (patch, scale_body) = if is_patch {
        (Some(patch_body(&ctx, body).await?), None)
    } else {
        let bytes = body::read(body).await?;
        let ct = body::content_type(&ctx.headers);
        let v = body::decode_object(&ct, &bytes)?;
        if v.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Scale")
        {
            return Err(ApiError::bad_request(
                "the object provided is unrecognized (must be of type Scale)",
            ));
        }
        (None, Some(v))
    };
    let opts = ctx.write_options()?;
    let name = ctx.name().to_string();
    let paths = scale_paths(&ctx);
    let served = ctx.served.clone();
    let (updated, _) = ctx
        .server
        .update_object(&served, ctx.namespace(), &name, Part::Main, &opts, |cur| {
            let cur = cur.ok_or_else(|| {
                ApiError::not_found(&served.info.group, &served.info.plural, &name)
            })?;
            let scale = match (&scale_body, &patch) {
                (Some(s), _) => s.clone(),
                (None, Some(p)) => {
                    let s = scale_of(&ctx, cur)?;
                    match p.ty {
                        PatchType::Json => rkube_api::patch::apply_json_patch(&s, &p.raw)
                            .map_err(|e| ApiError::bad_request(e.to_string()))?,
                        _ => {
                            let mut s = s;
                            rkube_api::patch::apply_merge_patch(&mut s, p.value.clone());
                            s
                        }
                    }
                }
                (None, None) => {
                    return Err(ApiError::bad_request("a Scale or a patch is required"));
                }
            };
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    &name,
                    &[crate::error::FieldError::invalid(
                        "spec.replicas",
                        replicas,
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut new = cur.clone();
            let ptr: Vec<&str> = paths.spec_replicas.split('/').collect();
            meta::set_path(&mut new, &ptr, json!(replicas));
            // A resourceVersion in the Scale is a precondition on the object.
            let rv = scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match rv {
                Some(rv) => meta::set_meta_str(&mut new, "resourceVersion", rv),
                None => {
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                }
            }
            Ok(new)
        })
        .await?;
    Ok(output::json_response(
        StatusCode::OK,
        &scale_of(&ctx, &updated)?,
    ))
}

/// `POST pods/<name>/binding` (and the `bindings` resource): assigns a pod to a node.
pub async fn binding(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let ct = body::content_type(&ctx.headers);
    let b = body::decode_object(&ct, &bytes)?;
    let pod_name = ctx
        .req
        .name
        .clone()
        .or_else(|| meta::name(&b).map(str::to_string))
        .unwrap_or_default();
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &pod_name,
            &[crate::error::FieldError::required("target.name", "")],
        ));
    }
    let pods = ctx
        .server
        .registry
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    // Upstream assigns the node below the pod's rules (a direct storage update):
    // bindings own no fields and are checked here, not by the pod's validation.
    let opts = ctx.write_options()?;
    let annotations = b
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let ns = ctx.req.namespace.clone();
    let uid_pre = b
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    ctx.server
        .update_object(
            &pods,
            ns.as_deref(),
            &pod_name,
            Part::Direct,
            &opts,
            |cur| {
                let cur = cur.ok_or_else(|| ApiError::not_found("", "pods", &pod_name))?;
                if let Some(uid) = &uid_pre
                    && meta::uid(cur) != Some(uid.as_str())
                {
                    return Err(ApiError::conflict(
                        "",
                        "pods",
                        &pod_name,
                        "the UID in the binding does not match the pod",
                    ));
                }
                if meta::deletion_timestamp(cur).is_some() {
                    return Err(ApiError::conflict(
                        "",
                        "pods",
                        &pod_name,
                        "pod is being deleted, cannot be assigned to a host",
                    ));
                }
                let existing = cur
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !existing.is_empty() {
                    return Err(ApiError::conflict(
                        "",
                        "pods",
                        &pod_name,
                        &format!("pod {pod_name} is already assigned to node \"{existing}\""),
                    ));
                }
                let mut new = cur.clone();
                new["spec"]["nodeName"] = json!(node);
                if !annotations.is_empty() {
                    let m = meta::metadata_mut(&mut new);
                    let a = m.entry("annotations").or_insert_with(|| json!({}));
                    if let Some(a) = a.as_object_mut() {
                        a.extend(annotations.clone());
                    }
                }
                set_condition(&mut new, "PodScheduled", "True", None, None);
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(new)
            },
        )
        .await?;
    Ok(output::json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Sets a pod condition, keeping lastTransitionTime when the status is unchanged.
pub fn set_condition(
    pod: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = crate::time::now_rfc3339();
    let conds = pod["status"]
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else {
        pod["status"]["conditions"] = json!([{"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now}]);
        return;
    };
    let mut c =
        json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match conds
        .iter_mut()
        .find(|x| x.get("type").and_then(Value::as_str) == Some(ty))
    {
        Some(existing) => {
            if existing.get("status").and_then(Value::as_str) == Some(status) {
                c["lastTransitionTime"] = existing
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or(json!(now));
            }
            *existing = c;
        }
        None => conds.push(c),
    }
}

/// `POST pods/<name>/eviction`: deletes the pod unless a disruption budget forbids it.
async fn eviction(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let ct = body::content_type(&ctx.headers);
    let ev = if bytes.is_empty() {
        json!({})
    } else {
        body::decode_object(&ct, &bytes)?
    };
    let name = ctx.name().to_string();
    let ns = ctx.req.namespace.clone().unwrap_or_default();
    let pod = current(&ctx).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let terminal = phase == "Succeeded" || phase == "Failed";
    // A pod that is already being deleted, or is done, can go without a budget check.
    if !terminal && meta::deletion_timestamp(&pod).is_none() {
        check_budgets(&ctx, &ns, &pod).await?;
    }
    let mut opts = ev
        .get("deleteOptions")
        .map(DeleteOptions::from_json)
        .unwrap_or_default();
    if ctx.query.all("dryRun").contains(&"All") {
        opts.dry_run = true;
    }
    ctx.server
        .delete_object(&ctx.served, Some(&ns), &name, &opts)
        .await?;
    Ok(output::json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

async fn check_budgets(ctx: &Ctx, ns: &str, pod: &Value) -> ApiResult<()> {
    let Some(pdbs) = ctx
        .server
        .registry
        .lookup("policy", "v1", "poddisruptionbudgets")
    else {
        return Ok(());
    };
    let (list, _) = ctx.server.cache.list(&pdbs.info.namespace_prefix(Some(ns)));
    let labels = meta::labels(pod);
    let matching: Vec<Value> = list
        .iter()
        .map(|o| o.value())
        .filter(|p| {
            p.pointer("/spec/selector")
                .and_then(|s| LabelSelector::from_object(s).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(labels))
        })
        .collect();
    if matching.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let Some(pdb) = matching.into_iter().next() else {
        return Ok(());
    };
    let pdb_name = meta::name(&pdb).unwrap_or_default().to_string();
    // Upstream's eviction writes the budget's status through its own client.
    let mut opts = ctx.write_options()?;
    opts.field_manager = Some("kube-apiserver".into());
    opts.subresource = Some("status".into());
    let mut refused = false;
    ctx.server
        .update_object(&pdbs, Some(ns), &pdb_name, Part::Status, &opts, |cur| {
            let mut cur = cur.cloned().unwrap_or(Value::Null);
            let allowed = cur
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let observed = cur
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if allowed <= 0 || observed < meta::generation(&cur) {
                refused = true;
                return Err(ApiError::too_many_requests(
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    10,
                ));
            }
            cur["status"]["disruptionsAllowed"] = json!(allowed - 1);
            Ok(cur)
        })
        .await?;
    Ok(())
}

/// `POST serviceaccounts/<name>/token`: a TokenRequest for a signed, bound token.
async fn token_request(ctx: Ctx, body: Body) -> ApiResult<Response<Body>> {
    let bytes = body::read(body).await?;
    let ct = body::content_type(&ctx.headers);
    let mut tr = if bytes.is_empty() {
        json!({})
    } else {
        body::decode_object(&ct, &bytes)?
    };
    let sa = current(&ctx).await?;
    let ns = ctx.req.namespace.clone().unwrap_or_default();
    let name = ctx.name().to_string();
    let mut audiences: Vec<String> = tr
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(crate::serviceaccount::ISSUER.to_string());
    }
    let expiration = tr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            &name,
            &[crate::error::FieldError::invalid(
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let bound = match tr.pointer("/spec/boundObjectRef") {
        Some(r) if !r.is_null() => {
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
            let pod_name = r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if kind != "Pod" {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of kind {kind:?}: only Pod is supported"
                )));
            }
            let key = format!("/registry/core/pods/{ns}/{pod_name}");
            let pod = ctx
                .server
                .cache
                .get(&key)
                .map(|o| o.value())
                .ok_or_else(|| ApiError::not_found("", "pods", &pod_name))?;
            let uid = meta::uid(&pod).unwrap_or_default().to_string();
            if let Some(want) = r.get("uid").and_then(Value::as_str)
                && !want.is_empty()
                && want != uid
            {
                return Err(ApiError::conflict(
                    "",
                    "pods",
                    &pod_name,
                    "the UID in the bound object reference does not match",
                ));
            }
            Some((pod_name, uid))
        }
        _ => None,
    };
    let signer = ctx
        .server
        .token_signer
        .as_ref()
        .ok_or_else(|| ApiError::internal("no service account signing key"))?;
    let claims = crate::serviceaccount::claims(
        &ns,
        &name,
        meta::uid(&sa).unwrap_or_default(),
        &audiences,
        expiration,
        bound.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
    );
    let token = signer.sign(&claims);
    tr["apiVersion"] = json!("authentication.k8s.io/v1");
    tr["kind"] = json!("TokenRequest");
    tr["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    tr["spec"]["audiences"] = json!(audiences);
    tr["spec"]["expirationSeconds"] = json!(expiration);
    tr["status"] = json!({
        "token": token,
        "expirationTimestamp": crate::time::rfc3339_in(expiration),
    });
    Ok(output::json_response(StatusCode::CREATED, &tr))
}
