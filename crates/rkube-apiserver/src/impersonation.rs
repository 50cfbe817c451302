//! Impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-<key>` headers, what
//! `kubectl --as` sends): the requester must be allowed the `impersonate` verb on each
//! thing asked for, then the request runs as the impersonated user.

use std::collections::HashMap;

use http::HeaderMap;

use crate::auth::UserInfo;
use crate::authz::{self, Attributes};
use crate::error::{ApiError, ApiResult};
use crate::server::ApiServer;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// One thing a request asks to act as, in upstream's order: user, groups, extras, uid.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Request {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Request {
    /// What RBAC is asked: `impersonate` on users, serviceaccounts, groups, uids or
    /// `userextras/<key>`.
    fn attributes(&self) -> Attributes {
        let (group, resource, subresource, namespace, name) = match self {
            Request::User(n) => ("", "users", "", "", n.as_str()),
            Request::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", "", namespace.as_str(), name.as_str())
            }
            Request::Group(n) => ("", "groups", "", "", n.as_str()),
            Request::Extra { key, value } => (
                "authentication.k8s.io",
                "userextras",
                key.as_str(),
                "",
                value.as_str(),
            ),
            Request::Uid(u) => ("authentication.k8s.io", "uids", "", "", u.as_str()),
        };
        Attributes {
            verb: "impersonate".into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            path: None,
        }
    }

    /// Go's `%v` of the ObjectReference upstream builds, for its error message.
    fn describe(&self) -> String {
        let (kind, ns, name, api_version, field) = match self {
            Request::User(n) => ("User", "", n.as_str(), "", ""),
            Request::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace.as_str(), name.as_str(), "", "")
            }
            Request::Group(n) => ("Group", "", n.as_str(), "", ""),
            Request::Extra { key, value } => (
                "UserExtra",
                "",
                value.as_str(),
                "authentication.k8s.io/v1",
                key.as_str(),
            ),
            Request::Uid(u) => ("UID", "", u.as_str(), "authentication.k8s.io/v1", ""),
        };
        format!("{{{kind} {ns} {name}  {api_version}  {field}}}")
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads the impersonation headers; none gives an empty list.
fn requests(headers: &HeaderMap) -> ApiResult<Vec<Request>> {
    let mut out = Vec::new();
    let user = header_values(headers, USER).next().unwrap_or_default();
    let has_user = !user.is_empty();
    if has_user {
        out.push(match service_account(&user) {
            Some((namespace, name)) => Request::ServiceAccount { namespace, name },
            None => Request::User(user),
        });
    }
    let mut others = false;
    for g in header_values(headers, GROUP) {
        out.push(Request::Group(g));
        others = true;
    }
    // Header names arrive lower-cased; the key is %-encoded by clients.
    let mut extra_names: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with(EXTRA_PREFIX))
        .collect();
    extra_names.sort();
    extra_names.dedup();
    for name in extra_names {
        let key = crate::request::percent_decode(&name[EXTRA_PREFIX.len()..]);
        for value in header_values(headers, name) {
            out.push(Request::Extra {
                key: key.clone(),
                value,
            });
            others = true;
        }
    }
    if let Some(uid) = header_values(headers, UID).next().filter(|u| !u.is_empty()) {
        out.push(Request::Uid(uid));
        others = true;
    }
    if others && !has_user {
        let list: Vec<String> = out.iter().map(Request::describe).collect();
        return Err(ApiError::internal(format!(
            "requested [{}] without impersonating a user",
            list.join(" ")
        )));
    }
    Ok(out)
}

/// `system:serviceaccount:<namespace>:<name>`.
fn service_account(user: &str) -> Option<(String, String)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (ns.to_string(), name.to_string()))
}

/// The user a request runs as: `requester`, or whom it impersonates if it may.
/// Removes the impersonation headers.
pub fn impersonate(
    server: &ApiServer,
    requester: UserInfo,
    headers: &mut HeaderMap,
) -> ApiResult<UserInfo> {
    let asked = requests(headers)?;
    if asked.is_empty() {
        return Ok(requester);
    }
    let groups_given = headers.contains_key(GROUP);
    let mut user = UserInfo {
        name: String::new(),
        uid: String::new(),
        groups: Vec::new(),
        extra: HashMap::new(),
    };
    for r in &asked {
        let a = r.attributes();
        if !authz::allowed(server, &requester, &a) {
            return Err(authz::forbidden(&requester, &a, ""));
        }
        match r {
            Request::User(n) => user.name = n.clone(),
            Request::ServiceAccount { namespace, name } => {
                user.name = format!("system:serviceaccount:{namespace}:{name}");
                if !groups_given {
                    user.groups = vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Request::Group(g) => user.groups.push(g.clone()),
            Request::Extra { key, value } => user
                .extra
                .entry(key.clone())
                .or_default()
                .push(value.clone()),
            Request::Uid(u) => user.uid = u.clone(),
        }
    }
    if user.is_anonymous() {
        if !user.in_group("system:unauthenticated") {
            user.groups.push("system:unauthenticated".into());
        }
    } else if !user.in_group("system:authenticated") && !user.in_group("system:unauthenticated") {
        user.groups.push("system:authenticated".into());
    }
    headers.remove(USER);
    headers.remove(UID);
    headers.remove(GROUP);
    let extra: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(EXTRA_PREFIX))
        .cloned()
        .collect();
    for k in extra {
        headers.remove(k);
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_become_requests_in_upstream_order() {
        let h = headers(&[
            ("Impersonate-Uid", "abc"),
            ("Impersonate-Extra-Key%2Fone", "a b"),
            ("Impersonate-Extra-key%2Fone", "c"),
            ("Impersonate-Group", "g1"),
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
        ]);
        assert_eq!(
            requests(&h).unwrap(),
            vec![
                Request::ServiceAccount {
                    namespace: "ns".into(),
                    name: "sa".into()
                },
                Request::Group("g1".into()),
                Request::Extra {
                    key: "key/one".into(),
                    value: "a b".into()
                },
                Request::Extra {
                    key: "key/one".into(),
                    value: "c".into()
                },
                Request::Uid("abc".into()),
            ]
        );
    }

    #[test]
    fn groups_without_a_user_are_refused() {
        let e = requests(&headers(&[("Impersonate-Group", "foo")])).unwrap_err();
        assert!(
            e.message
                .contains("requested [{Group  foo    }] without impersonating a user"),
            "{}",
            e.message
        );
        assert!(requests(&HeaderMap::new()).unwrap().is_empty());
    }
}
