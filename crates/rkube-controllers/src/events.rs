//! Events as `kubectl describe` shows them: core/v1 Events written by one background
//! task per controller manager, with upstream's correlation (a repeat of the same
//! event raises `count` and `lastTimestamp` of the existing object; after ten
//! different messages of one reason for one object in ten minutes, they are combined;
//! a token bucket per object keeps a hot loop from flooding the API).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::clock::Clock;

/// Distinct messages of one reason per object before they are combined.
const MAX_SIMILAR: usize = 10;
/// The window in which similar events are counted.
const SIMILAR_WINDOW: SignedDuration = SignedDuration::from_secs(600);
/// Events remembered for counting repeats.
const CACHE_SIZE: usize = 4096;
/// The spam filter: a burst of 25 events per object, then one per five minutes.
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Pending {
    component: Arc<str>,
    host: Option<Arc<str>>,
    involved: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
    /// When it happened (read when recorded, not when written).
    at: Timestamp,
}

/// Records events for one component (`replicaset-controller`, ...).
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::UnboundedSender<Pending>,
    component: Arc<str>,
    host: Option<Arc<str>>,
    clock: Arc<dyn Clock>,
}

impl EventRecorder {
    /// Records an event about an object (written in the background).
    pub fn record(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let _ = self.tx.send(Pending {
            component: self.component.clone(),
            host: self.host.clone(),
            involved,
            kind,
            reason: reason.to_string(),
            message: message.into(),
            at: self.clock.now(),
        });
    }

    pub fn normal<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(obj.object_ref(&()), EventType::Normal, reason, message);
    }

    pub fn warning<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(obj.object_ref(&()), EventType::Warning, reason, message);
    }
}

/// The task that writes the events of every recorder of a controller manager.
pub struct EventBroadcaster {
    tx: mpsc::UnboundedSender<Pending>,
    clock: Arc<dyn Clock>,
    task: AbortHandle,
}

impl Drop for EventBroadcaster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventBroadcaster {
    pub fn start(client: Client, clock: Arc<dyn Clock>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let sink_clock = clock.clone();
        let task = tokio::spawn(async move {
            let mut sink = EventSink::new(client, sink_clock);
            while let Some(p) = rx.recv().await {
                sink.write(p).await;
            }
        })
        .abort_handle();
        EventBroadcaster { tx, clock, task }
    }

    /// A recorder whose events carry `source.component = component`.
    pub fn recorder(&self, component: &str) -> EventRecorder {
        EventRecorder {
            tx: self.tx.clone(),
            component: component.into(),
            host: None,
            clock: self.clock.clone(),
        }
    }
}

/// What identifies "the same event" (upstream's event key without the message).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AggregateKey {
    component: String,
    host: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
    event_type: &'static str,
    reason: String,
}

struct Similar {
    messages: HashSet<String>,
    last: Timestamp,
}

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    first: Timestamp,
}

struct Bucket {
    tokens: f64,
    at: Timestamp,
}

struct EventSink {
    client: Client,
    clock: Arc<dyn Clock>,
    similar: HashMap<AggregateKey, Similar>,
    seen: HashMap<(AggregateKey, String), Seen>,
    order: VecDeque<(AggregateKey, String)>,
    buckets: HashMap<(String, String, String, String), Bucket>,
    last_nanos: i128,
}

impl EventSink {
    fn new(client: Client, clock: Arc<dyn Clock>) -> Self {
        EventSink {
            client,
            clock,
            similar: HashMap::new(),
            seen: HashMap::new(),
            order: VecDeque::new(),
            buckets: HashMap::new(),
            last_nanos: 0,
        }
    }

