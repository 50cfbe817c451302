//! Events as `kubectl describe` shows them (core/v1 Events, a repeat bumps the
//! count of the first). Recording never slows the caller: events go through a
//! bounded channel to a background writer, which writes at most `EVENTS_PER_SECOND`
//! (upstream's components send events through a client limited to 50 requests a
//! second), and they are dropped when the channel is full, as upstream's
//! broadcaster does under load: scheduling 10,000 pods must not wait for 10,000
//! "Scheduled" events.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

/// How many events may wait for the writer.
const QUEUE: usize = 1024;
/// How many distinct events are remembered for counting repeats.
const REMEMBERED: usize = 4096;
/// The steady rate of event writes.
const EVENTS_PER_SECOND: f64 = 50.0;
/// Writes allowed at once after a quiet time.
const EVENT_BURST: f64 = 100.0;

/// One event to record.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub regarding: ObjectReference,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: String,
    pub action: &'static str,
    pub message: String,
}

/// A handle that records events as one component (`default-scheduler`).
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<EventRecord>,
}

impl EventRecorder {
    /// Starts the background writer.
    pub fn start(client: Client, component: &str, instance: &str) -> EventRecorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(
            client,
            component.to_string(),
            instance.to_string(),
            rx,
        ));
        EventRecorder { tx }
    }

    /// Queues an event; drops it if the writer is far behind.
    pub fn record(&self, e: EventRecord) {
        if self.tx.try_send(e).is_err() {
            tracing::debug!("event queue full: event dropped");
        }
    }
}

/// A reference to a pod for events.
pub fn pod_reference(pod: &k8s_openapi::api::core::v1::Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// A unique event name, as upstream: `<object>.<hex nanoseconds>`.
fn event_name(object: &str) -> String {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    format!("{object}.{:x}", nanos as u128)
}

async fn writer(
    client: Client,
    component: String,
    instance: String,
    mut rx: mpsc::Receiver<EventRecord>,
) {
    // (object uid, reason, message) -> (event namespace, name, count)
    let mut seen: HashMap<(String, String, String), (String, String, i32)> = HashMap::new();
    let client = Arc::new(client);
    let mut tokens = EVENT_BURST;
    let mut refilled = tokio::time::Instant::now();
    while let Some(e) = rx.recv().await {
        // A token bucket: wait for a token rather than write faster.
        let at = tokio::time::Instant::now();
        tokens = (tokens + at.duration_since(refilled).as_secs_f64() * EVENTS_PER_SECOND)
            .min(EVENT_BURST);
        refilled = at;
        if tokens < 1.0 {
            let wait = (1.0 - tokens) / EVENTS_PER_SECOND;
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
            tokens = 1.0;
            refilled = tokio::time::Instant::now();
        }
        tokens -= 1.0;
        let ns = e
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (
            e.regarding.uid.clone().unwrap_or_default(),
            e.reason.clone(),
            e.message.clone(),
        );
        let api: Api<Event> = Api::namespaced((*client).clone(), &ns);
        if let Some((ev_ns, name, count)) = seen.get_mut(&key) {
            let patch = json!({"count": *count + 1, "lastTimestamp": now()});
            let api: Api<Event> = Api::namespaced((*client).clone(), ev_ns);
            if api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                *count += 1;
                continue;
            }
            // The event expired or was deleted: record it anew.
            seen.remove(&key);
        }
        let name = event_name(e.regarding.name.as_deref().unwrap_or("object"));
        let t = now();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: e.regarding,
            reason: Some(e.reason),
            message: Some(e.message),
            type_: Some(e.type_.into()),
            action: Some(e.action.into()),
            source: Some(EventSource {
                component: Some(component.clone()),
                host: None,
            }),
            reporting_component: Some(component.clone()),
            reporting_instance: Some(instance.clone()),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            count: Some(1),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                if seen.len() >= REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, (ns, name, 1));
            }
            Err(err) => tracing::debug!(error = %err, "recording an event"),
        }
    }
}
