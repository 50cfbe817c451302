//! Authorization: RBAC over Roles, ClusterRoles and their bindings, as upstream's
//! RBAC authorizer decides; members of `system:masters` may do anything.

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::registry::Served;
use crate::request::ResourceRequest;
use crate::server::ApiServer;

/// An authorizer of `--authorization-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Roles and bindings.
    Rbac,
    /// Everything is allowed (upstream's default, and its test servers').
    AlwaysAllow,
    /// Nothing is allowed (beyond `system:masters`).
    AlwaysDeny,
}

impl Mode {
    /// Parses `--authorization-mode` (a comma-separated list, as upstream's flag).
    pub fn parse_list(s: &str) -> Result<Vec<Mode>, String> {
        let mut out = Vec::new();
        for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mode = match m {
                "RBAC" => Mode::Rbac,
                "AlwaysAllow" => Mode::AlwaysAllow,
                "AlwaysDeny" => Mode::AlwaysDeny,
                other => {
                    return Err(format!(
                        "authorization-mode {other:?} is not supported (RBAC, AlwaysAllow, AlwaysDeny)"
                    ));
                }
            };
            if out.contains(&mode) {
                return Err(format!("authorization-mode {m:?} is given twice"));
            }
            out.push(mode);
        }
        if out.is_empty() {
            return Err("at least one authorization-mode must be given".into());
        }
        Ok(out)
    }
}

/// What is being asked, in RBAC's terms.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// For non-resource requests (`/healthz`, `/version`).
    pub path: Option<String>,
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one PolicyRule allows the request.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = str_list(rule, "verbs");
    if !has(&verbs, &a.verb) {
        return false;
    }
    if let Some(path) = &a.path {
        return str_list(rule, "nonResourceURLs").iter().any(|u| {
            u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        });
    }
    if !has(&str_list(rule, "apiGroups"), &a.group) {
        return false;
    }
    let resources = str_list(rule, "resources");
    let full = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == full
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
            || (a.subresource.is_empty() && *r == a.resource)
    });
    if !resource_ok {
        return false;
    }
    let names = str_list(rule, "resourceNames");
    names.is_empty() || names.contains(&a.name)
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => name == user.name,
        "Group" => user.in_group(name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Rules granted to a user by one binding, and how upstream names that binding in
/// the reason of an allowed review (`ClusterRoleBinding "x" of ClusterRole "y" to
/// User "z"`).
struct Grant {
    rules: Vec<Value>,
    source: String,
}

/// How upstream describes a binding's subject.
fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let f = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
    match f("kind") {
        "ServiceAccount" => {
            let ns = if f("namespace").is_empty() {
                binding_ns
            } else {
                f("namespace")
            };
            format!("ServiceAccount \"{}/{ns}\"", f("name"))
        }
        kind => format!("{kind} \"{}\"", f("name")),
    }
}

