//! The pods of this node as the streaming server looks them up (by namespace and
//! name): each pod worker publishes its sandbox and the current and previous
//! instance of every container. Implements [`PodLookup`].

use std::collections::HashMap;
use std::sync::RwLock;

use crate::lookup::{ContainerRef, LookupError, PodLookup, SandboxRef};

/// One container of a pod entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEntry {
    /// The container's name in the pod spec.
    pub name: String,
    /// Its newest instance, if it was ever created.
    pub current: Option<ContainerRef>,
    /// Whether that instance runs.
    pub running: bool,
}

/// What the registry knows of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    /// The pod's UID.
    pub uid: String,
    /// Its sandbox.
    pub sandbox: Option<SandboxRef>,
    /// Its containers (init containers first), in spec order.
    pub containers: Vec<ContainerEntry>,
    /// The `kubectl.kubernetes.io/default-container` annotation.
    pub default_container: Option<String>,
    /// Names of the regular containers (for the ambiguity message).
    pub regular: Vec<String>,
}

/// The pods of this node, by namespace and name.
#[derive(Default)]
pub struct PodRegistry {
    pods: RwLock<HashMap<(String, String), PodEntry>>,
}

impl PodRegistry {
    /// Publishes (or replaces) a pod's entry.
    pub fn publish(&self, namespace: &str, name: &str, entry: PodEntry) {
        let mut m = self.pods.write().unwrap_or_else(|e| e.into_inner());
        m.insert((namespace.to_string(), name.to_string()), entry);
    }

    /// Removes a pod's entry if it still belongs to `uid`.
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut m = self.pods.write().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if m.get(&key).is_some_and(|e| e.uid == uid) {
            m.remove(&key);
        }
    }

    fn get(&self, namespace: &str, pod: &str) -> Result<PodEntry, LookupError> {
        let m = self.pods.read().unwrap_or_else(|e| e.into_inner());
        m.get(&(namespace.to_string(), pod.to_string()))
            .cloned()
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            })
    }
}

impl PodLookup for PodRegistry {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerRef, LookupError> {
        let e = self.get(namespace, pod)?;
        let name = match container.filter(|c| !c.is_empty()) {
            Some(c) => c.to_string(),
            None => match (&e.default_container, e.regular.as_slice()) {
                (Some(d), _) => d.clone(),
                (None, [only]) => only.clone(),
                _ => {
                    return Err(LookupError::Ambiguous {
                        pod: pod.to_string(),
                        choices: e.regular.join(" "),
                    });
                }
            },
        };
        let c = e
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| LookupError::ContainerNotFound {
                pod: pod.to_string(),
                container: name.clone(),
            })?;
        c.current.clone().ok_or_else(|| LookupError::NotRunning {
            pod: pod.to_string(),
            container: name,
        })
    }

    fn sandbox(&self, namespace: &str, pod: &str) -> Result<SandboxRef, LookupError> {
        self.get(namespace, pod)?
            .sandbox
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cref(id: &str) -> ContainerRef {
        ContainerRef {
            id: id.into(),
            log_path: PathBuf::from(format!("/logs/{id}")),
            previous_log_path: None,
            tty: false,
            stdin: false,
        }
    }

    #[test]
    fn lookups() {
        let r = PodRegistry::default();
        r.publish(
            "ns",
            "p",
            PodEntry {
                uid: "u".into(),
                sandbox: None,
                containers: vec![
                    ContainerEntry {
                        name: "a".into(),
                        current: Some(cref("1")),
                        running: true,
                    },
                    ContainerEntry {
                        name: "b".into(),
                        current: None,
                        running: false,
                    },
                ],
                default_container: None,
                regular: vec!["a".into(), "b".into()],
            },
        );
        assert_eq!(r.container("ns", "p", Some("a")).unwrap().id, "1");
        assert!(matches!(
            r.container("ns", "p", None),
            Err(LookupError::Ambiguous { .. })
        ));
        assert!(matches!(
            r.container("ns", "p", Some("b")),
            Err(LookupError::NotRunning { .. })
        ));
        assert!(matches!(
            r.container("ns", "p", Some("z")),
            Err(LookupError::ContainerNotFound { .. })
        ));
        assert!(matches!(
            r.container("ns", "q", None),
            Err(LookupError::PodNotFound { .. })
        ));
        r.remove("ns", "p", "other-uid");
        assert!(r.container("ns", "p", Some("a")).is_ok());
        r.remove("ns", "p", "u");
        assert!(r.container("ns", "p", Some("a")).is_err());
    }
}
