//! Image pulls for containers: pull policies (Always, IfNotPresent, Never), credentials
//! from `imagePullSecrets`, one pull at a time per image, and back-off after failures
//! (ErrImagePull, then ImagePullBackOff), as upstream's image manager does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use rkube_runtime::Runtime;
use rkube_runtime::image::reference::ImageRef;
use rkube_runtime::image::{Image, PullAuth};
use serde_json::Value;

use crate::backoff::Backoff;

/// Why an image is not ready, as the container's waiting reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagePullError {
    /// The reference does not parse.
    #[error("{0}")]
    InvalidImageName(String),
    /// Policy Never and the image is absent.
    #[error("{0}")]
    ErrImageNeverPull(String),
    /// A pull failed just now.
    #[error("{0}")]
    ErrImagePull(String),
    /// Waiting before pulling again.
    #[error("{0}")]
    ImagePullBackOff(String),
}

impl ImagePullError {
    /// The waiting reason kubectl shows.
    pub fn reason(&self) -> &'static str {
        match self {
            ImagePullError::InvalidImageName(_) => "InvalidImageName",
            ImagePullError::ErrImageNeverPull(_) => "ErrImageNeverPull",
            ImagePullError::ErrImagePull(_) => "ErrImagePull",
            ImagePullError::ImagePullBackOff(_) => "ImagePullBackOff",
        }
    }
}

/// What happened, for the pod's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// The image was there already.
    Present,
    /// Pulled now, in this long.
    Pulled { took: Duration, size: u64 },
}

/// The image service of the kubelet.
pub struct ImageManager {
    runtime: Arc<dyn Runtime>,
    /// One pull per image at a time; others wait and then find it present.
    pulls: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    backoff: Mutex<Backoff>,
}

/// The effective pull policy: the given one, else Always for `:latest` or untagged
/// images and IfNotPresent otherwise (the API server usually defaults it already).
pub fn pull_policy(image: &str, given: Option<&str>) -> String {
    if let Some(p) = given.filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    match image.parse::<ImageRef>() {
        Ok(r) if r.digest.is_some() => "IfNotPresent".into(),
        Ok(r) if r.tag.as_deref().is_some_and(|t| t != "latest") => "IfNotPresent".into(),
        _ => "Always".into(),
    }
}

/// Normalises a registry key of a docker config (`https://index.docker.io/v1/`,
/// `http://127.0.0.1:5001`, `reg.example/path`) to `host[:port]` and a path prefix.
fn registry_key(key: &str) -> (String, String) {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    let path = path.trim_end_matches('/');
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    (host.to_string(), path.to_string())
}

/// The credentials in pull secrets that apply to `image`, in order.
pub fn credentials_for(image: &str, secrets: &[Secret]) -> Vec<PullAuth> {
    let Ok(r) = image.parse::<ImageRef>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in secrets {
        let data = s.data.as_ref();
        let get = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.clone());
        let auths: Value = if let Some(b) = get(".dockerconfigjson") {
            serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v.get("auths").cloned())
                .unwrap_or_default()
        } else if let Some(b) = get(".dockercfg") {
            serde_json::from_slice(&b).unwrap_or_default()
        } else {
            continue;
        };
        let Some(auths) = auths.as_object() else {
            continue;
        };
        for (key, entry) in auths {
            let (host, path) = registry_key(key);
            if host != r.registry || !(path.is_empty() || r.repository.starts_with(&path)) {
                continue;
            }
            let field = |n: &str| entry.get(n).and_then(Value::as_str).map(str::to_string);
            let (mut user, mut pass) = (field("username"), field("password"));
            if let Some(a) = field("auth")
                && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(a.trim())
                && let Ok(text) = String::from_utf8(raw)
                && let Some((u, p)) = text.split_once(':')
            {
                user.get_or_insert_with(|| u.to_string());
                pass.get_or_insert_with(|| p.to_string());
            }
            if let Some(tok) = field("registrytoken").or_else(|| field("identitytoken"))
                && user.is_none()
            {
                out.push(PullAuth::Bearer(tok));
                continue;
            }
            if let (Some(username), Some(password)) = (user, pass) {
                out.push(PullAuth::Basic { username, password });
            }
        }
    }
    out
}

