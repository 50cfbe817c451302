//! Who may call the kubelet port, decided as upstream's kubelet does: callers are
//! authenticated by a client certificate of the cluster CA or, in webhook mode, by a
//! bearer token the API server reviews (`TokenReview`); every request is then
//! authorized on `nodes/<subresource>` of this node, by the API server
//! (`SubjectAccessReview`) in webhook mode, or by a fixed list of users and groups
//! when the kubelet has no API server to ask. Webhook answers are cached as
//! upstream's defaults: tokens 2 minutes, allowed 5 minutes, denied 30 seconds.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// Who called: a user, its groups, and what a token review adds (uid, extra).
/// Certificates give the CN as the user and the O entries as groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// How long reviewed tokens, allowed and denied requests are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTtls {
    pub token: Duration,
    pub allowed: Duration,
    pub denied: Duration,
}

impl Default for CacheTtls {
    /// Upstream's `cacheTTL`, `cacheAuthorizedTTL` and `cacheUnauthorizedTTL`.
    fn default() -> CacheTtls {
        CacheTtls {
            token: Duration::from_secs(120),
            allowed: Duration::from_secs(300),
            denied: Duration::from_secs(30),
        }
    }
}

/// How callers are authenticated beyond certificates, and authorized.
#[derive(Clone)]
pub enum AuthMode {
    /// Bearer tokens through `TokenReview`, every request through
    /// `SubjectAccessReview`, asked of the API server with this client (upstream's
    /// `--authentication-token-webhook --authorization-mode=Webhook`).
    Webhook {
        client: kube::Client,
        ttls: CacheTtls,
    },
    /// Certificates only; these users (certificate CN) and groups (O) may do
    /// anything, everyone else nothing.
    Fixed {
        users: Vec<String>,
        groups: Vec<String>,
    },
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMode::Webhook { ttls, .. } => {
                f.debug_struct("Webhook").field("ttls", ttls).finish()
            }
            AuthMode::Fixed { users, groups } => f
                .debug_struct("Fixed")
                .field("users", users)
                .field("groups", groups)
                .finish(),
        }
    }
}

/// What a request asks to do, in the terms of an authorization check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

impl Attributes {
    /// The verb from the HTTP method, the subresource of `nodes` from the path's
    /// first segment (`/stats/...` is `stats`, everything unnamed is `proxy`).
    pub fn of(method: &Method, path: &str) -> Attributes {
        let verb = match *method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        };
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let subresource = match first {
            "stats" => "stats",
            "metrics" => "metrics",
            "logs" => "log",
            "spec" => "spec",
            "checkpoint" => "checkpoint",
            _ => "proxy",
        };
        Attributes { verb, subresource }
    }
}

/// Why a caller was turned away; [`Denied::status`] and the `Display` text are the
/// answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No identity could be established.
    #[error("Unauthorized")]
    Unauthenticated,
    /// The caller may not do this.
    #[error("Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})")]
    Forbidden {
        user: String,
        verb: &'static str,
        subresource: &'static str,
    },
    /// The API server could not be asked.
    #[error(
        "Authorization error (user={user}, verb={verb}, resource=nodes, subresource={subresource})"
    )]
    Failed {
        user: String,
        verb: &'static str,
        subresource: &'static str,
    },
}

