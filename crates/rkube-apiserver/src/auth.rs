//! Who is asking: identities from client certificates and bearer tokens.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::{Value, json};

/// An authenticated user, as upstream's `user.Info`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: HashMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        UserInfo {
            name: name.to_string(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: HashMap::new(),
        }
    }

    /// Adds `system:authenticated` as upstream does for every authenticated user.
    pub fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".to_string());
        }
        self
    }

    pub fn anonymous() -> Self {
        UserInfo::new("system:anonymous", &["system:unauthenticated"])
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// The `userInfo` object of reviews (SelfSubjectReview, TokenReview).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            let sorted: std::collections::BTreeMap<_, _> = self.extra.iter().collect();
            v["extra"] = json!(sorted);
        }
        v
    }
}

/// The identity in a client certificate: CN is the user, O entries the groups.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(
        UserInfo {
            name,
            uid: String::new(),
            groups,
            extra: HashMap::new(),
        }
        .authenticated(),
    )
}

/// Static bearer tokens (node join tokens and the like) and how to check others.
#[derive(Default)]
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, UserInfo>>,
}

impl TokenAuthenticator {
    pub fn add(&self, token: &str, user: UserInfo) {
        self.tokens
            .write()
            .expect("token lock")
            .insert(token.to_string(), user.authenticated());
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.read().expect("token lock").get(token).cloned()
    }
}
