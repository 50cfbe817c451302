//! Authorization: RBAC over Roles, ClusterRoles and their bindings, as upstream's
//! RBAC authorizer decides; members of `system:masters` may do anything.

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::registry::Served;
use crate::request::ResourceRequest;
use crate::server::ApiServer;

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

/// The rules that apply to a user in a namespace (cluster-wide rules included).
fn rules_for(server: &ApiServer, user: &UserInfo, namespace: &str) -> Vec<Value> {
    let cache = &server.cache;
    let role_rules = |key: String| -> Vec<Value> {
        cache
            .get(&key)
            .map(|o| o.value())
            .and_then(|v| v.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    let mut rules = Vec::new();
    let (crbs, _) = cache.list("/registry/rbac.authorization.k8s.io/clusterrolebindings/");
    for b in crbs {
        let b = b.value();
        let subjects = b
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, user, "")) {
            let role = b
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            rules.extend(role_rules(format!(
                "/registry/rbac.authorization.k8s.io/clusterroles/{role}"
            )));
        }
    }
    if !namespace.is_empty() {
        let (rbs, _) = cache.list(&format!(
            "/registry/rbac.authorization.k8s.io/rolebindings/{namespace}/"
        ));
        for b in rbs {
            let b = b.value();
            let subjects = b
                .get("subjects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !subjects.iter().any(|s| subject_matches(s, user, namespace)) {
                continue;
            }
            let role = b
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let key = match b.pointer("/roleRef/kind").and_then(Value::as_str) {
                Some("ClusterRole") => {
                    format!("/registry/rbac.authorization.k8s.io/clusterroles/{role}")
                }
                _ => format!("/registry/rbac.authorization.k8s.io/roles/{namespace}/{role}"),
            };
            rules.extend(role_rules(key));
        }
    }
    rules
}

/// Whether `user` may do what `a` describes.
pub fn allowed(server: &ApiServer, user: &UserInfo, a: &Attributes) -> bool {
    if user.in_group("system:masters") {
        return true;
    }
    rules_for(server, user, &a.namespace)
        .iter()
        .any(|r| rule_allows(r, a))
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
    let gr = crate::error::qualified(&r.group, &r.resource);
    let what = match &r.name {
        Some(n) => format!("{gr} \"{n}\""),
        None => gr.clone(),
    };
    let resource = if a.subresource.is_empty() {
        gr.clone()
    } else {
        format!("{gr}/{}", a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let mut e = ApiError::forbidden(format!(
        "{what} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        user.name, a.verb, resource, r.group
    ));
    e.name = r.name.clone();
    e.group = Some(r.group.clone());
    e.kind = Some(r.resource.clone());
    Err(e)
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
                return Err(ApiError::invalid(
                    "authorization.k8s.io",
                    &ctx.served.info.kind,
                    "",
                    &[crate::error::FieldError::invalid(
                        "spec.user",
                        "",
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            UserInfo {
                name,
                uid: spec
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                groups,
                extra: Default::default(),
            }
        }
    };
    if ctx.served.info.plural == "localsubjectaccessreviews" {
        let ns = ctx.req.namespace.clone().unwrap_or_default();
        if !a.namespace.is_empty() && a.namespace != ns {
            return Err(ApiError::bad_request(
                "spec.resourceAttributes.namespace must match namespace",
            ));
        }
        a.namespace = ns;
    }
    let ok = allowed(&ctx.server, &user, &a);
    let mut status = json!({"allowed": ok});
    if ok && !user.in_group("system:masters") {
        status["reason"] = json!("RBAC: allowed by a binding");
    }
    Ok(status)
}

/// Answers a SelfSubjectRulesReview: the rules that apply in a namespace.
pub fn rules_review(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let ns = obj
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if ctx.user.in_group("system:masters") {
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