impl ImageManager {
    /// An image manager over `runtime`.
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        ImageManager {
            runtime,
            pulls: Default::default(),
            backoff: Mutex::new(Backoff::crash_loop()),
        }
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure `image` is present according to `policy`, pulling with `creds`
    /// (tried in order; none means registries.yaml or anonymous). `key` scopes the
    /// back-off (upstream keys it by pod and image).
    pub async fn ensure(
        &self,
        key: &str,
        image: &str,
        policy: &str,
        creds: &[PullAuth],
    ) -> Result<(Image, PullOutcome), ImagePullError> {
        if let Err(e) = image.parse::<ImageRef>() {
            return Err(ImagePullError::InvalidImageName(format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {e}"
            )));
        }
        let present = self.runtime.image_status(image).await.ok().flatten();
        let must_pull = match policy {
            "Always" => true,
            "Never" => false,
            _ => present.is_none(),
        };
        if !must_pull {
            return match present {
                Some(img) => Ok((img, PullOutcome::Present)),
                None => Err(ImagePullError::ErrImageNeverPull(format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                ))),
            };
        }
        let backoff_key = format!("{key}/{image}");
        if self
            .backoff()
            .wait_left_since_update(&backoff_key, Timestamp::now())
            .is_some()
        {
            return Err(ImagePullError::ImagePullBackOff(format!(
                "Back-off pulling image \"{image}\""
            )));
        }
        let lock = {
            let mut pulls = self.pulls.lock().await;
            pulls.entry(image.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        // Another pod may have pulled it while this one waited.
        if policy != "Always"
            && let Ok(Some(img)) = self.runtime.image_status(image).await
        {
            return Ok((img, PullOutcome::Present));
        }
        let started = Instant::now();
        let mut last_err = None;
        let attempts: Vec<Option<&PullAuth>> = if creds.is_empty() {
            vec![None]
        } else {
            creds.iter().map(Some).collect()
        };
        for auth in attempts {
            match self.runtime.pull_image(image, auth).await {
                Ok(img) => {
                    self.backoff().reset(&backoff_key);
                    let size = img.size;
                    return Ok((
                        img,
                        PullOutcome::Pulled {
                            took: started.elapsed(),
                            size,
                        },
                    ));
                }
                Err(e) => last_err = Some(e),
            }
        }
        self.backoff().next(&backoff_key, Timestamp::now());
        let e = last_err.map(|e| e.to_string()).unwrap_or_default();
        Err(ImagePullError::ErrImagePull(format!(
            "failed to pull and unpack image \"{image}\": {e}"
        )))
    }

    /// Forgets back-off entries that have been quiet long enough.
    pub fn gc(&self) {
        self.backoff().gc(Timestamp::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(kind: &str, body: Value) -> Secret {
        let raw = serde_json::to_vec(&body).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {kind: b64}})).unwrap()
    }

    #[test]
    fn policies() {
        assert_eq!(pull_policy("busybox", None), "Always");
        assert_eq!(pull_policy("busybox:latest", None), "Always");
        assert_eq!(pull_policy("busybox:1", None), "IfNotPresent");
        assert_eq!(pull_policy("busybox:1", Some("Never")), "Never");
    }

    #[test]
    fn credentials_match_the_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("rkube:rkube-test");
        let s = secret(
            ".dockerconfigjson",
            json!({"auths": {
                "http://127.0.0.1:5001": {"auth": auth},
                "https://index.docker.io/v1/": {"username": "u", "password": "p"},
                "other.example": {"username": "x", "password": "y"}}}),
        );
        assert_eq!(
            credentials_for(
                "127.0.0.1:5001/rkube-test/busybox:1",
                std::slice::from_ref(&s)
            ),
            vec![PullAuth::Basic {
                username: "rkube".into(),
                password: "rkube-test".into()
            }]
        );
        assert_eq!(
            credentials_for("nginx", std::slice::from_ref(&s)),
            vec![PullAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }]
        );
        assert!(credentials_for("127.0.0.1:5000/x:1", &[s]).is_empty());
        let old = secret(
            ".dockercfg",
            json!({"127.0.0.1:5001": {"username": "a", "password": "b"}}),
        );
        assert_eq!(credentials_for("127.0.0.1:5001/x:1", &[old]).len(), 1);
    }
}