impl Denied {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Denied::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            Denied::Forbidden { .. } => http::StatusCode::FORBIDDEN,
            Denied::Failed { .. } => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A map whose entries expire, bounded in size (a full map is cleared of expired
/// entries first, then of everything).
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    max: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    fn new(max: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.get(k)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn put(&self, k: K, v: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.max {
            let now = Instant::now();
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= self.max {
                m.clear();
            }
        }
        m.insert(k, (v, Instant::now() + ttl));
    }
}

/// The authenticator and authorizer of the kubelet port.
pub struct Gate {
    mode: AuthMode,
    node_name: String,
    tokens: TtlCache<String, Option<Identity>>,
    decisions: TtlCache<(Identity, Attributes), bool>,
}

impl Gate {
    pub fn new(mode: AuthMode, node_name: String) -> Gate {
        Gate {
            mode,
            node_name,
            tokens: TtlCache::new(1024),
            decisions: TtlCache::new(8192),
        }
    }

    /// The caller: its certificate's identity, else (webhook mode) the user of its
    /// bearer token.
    pub async fn authenticate(
        &self,
        certificate: Option<&Identity>,
        headers: &HeaderMap,
    ) -> Result<Identity, Denied> {
        if let Some(id) = certificate {
            return Ok(id.clone());
        }
        let AuthMode::Webhook { client, ttls } = &self.mode else {
            return Err(Denied::Unauthenticated);
        };
        let token = bearer_token(headers).ok_or(Denied::Unauthenticated)?;
        if let Some(known) = self.tokens.get(&token.to_string()) {
            return known.ok_or(Denied::Unauthenticated);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!("kubelet port: reviewing a bearer token: {e}");
                Denied::Unauthenticated
            })?;
        let user = answer
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .and_then(|u| {
                Some(Identity {
                    user: u.username.filter(|n| !n.is_empty())?,
                    groups: u.groups.unwrap_or_default(),
                    uid: u.uid,
                    extra: u.extra.unwrap_or_default(),
                })
            });
        self.tokens.put(token.to_string(), user.clone(), ttls.token);
        user.ok_or(Denied::Unauthenticated)
    }

    /// Whether `who` may make a request of these attributes.
    pub async fn authorize(&self, who: &Identity, attrs: &Attributes) -> Result<(), Denied> {
        let forbidden = || Denied::Forbidden {
            user: who.user.clone(),
            verb: attrs.verb,
            subresource: attrs.subresource,
        };
        let (client, ttls) = match &self.mode {
            AuthMode::Fixed { users, groups } => {
                let allowed =
                    users.contains(&who.user) || who.groups.iter().any(|g| groups.contains(g));
                return if allowed { Ok(()) } else { Err(forbidden()) };
            }
            AuthMode::Webhook { client, ttls } => (client, ttls),
        };
        let key = (who.clone(), attrs.clone());
        if let Some(allowed) = self.decisions.get(&key) {
            return if allowed { Ok(()) } else { Err(forbidden()) };
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                groups: Some(who.groups.clone()),
                uid: who.uid.clone(),
                extra: (!who.extra.is_empty()).then(|| who.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.to_string()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.into()),
                    name: Some(self.node_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!("kubelet port: authorizing {}: {e}", who.user);
                Denied::Failed {
                    user: who.user.clone(),
                    verb: attrs.verb,
                    subresource: attrs.subresource,
                }
            })?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let ttl = if allowed { ttls.allowed } else { ttls.denied };
        self.decisions.put(key, allowed, ttl);
        if allowed { Ok(()) } else { Err(forbidden()) }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split_whitespace();
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && parts.next().is_none()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_the_kubelets_mapping() {
        let a = |m: Method, p: &str| {
            let x = Attributes::of(&m, p);
            (x.verb, x.subresource)
        };
        assert_eq!(
            a(Method::GET, "/containerLogs/default/p/c"),
            ("get", "proxy")
        );
        assert_eq!(a(Method::POST, "/exec/default/p/c"), ("create", "proxy"));
        assert_eq!(a(Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(a(Method::GET, "/metrics/cadvisor"), ("get", "metrics"));
        assert_eq!(a(Method::GET, "/logs/syslog"), ("get", "log"));
        assert_eq!(a(Method::GET, "/spec/"), ("get", "spec"));
        assert_eq!(
            a(Method::POST, "/checkpoint/ns/p/c"),
            ("create", "checkpoint")
        );
        assert_eq!(a(Method::HEAD, "/healthz"), ("get", "proxy"));
        assert_eq!(a(Method::PUT, "/x"), ("update", "proxy"));
        assert_eq!(a(Method::PATCH, "/x"), ("patch", "proxy"));
        assert_eq!(a(Method::DELETE, "/x"), ("delete", "proxy"));
    }

    #[test]
    fn bearer_tokens_are_read_as_upstream() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert_eq!(bearer_token(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("bearer  abc")), Some("abc"));
        assert_eq!(bearer_token(&h("Basic abc")), None);
        assert_eq!(bearer_token(&h("Bearer")), None);
        assert_eq!(bearer_token(&h("Bearer a b")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    fn someone(groups: &[&str]) -> Identity {
        Identity {
            user: "someone".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            uid: None,
            extra: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn fixed_mode_admits_its_users_and_groups_only() {
        let gate = Gate::new(
            AuthMode::Fixed {
                users: vec!["kube-apiserver-kubelet-client".into()],
                groups: vec!["system:masters".into()],
            },
            "n1".into(),
        );
        let attrs = Attributes::of(&Method::GET, "/healthz");
        assert!(
            gate.authorize(&someone(&["system:masters"]), &attrs)
                .await
                .is_ok()
        );
        let e = gate
            .authorize(&someone(&["devs"]), &attrs)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(
            e.to_string(),
            "Forbidden (user=someone, verb=get, resource=nodes, subresource=proxy)"
        );
        // Without a webhook there are only certificates.
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert_eq!(
            gate.authenticate(None, &h).await.unwrap_err(),
            Denied::Unauthenticated
        );
        let cert = someone(&[]);
        assert_eq!(gate.authenticate(Some(&cert), &h).await.unwrap(), cert);
    }

    #[test]
    fn cache_entries_expire_and_the_size_is_bounded() {
        let c = TtlCache::new(2);
        c.put(1, "a", Duration::from_secs(60));
        c.put(2, "b", Duration::from_nanos(1));
        c.put(9, "never", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.get(&1), Some("a"));
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&9), None);
        // Full: the expired entry makes room.
        c.put(3, "c", Duration::from_secs(60));
        assert_eq!((c.get(&1), c.get(&3)), (Some("a"), Some("c")));
        // Full of live entries: cleared.
        c.put(4, "d", Duration::from_secs(60));
        assert_eq!((c.get(&1), c.get(&4)), (None, Some("d")));
    }
}
