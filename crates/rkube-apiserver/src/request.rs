//! Parsing a request path and query into what it asks of which resource.

use std::collections::HashMap;

use http::Method;

/// The verb of a resource request, as RBAC names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request for a resource: `/api/v1/namespaces/default/pods/web/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRequest {
    pub verb: Verb,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Path segments after the subresource (pod and service `proxy/...`).
    pub rest: Vec<String>,
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: all groups.
    Groups,
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of one group version.
    GroupVersion {
        group: String,
        version: String,
    },
    /// `/apis/<group>`: one group.
    Group {
        group: String,
    },
    Resource(ResourceRequest),
    /// Anything else: `/version`, `/healthz`, `/openapi/v3`, ...
    NonResource(String),
}

/// Subresources of namespaces that look like a namespaced resource in the path.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Reads the path of a request (and whether it asks to watch) into a route.
pub fn route(method: &Method, path: &str, watch_param: bool) -> Route {
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["api", v] => {
            return Route::GroupVersion {
                group: String::new(),
                version: v.to_string(),
            };
        }
        ["apis", g] => {
            return Route::Group {
                group: g.to_string(),
            };
        }
        ["apis", g, v] => {
            return Route::GroupVersion {
                group: g.to_string(),
                version: v.to_string(),
            };
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NonResource(path.to_string()),
    };
    let mut rest: Vec<String> = rest.iter().map(|s| percent_decode(s)).collect();
    let mut watch = watch_param;
    if rest.first().map(String::as_str) == Some("watch") {
        watch = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first().map(String::as_str) == Some("namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].clone());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2].as_str()) {
            rest.drain(..2);
        }
    }
    if rest.is_empty() {
        return Route::NonResource(path.to_string());
    }
    let resource = rest[0].clone();
    let name = rest.get(1).cloned();
    let subresource = rest.get(2).cloned();
    let tail = rest.get(3..).map(<[String]>::to_vec).unwrap_or_default();
    // `namespaces/x` names the namespace itself, not objects in it.
    if resource == "namespaces" && name.is_some() {
        namespace = None;
    }
    let verb = match *method {
        Method::GET | Method::HEAD => {
            if name.is_none() {
                if watch { Verb::Watch } else { Verb::List }
            } else if watch {
                Verb::Watch
            } else {
                Verb::Get
            }
        }
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => {
            if name.is_none() {
                Verb::DeleteCollection
            } else {
                Verb::Delete
            }
        }
        _ => Verb::Get,
    };
    Route::Resource(ResourceRequest {
        verb,
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource,
        name,
        subresource,
        rest: tail,
    })
}

/// Decodes `%XX` escapes in a path segment.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Query parameters, with repeated keys kept (`command=ls&command=/`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((query_decode(k), query_decode(v)));
        }
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that is present and not empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.non_empty(key)?.parse().ok()
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        self.pairs.iter().cloned().collect()
    }
}

fn query_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str) -> ResourceRequest {
        match route(&method, path, false) {
            Route::Resource(r) => r,
            other => panic!("not a resource route: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = res(Method::GET, "/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(r.verb, Verb::Get);

        let r = res(Method::GET, "/apis/apps/v1/deployments");
        assert_eq!(
            (r.group.as_str(), r.namespace.clone(), r.verb),
            ("apps", None, Verb::List)
        );

        let r = res(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.namespace, None);

        let r = res(Method::PUT, "/api/v1/namespaces/x/finalize");
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("x"), Some("finalize"))
        );

        let r = res(Method::DELETE, "/api/v1/namespaces/x/configmaps");
        assert_eq!(r.verb, Verb::DeleteCollection);
    }

    #[test]
    fn watch_forms() {
        let r = res(Method::GET, "/api/v1/watch/namespaces/default/pods");
        assert_eq!(r.verb, Verb::Watch);
        assert_eq!(r.resource, "pods");
        match route(&Method::GET, "/api/v1/pods", true) {
            Route::Resource(r) => assert_eq!(r.verb, Verb::Watch),
            _ => panic!(),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(route(&Method::GET, "/api", false), Route::CoreVersions);
        assert_eq!(route(&Method::GET, "/apis/", false), Route::Groups);
        assert!(matches!(
            route(&Method::GET, "/apis/apps/v1", false),
            Route::GroupVersion { .. }
        ));
        assert!(matches!(
            route(&Method::GET, "/version", false),
            Route::NonResource(_)
        ));
    }

    #[test]
    fn query_keeps_repeats_and_decodes() {
        let q = Query::parse(Some("command=ls&command=%2F&labelSelector=app%3Dweb&x=a+b"));
        assert_eq!(q.all("command"), vec!["ls", "/"]);
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.get("x"), Some("a b"));
    }
}