/// The grants that apply to a user in a namespace (cluster-wide ones included).
fn grants_for(server: &ApiServer, user: &UserInfo, namespace: &str) -> Vec<Grant> {
    let cache = &server.cache;
    let role_rules = |key: String| -> Vec<Value> {
        cache
            .get(&key)
            .map(|o| o.value())
            .and_then(|v| v.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    let mut bindings: Vec<(Value, &str)> = cache
        .list("/registry/rbac.authorization.k8s.io/clusterrolebindings/")
        .0
        .into_iter()
        .map(|b| (b.value(), ""))
        .collect();
    if !namespace.is_empty() {
        let prefix = format!("/registry/rbac.authorization.k8s.io/rolebindings/{namespace}/");
        bindings.extend(
            cache
                .list(&prefix)
                .0
                .into_iter()
                .map(|b| (b.value(), namespace)),
        );
    }
    let mut out = Vec::new();
    for (b, ns) in bindings {
        let subjects = b
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(subject) = subjects.iter().find(|s| subject_matches(s, user, ns)) else {
            continue;
        };
        let role = b
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let role_kind = b
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = if role_kind == "ClusterRole" || ns.is_empty() {
            format!("/registry/rbac.authorization.k8s.io/clusterroles/{role}")
        } else {
            format!("/registry/rbac.authorization.k8s.io/roles/{ns}/{role}")
        };
        let name = rkube_api::meta::name(&b).unwrap_or_default();
        let source = if ns.is_empty() {
            format!(
                "ClusterRoleBinding \"{name}\" of {role_kind} \"{role}\" to {}",
                describe_subject(subject, "")
            )
        } else {
            format!(
                "RoleBinding \"{name}/{ns}\" of {role_kind} \"{role}\" to {}",
                describe_subject(subject, ns)
            )
        };
        out.push(Grant {
            rules: role_rules(key),
            source,
        });
    }
    out
}

/// The rules that apply to a user in a namespace (cluster-wide rules included).
fn rules_for(server: &ApiServer, user: &UserInfo, namespace: &str) -> Vec<Value> {
    grants_for(server, user, namespace)
        .into_iter()
        .flat_map(|g| g.rules)
        .collect()
}

/// Which binding lets RBAC allow the request, if one does.
fn rbac_allows(server: &ApiServer, user: &UserInfo, a: &Attributes) -> Option<String> {
    grants_for(server, user, &a.namespace)
        .into_iter()
        .find(|g| g.rules.iter().any(|r| rule_allows(r, a)))
        .map(|g| g.source)
}

/// Whether `user` may do what `a` describes, and upstream's reason when it may.
fn decide(server: &ApiServer, user: &UserInfo, a: &Attributes) -> Option<String> {
    if user.in_group("system:masters") {
        return Some(String::new());
    }
    server
        .config
        .authorization_modes
        .iter()
        .find_map(|mode| match mode {
            Mode::AlwaysAllow => Some(String::new()),
            Mode::AlwaysDeny => None,
            Mode::Rbac => rbac_allows(server, user, a).map(|s| format!("RBAC: allowed by {s}")),
        })
}

/// Whether `user` may do what `a` describes.
pub fn allowed(server: &ApiServer, user: &UserInfo, a: &Attributes) -> bool {
    decide(server, user, a).is_some()
}

/// Decides a resource request; refuses with upstream's Forbidden message.
pub fn authorize(
    server: &ApiServer,
    user: &UserInfo,
    r: &ResourceRequest,
    served: &Served,
) -> ApiResult<()> {
    if user.in_group("system:masters") {
        return Ok(());
    }
    let a = Attributes {
        verb: r.verb.as_str().to_string(),
        group: r.group.clone(),
        resource: r.resource.clone(),
        subresource: r.subresource.clone().unwrap_or_default(),
        namespace: if served.info.namespaced() {
            r.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        },
        name: r.name.clone().unwrap_or_default(),
        path: None,
    };
    if allowed(server, user, &a) {
        return Ok(());
    }
    Err(forbidden(user, &a, ""))
}

/// Upstream's Forbidden answer for a refused request.
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let mut msg = match &a.path {
        Some(path) => format!("User \"{}\" cannot {} path \"{path}\"", user.name, a.verb),
        None => {
            let resource = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let scope = if a.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", a.namespace)
            };
            format!(
                "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                user.name, a.verb, a.group
            )
        }
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    let gr = crate::error::qualified(&a.group, &a.resource);
    let mut e = if a.name.is_empty() {
        ApiError::forbidden(format!("{gr} is forbidden: {msg}"))
    } else {
        ApiError::forbidden(format!("{gr} \"{}\" is forbidden: {msg}", a.name))
    };
    if !a.name.is_empty() {
        e.name = Some(a.name.clone());
    }
    e.group = Some(a.group.clone());
    e.kind = Some(a.resource.clone());
    e
}

fn attributes_from_spec(spec: &Value) -> Attributes {
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if spec.get("nonResourceAttributes").is_some() {
        return Attributes {
            verb: s("/nonResourceAttributes/verb"),
            path: Some(s("/nonResourceAttributes/path")),
            ..Default::default()
        };
    }
    Attributes {
        verb: s("/resourceAttributes/verb"),
        group: s("/resourceAttributes/group"),
        resource: s("/resourceAttributes/resource"),
        subresource: s("/resourceAttributes/subresource"),
        namespace: s("/resourceAttributes/namespace"),
        name: s("/resourceAttributes/name"),
        path: None,
    }
}

/// Answers a (Self|Local)SubjectAccessReview: returns its `status`.
pub fn review(ctx: &Ctx, obj: &mut Value) -> ApiResult<Value> {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let mut a = attributes_from_spec(&spec);
    use crate::error::FieldError;
    let mut errs = Vec::new();
    let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    match (has("resourceAttributes"), has("nonResourceAttributes")) {
        (true, true) => errs.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            spec["nonResourceAttributes"].clone(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (false, false) => errs.push(FieldError::invalid(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    let user = match ctx.served.info.plural.as_str() {
        "selfsubjectaccessreviews" => ctx.user.clone(),
        _ => {
            let name = spec
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let groups = str_list(&spec, "groups");
            if name.is_empty() && groups.is_empty() {
                errs.push(FieldError::invalid(
                    "spec.user",
                    "",
                    "at least one of user or group must be specified",
                ));
            }
            let extra = spec
                .get("extra")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .map(|k| (k.clone(), str_list(&spec["extra"], k)))
                        .collect()
                })
                .unwrap_or_default();
            UserInfo {
                name,
                uid: spec
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                groups,
                extra,
            }
        }
    };
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            "authorization.k8s.io",
            &ctx.served.info.kind,
            "",
            &errs,
        ));
    }
    if ctx.served.info.plural == "localsubjectaccessreviews" {
        let ns = ctx.req.namespace.clone().unwrap_or_default();
        if !a.namespace.is_empty() && a.namespace != ns {
            return Err(ApiError::bad_request(
                "spec.resourceAttributes.namespace must match namespace",
            ));
        }
        a.namespace = ns;
    }
    let mut status = json!({"allowed": false});
    if let Some(reason) = decide(&ctx.server, &user, &a) {
        status["allowed"] = json!(true);
        if !reason.is_empty() {
            status["reason"] = json!(reason);
        }
    }
    Ok(status)
}

