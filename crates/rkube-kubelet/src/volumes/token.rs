//! ServiceAccount tokens for projected volumes: requested through the TokenRequest
//! API, bound to the pod, cached, and renewed once 80% of their life has passed (or
//! after 24 hours), as upstream's token manager does.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::Client;
use kube::api::{Api, PostParams};

use super::VolumeError;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    pod_uid: String,
    audience: String,
    expiration: i64,
}

#[derive(Clone, Debug)]
struct Cached {
    token: String,
    issued: Timestamp,
    expires: Timestamp,
}

impl Cached {
    fn needs_refresh(&self, now: Timestamp) -> bool {
        let life = self.expires.as_second() - self.issued.as_second();
        let age = now.as_second() - self.issued.as_second();
        age * 10 > life * 8 || age > 24 * 3600
    }
}

/// Requests and caches projected ServiceAccount tokens.
pub struct TokenManager {
    client: Client,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl TokenManager {
    /// A token manager using `client` for TokenRequests.
    pub fn new(client: Client) -> Self {
        TokenManager {
            client,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A valid token for `pod` as `projection` asks.
    pub async fn token(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, VolumeError> {
        let spec = pod.spec.as_ref();
        let key = Key {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            audience: projection.audience.clone().unwrap_or_default(),
            expiration: projection.expiration_seconds.unwrap_or(3600),
        };
        let now = Timestamp::now();
        if let Some(c) = self.cache().get(&key)
            && !c.needs_refresh(now)
        {
            return Ok(c.token.clone());
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if key.audience.is_empty() {
                    Vec::new()
                } else {
                    vec![key.audience.clone()]
                },
                expiration_seconds: Some(key.expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.namespace);
        let resp: TokenRequest = api
            .create_subresource(
                "token",
                &key.service_account,
                &PostParams::default(),
                &request,
            )
            .await
            .map_err(|e| {
                VolumeError::Source(format!(
                    "failed to fetch token: {}",
                    match e {
                        kube::Error::Api(s) => s.message,
                        e => e.to_string(),
                    }
                ))
            })?;
        let status = resp.status.ok_or_else(|| {
            VolumeError::Source("failed to fetch token: the TokenRequest has no status".into())
        })?;
        let expires = status.expiration_timestamp.0;
        let cached = Cached {
            token: status.token.clone(),
            issued: now,
            expires,
        };
        self.cache().insert(key, cached);
        Ok(status.token)
    }

    /// Forgets the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        self.cache().retain(|k, _| k.pod_uid != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_after_eighty_percent() {
        let issued = Timestamp::from_second(1_000_000).unwrap();
        let c = Cached {
            token: String::new(),
            issued,
            expires: Timestamp::from_second(1_000_000 + 3600).unwrap(),
        };
        assert!(!c.needs_refresh(Timestamp::from_second(1_000_000 + 2880).unwrap()));
        assert!(c.needs_refresh(Timestamp::from_second(1_000_000 + 2881).unwrap()));
    }
}
