//! Registry settings in the shape k3s users know (`registries.yaml`): mirrors per
//! registry and, per registry host, credentials and whether plain HTTP or unverified
//! TLS is allowed.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5001":
//!     auth: { username: rkube, password: secret }
//!   "registry.lan:5000":
//!     tls: { insecure_skip_verify: true }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

/// Errors reading registries.yaml.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        source: serde_yaml::Error,
    },
}

/// The whole registries.yaml.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct RegistriesConfig {
    /// Registry name (as in image references, `docker.io`, or `*` for all) → mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Registry host → settings for it.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// Mirrors of one registry, tried in order before the registry itself.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Mirror {
    /// Endpoints as URLs (`https://mirror.example`, `http://127.0.0.1:5000`).
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// Settings for one registry host.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct RegistryConfig {
    /// Credentials.
    #[serde(default)]
    pub auth: Option<RegistryAuthConfig>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<RegistryTls>,
    /// Reach this host over plain HTTP (an rkube addition; k3s says it through an
    /// `http://` mirror endpoint, which works here too).
    #[serde(default)]
    pub insecure_http: bool,
}

/// Credentials for a registry.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct RegistryAuthConfig {
    /// User name for basic auth (or the token flow).
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// `base64(user:password)`, as in Docker config files.
    #[serde(default)]
    pub auth: Option<String>,
    /// A bearer token used as is.
    #[serde(default)]
    pub identity_token: Option<String>,
}

/// TLS settings for a registry.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct RegistryTls {
    /// Accept any certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try a pull from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// Whether this is a mirror (else the registry itself).
    pub is_mirror: bool,
}

impl RegistriesConfig {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistriesConfig, RegistriesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(RegistriesError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(&text).map_err(|source| RegistriesError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Where to pull an image of `registry` from, in order: its mirrors (or the `*`
    /// mirrors), then the registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirrors = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        for url in mirrors.map(|m| m.endpoint.as_slice()).unwrap_or_default() {
            let (plain, rest) = if let Some(r) = url.strip_prefix("http://") {
                (true, r)
            } else {
                (false, url.strip_prefix("https://").unwrap_or(url))
            };
            let host = rest
                .trim_end_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            if host.is_empty() {
                continue;
            }
            let plain_http = plain || self.plain_http(&host);
            out.push(Endpoint {
                host,
                plain_http,
                is_mirror: true,
            });
        }
        let upstream = if registry == super::reference::DEFAULT_REGISTRY {
            "registry-1.docker.io".to_string()
        } else {
            registry.to_string()
        };
        if !out.iter().any(|e| e.host == upstream) {
            out.push(Endpoint {
                plain_http: self.plain_http(registry),
                host: upstream,
                is_mirror: false,
            });
        }
        out
    }

    /// Whether `host` is reached over plain HTTP: loopback registries always (as Docker
    /// and containerd allow), others when configured.
    pub fn plain_http(&self, host: &str) -> bool {
        super::reference::is_loopback_host(host)
            || self.configs.get(host).is_some_and(|c| c.insecure_http)
    }

    /// Settings for `host`, if any.
    pub fn config(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs.get(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first() {
        let c: RegistriesConfig = serde_yaml::from_str(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\", \"https://m.example/v2\"]\nconfigs:\n  reg.lan:5000:\n    insecure_http: true\n",
        )
        .unwrap();
        let e = c.endpoints("docker.io");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            Endpoint {
                host: "127.0.0.1:5000".into(),
                plain_http: true,
                is_mirror: true
            }
        );
        assert_eq!(
            e[1],
            Endpoint {
                host: "m.example".into(),
                plain_http: false,
                is_mirror: true
            }
        );
        assert_eq!(e[2].host, "registry-1.docker.io");
        assert!(c.endpoints("reg.lan:5000")[0].plain_http);
        assert!(!c.endpoints("quay.io")[0].plain_http);
        assert!(c.endpoints("localhost:5000")[0].plain_http);
    }
}