/// Answers a SelfSubjectRulesReview: the rules that apply in a namespace.
pub fn rules_review(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let ns = obj
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if ctx.user.in_group("system:masters")
        || ctx
            .server
            .config
            .authorization_modes
            .contains(&Mode::AlwaysAllow)
    {
        return Ok(json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }));
    }
    let rules = rules_for(&ctx.server, &ctx.user, ns);
    let (non_resource, resource): (Vec<Value>, Vec<Value>) = rules
        .into_iter()
        .partition(|r| r.get("nonResourceURLs").is_some());
    Ok(json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "default".into(),
            name: name.into(),
            path: None,
        }
    }

    #[test]
    fn modes_parse_like_the_flag() {
        assert_eq!(
            Mode::parse_list("RBAC,AlwaysAllow").unwrap(),
            vec![Mode::Rbac, Mode::AlwaysAllow]
        );
        assert!(Mode::parse_list("Node").is_err());
        assert!(Mode::parse_list("RBAC,RBAC").is_err());
        assert!(Mode::parse_list("").is_err());
    }

    #[test]
    fn rules_match_like_rbac() {
        let rule =
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]});
        assert!(rule_allows(&rule, &attrs("get", "", "pods", "", "x")));
        assert!(rule_allows(&rule, &attrs("get", "", "pods", "log", "x")));
        assert!(!rule_allows(&rule, &attrs("get", "", "pods", "exec", "x")));
        assert!(!rule_allows(&rule, &attrs("delete", "", "pods", "", "x")));
        assert!(!rule_allows(&rule, &attrs("get", "apps", "pods", "", "x")));
        let named =
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "resourceNames": ["a"]});
        assert!(rule_allows(
            &named,
            &attrs("update", "apps", "deployments", "", "a")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("update", "apps", "deployments", "", "b")
        ));
        let nonres = json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/api/*"]});
        let mut a = attrs("get", "", "", "", "");
        a.path = Some("/api/v1".into());
        assert!(rule_allows(&nonres, &a));
        a.path = Some("/metrics".into());
        assert!(!rule_allows(&nonres, &a));
    }
}
