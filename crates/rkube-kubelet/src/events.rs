//! Events about pods and the node, as `kubectl describe` shows them (Pulling, Pulled,
//! Created, Started, Killing, Unhealthy, BackOff, FailedMount...). A repeated event
//! bumps the count of the first one instead of making a new object, as upstream's
//! event correlator does. Sent in the background: the kubelet never waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

#[derive(Clone)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
}

/// Records events as the kubelet of one node.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    host: String,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

/// The reference of a pod (and, optionally, one of its containers) for events.
pub fn pod_ref(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|ics| ics.iter().any(|ic| ic.name == c));
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        }),
    }
}

impl EventRecorder {
    /// A recorder for the kubelet of node `host`.
    pub fn new(client: Client, host: &str) -> Self {
        EventRecorder {
            client,
            host: host.to_string(),
            seen: Arc::default(),
        }
    }

    /// Records an event about `object`.
    pub fn record(&self, object: ObjectReference, ty: EventType, reason: &str, message: &str) {
        let ns = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = format!(
            "{}/{}/{}/{}/{reason}/{message}",
            object.uid.as_deref().unwrap_or(""),
            object.name.as_deref().unwrap_or(""),
            object.field_path.as_deref().unwrap_or(""),
            ns
        );
        let now = Time(jiff::Timestamp::now());
        let previous = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 4096 {
                seen.clear();
            }
            match seen.get_mut(&key) {
                Some(s) => {
                    s.count += 1;
                    Some(s.clone())
                }
                None => {
                    let name = format!(
                        "{}.{:016x}",
                        object.name.as_deref().unwrap_or("event"),
                        rand::random::<u64>()
                    );
                    seen.insert(
                        key.clone(),
                        Seen {
                            namespace: ns.clone(),
                            name,
                            count: 1,
                        },
                    );
                    None
                }
            }
        };
        let client = self.client.clone();
        let seen = self.seen.clone();
        let ty = match ty {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        if let Some(s) = previous {
            tokio::spawn(async move {
                let api: Api<Event> = Api::namespaced(client, &s.namespace);
                let patch = json!({"count": s.count, "lastTimestamp": now});
                let _ = api
                    .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            });
            return;
        }
        let name = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(ty.to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        tokio::spawn(async move {
            let api: Api<Event> = Api::namespaced(client, &ns);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "recording an event failed");
            }
        });
    }

    /// Records an event about a pod (or one of its containers).
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        ty: EventType,
        reason: &str,
        message: &str,
    ) {
        self.record(pod_ref(pod, container), ty, reason, message);
    }
}
