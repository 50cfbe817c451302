//! ServiceAccount tokens: signed JWTs (ES256) issued through the `token` subresource
//! (TokenRequest) and accepted as bearer tokens, as upstream's bound tokens are.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::UserInfo;
use crate::server::ApiServer;

/// Who tokens are issued by and for, by default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Loading or making the signing key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("service account signing key: {0}")]
    Key(String),
}

/// The key tokens are signed with and checked against.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    kid: String,
}

impl TokenSigner {
    /// Loads `<dir>/service-account.key` (PKCS#8 DER), creating it at first start.
    pub fn load_or_create(dir: &Path) -> Result<TokenSigner, KeyError> {
        let path = dir.join("service-account.key");
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|e| KeyError::Key(e.to_string()))?;
                std::fs::create_dir_all(dir).map_err(io)?;
                let tmp = path.with_extension("tmp");
                {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(io)?;
                    f.write_all(doc.as_ref()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
                std::fs::rename(&tmp, &path).map_err(io)?;
                doc.as_ref().to_vec()
            }
        };
        TokenSigner::from_pkcs8(&pkcs8)
    }

    /// A key that lives only as long as this process.
    pub fn ephemeral() -> Result<TokenSigner, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|e| KeyError::Key(e.to_string()))?;
        TokenSigner::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<TokenSigner, KeyError> {
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| KeyError::Key(e.to_string()))?;
        let public = key.public_key().as_ref().to_vec();
        let kid = B64.encode(Sha256::digest(&public));
        Ok(TokenSigner { key, public, kid })
    }

    /// A signed JWT with these claims.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map(|s| B64.encode(s.as_ref()))
            .unwrap_or_default();
        format!("{signing_input}.{sig}")
    }

    /// The claims of a token signed by this key, if the signature holds.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .ok()?;
        serde_json::from_slice(&B64.decode(c).ok()?).ok()
    }
}

/// The claims of a token for a ServiceAccount, optionally bound to a pod.
pub fn claims(
    namespace: &str,
    sa_name: &str,
    sa_uid: &str,
    audiences: &[String],
    expiration_seconds: i64,
    bound_pod: Option<(&str, &str)>,
) -> Value {
    let now = jiff::Timestamp::now().as_second();
    let mut k8s = json!({
        "namespace": namespace,
        "serviceaccount": {"name": sa_name, "uid": sa_uid},
    });
    if let Some((pod, uid)) = bound_pod {
        k8s["pod"] = json!({"name": pod, "uid": uid});
    }
    json!({
        "aud": audiences,
        "exp": now + expiration_seconds,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
    })
}

/// Authenticates a bearer token issued for a ServiceAccount: the signature, the
/// expiry, and that the account (and a bound pod) still exist with the same uid.
pub fn authenticate(server: &ApiServer, token: &str) -> Option<UserInfo> {
    let signer = server.token_signer.as_ref()?;
    let claims = signer.verify(token)?;
    let now = jiff::Timestamp::now().as_second();
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|exp| exp < now)
    {
        return None;
    }
    if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
        return None;
    }
    let k = claims.get("kubernetes.io")?;
    let ns = k.get("namespace")?.as_str()?;
    let name = k.pointer("/serviceaccount/name")?.as_str()?;
    let uid = k.pointer("/serviceaccount/uid")?.as_str()?;
    let sa = server
        .cache
        .get(&format!("/registry/core/serviceaccounts/{ns}/{name}"))?;
    if rkube_api::meta::uid(&sa.value()) != Some(uid) {
        return None;
    }
    let mut user = UserInfo::new(
        &format!("system:serviceaccount:{ns}:{name}"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
        ],
    );
    user.uid = uid.to_string();
    if let Some(pod) = k.get("pod") {
        let pod_name = pod.get("name")?.as_str()?;
        let pod_uid = pod.get("uid")?.as_str()?;
        let live = server
            .cache
            .get(&format!("/registry/core/pods/{ns}/{pod_name}"))?;
        if rkube_api::meta::uid(&live.value()) != Some(pod_uid) {
            return None;
        }
        user.extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec![pod_name.to_string()],
        );
        user.extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![pod_uid.to_string()],
        );
    }
    Some(user.authenticated())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key() {
        let dir = std::env::temp_dir().join(format!("rkube-sa-{}", uuid::Uuid::new_v4()));
        let signer = TokenSigner::load_or_create(&dir).unwrap();
        let c = claims(
            "default",
            "default",
            "u1",
            &[ISSUER.to_string()],
            3600,
            None,
        );
        let token = signer.sign(&c);
        assert_eq!(
            signer.verify(&token).unwrap()["sub"],
            "system:serviceaccount:default:default"
        );
        let again = TokenSigner::load_or_create(&dir).unwrap();
        assert!(again.verify(&token).is_some());
        let other = TokenSigner::load_or_create(&dir.join("other")).unwrap();
        assert!(other.verify(&token).is_none());
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert!(signer.verify(&tampered).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