    /// Whether the object's token bucket lets one more event through.
    fn allow(&mut self, key: &AggregateKey, now: Timestamp) -> bool {
        let b = self
            .buckets
            .entry((
                key.component.clone(),
                key.kind.clone(),
                key.namespace.clone(),
                key.uid.clone() + &key.name,
            ))
            .or_insert(Bucket {
                tokens: SPAM_BURST,
                at: now,
            });
        let elapsed = now.duration_since(b.at).as_secs_f64().max(0.0);
        b.tokens = (b.tokens + elapsed * SPAM_REFILL_PER_SEC).min(SPAM_BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn write(&mut self, p: Pending) {
        let now = p.at;
        let io = &p.involved;
        let key = AggregateKey {
            component: p.component.to_string(),
            host: p.host.as_deref().unwrap_or_default().to_string(),
            kind: io.kind.clone().unwrap_or_default(),
            namespace: io.namespace.clone().unwrap_or_default(),
            name: io.name.clone().unwrap_or_default(),
            uid: io.uid.clone().unwrap_or_default(),
            api_version: io.api_version.clone().unwrap_or_default(),
            event_type: p.kind.as_str(),
            reason: p.reason.clone(),
        };
        if !self.allow(&key, now) {
            return;
        }
        // Combine similar events.
        let sim = self.similar.entry(key.clone()).or_insert(Similar {
            messages: HashSet::new(),
            last: now,
        });
        if now.duration_since(sim.last) > SIMILAR_WINDOW {
            sim.messages.clear();
        }
        sim.last = now;
        sim.messages.insert(p.message.clone());
        let (message, local) = if sim.messages.len() < MAX_SIMILAR {
            (p.message.clone(), p.message.clone())
        } else {
            if let Some(any) = sim.messages.iter().next().cloned() {
                sim.messages.remove(&any);
            }
            (
                format!("(combined from similar events): {}", p.message),
                String::new(),
            )
        };
        let seen_key = (key.clone(), local);
        let namespace = match io.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "default".to_string(),
        };
        if let Some(seen) = self.seen.get(&seen_key) {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &seen.namespace);
            let count = seen.count + 1;
            let patch = json!({
                "count": count,
                "lastTimestamp": Time(now),
                "message": message,
            });
            match api
                .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Some(s) = self.seen.get_mut(&seen_key) {
                        s.count = count;
                    }
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // Expired or deleted: start a new object with the running count.
                    let first = seen.first;
                    self.create(&p, &key, seen_key, &namespace, &message, now, first, count)
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::debug!("updating event {}: {e}", seen.name);
                    return;
                }
            }
        }
        self.create(&p, &key, seen_key, &namespace, &message, now, now, 1)
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &mut self,
        p: &Pending,
        key: &AggregateKey,
        seen_key: (AggregateKey, String),
        namespace: &str,
        message: &str,
        now: Timestamp,
        first: Timestamp,
        count: i32,
    ) {
        let nanos = now.as_nanosecond().max(self.last_nanos + 1);
        self.last_nanos = nanos;
        let name = format!("{}.{:x}", key.name, nanos);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            involved_object: p.involved.clone(),
            reason: Some(p.reason.clone()),
            message: Some(message.to_string()),
            source: Some(EventSource {
                component: Some(p.component.to_string()),
                host: p.host.as_deref().map(str::to_string),
            }),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(now)),
            count: Some(count),
            type_: Some(p.kind.as_str().to_string()),
            reporting_component: Some(p.component.to_string()),
            reporting_instance: Some(p.host.as_deref().unwrap_or_default().to_string()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        for attempt in 0..3 {
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    self.remember(
                        seen_key,
                        Seen {
                            name,
                            namespace: namespace.to_string(),
                            count,
                            first,
                        },
                    );
                    return;
                }
                // The namespace is going away: nothing to tell.
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => return,
                Err(e) => {
                    tracing::debug!("writing event {name} (attempt {attempt}): {e}");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }

    fn remember(&mut self, key: (AggregateKey, String), seen: Seen) {
        if self.seen.insert(key.clone(), seen).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CACHE_SIZE {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.similar.len() > CACHE_SIZE {
            let now = self.clock.now();
            self.similar
                .retain(|_, s| now.duration_since(s.last) <= SIMILAR_WINDOW);
        }
    }
}
