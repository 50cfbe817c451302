//! The EndpointSlice controller: for every Service with a selector, EndpointSlices
//! (labelled `kubernetes.io/service-name` and managed-by
//! `endpointslice-controller.k8s.io`, owned by the Service) holding its pods per
//! address family and set of resolved ports, at most 100 endpoints each, with the
//! ready/serving/terminating conditions, nodeName, zone, hostname and targetRef.
//! Endpoints stay in the slice they are in while they exist, so updates touch as
//! few slices as possible; a Service with no endpoints keeps one empty placeholder.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::controller_ref;
use crate::endpoint_util::*;
use crate::informer::{Change, Informer, feed};
use crate::manager::ControllerContext;
use crate::pod_util::{self, object_key, split_key};
use crate::queue::WorkQueue;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice (upstream's default `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Errors of the EndpointSlice controller.
#[derive(Debug, thiserror::Error)]
pub enum EndpointSliceError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

struct EndpointSliceReconciler {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
    nodes: Arc<Informer<Node>>,
    tracker: SliceTracker,
}

/// What this controller last wrote per Service: a sync waits until the cache shows
/// it, so a slice just created is never created twice (slices have generated
/// names, so the API cannot refuse the duplicate).
#[derive(Default)]
struct SliceTracker {
    /// Service key → slice name → the resourceVersion written (`None`: deleted),
    /// and when.
    written: std::sync::Mutex<HashMap<String, Written>>,
}

/// Slice name → the resourceVersion written (`None`: deleted), and when.
type Written = HashMap<String, (Option<u64>, Instant)>;

/// A write the cache has not shown for this long was overtaken (the slice was
/// deleted by someone else meanwhile): stop waiting for it.
const TRACK_FOR: Duration = Duration::from_secs(10);

fn rv(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

impl SliceTracker {
    fn record(&self, service: &str, slice: &str, written: Option<u64>) {
        self.written
            .lock()
            .expect("tracker lock")
            .entry(service.to_string())
            .or_default()
            .insert(slice.to_string(), (written, Instant::now()));
    }

    /// Whether the cache is behind our writes for this Service; forgets the writes
    /// it has caught up with.
    fn stale(&self, service: &str, cached: &[Arc<EndpointSlice>]) -> bool {
        let mut all = self.written.lock().expect("tracker lock");
        let Some(mine) = all.get_mut(service) else {
            return false;
        };
        mine.retain(|name, (written, at)| {
            if at.elapsed() > TRACK_FOR {
                return false;
            }
            let seen = cached
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match (written, seen) {
                (None, None) => false,
                (None, Some(_)) => true,
                (Some(_), None) => true,
                (Some(w), Some(s)) => rv(s).is_some_and(|r| r < *w),
            }
        });
        let stale = !mine.is_empty();
        if !stale {
            all.remove(service);
        }
        stale
    }

    fn forget(&self, service: &str) {
        self.written.lock().expect("tracker lock").remove(service);
    }
}

fn service_of_slice(s: &EndpointSlice) -> Option<String> {
    let labels = s.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let svc = labels.get(SERVICE_NAME_LABEL)?;
    Some(pod_util::key(s.metadata.namespace.as_deref(), Some(svc)))
}

async fn run(ctx: ControllerContext) {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let nodes = ctx.informers.get::<Node>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let svc_feed = feed(services.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } => Some(object_key(new.as_ref())),
        Change::Deleted(s) => Some(object_key(s.as_ref())),
    });
    let s = services.clone();
    let pod_feed = feed(pods.subscribe(), queue.clone(), move |c| {
        services_for_change(&s, &c)
    });
    let slice_feed = feed(slices.subscribe(), queue.clone(), |c| match c {
        Change::Applied { old: Some(_), new } => service_of_slice(&new),
        Change::Deleted(s) => service_of_slice(&s),
        _ => None,
    });
    services.synced().await;
    pods.synced().await;
    slices.synced().await;
    nodes.synced().await;
    let ctrl = Arc::new(EndpointSliceReconciler {
        client: ctx.client.clone(),
        services,
        pods,
        slices,
        nodes,
        tracker: SliceTracker::default(),
    });
    let workers = queue.run(ctx.config.workers, "endpointslice", move |key| {
        let ctrl = ctrl.clone();
        async move { ctrl.sync(&key).await }
    });
    futures::join!(svc_feed, pod_feed, slice_feed, workers);
}

/// Slices group endpoints by address type and ports.
type GroupKey = (
    String,
    Vec<(Option<String>, i32, Option<String>, Option<String>)>,
);

fn group_of(slice: &EndpointSlice) -> GroupKey {
    let mut ports: Vec<_> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone(),
                p.port.unwrap_or(0),
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    ports.sort();
    (slice.address_type.clone(), ports)
}

fn ports_of(key: &GroupKey) -> Vec<EndpointPort> {
    key.1
        .iter()
        .map(|(name, port, protocol, app)| EndpointPort {
            name: name.clone(),
            port: Some(*port),
            protocol: protocol.clone(),
            app_protocol: app.clone(),
        })
        .collect()
}

/// Which endpoint this is, across updates.
fn endpoint_key(e: &Endpoint) -> (String, Option<String>) {
    (
        e.addresses.first().cloned().unwrap_or_default(),
        e.target_ref.as_ref().and_then(|r| r.uid.clone()),
    )
}

fn family(ip: &str) -> &'static str {
    if ip.contains(':') { "IPv6" } else { "IPv4" }
}

/// A planned slice: an existing one (to keep, update or delete) or a new one.
struct Planned {
    existing: Option<Arc<EndpointSlice>>,
    group: GroupKey,
    endpoints: Vec<Endpoint>,
}

/// Places the desired endpoints of one group into slices: endpoints stay where they
/// are, new ones fill free room, then new slices.
fn plan_group(
    group: &GroupKey,
    existing: Vec<Arc<EndpointSlice>>,
    desired: Vec<Endpoint>,
) -> Vec<Planned> {
    let mut want: HashMap<(String, Option<String>), Endpoint> = desired
        .iter()
        .map(|e| (endpoint_key(e), e.clone()))
        .collect();
    let mut planned: Vec<Planned> = existing
        .into_iter()
        .map(|s| {
            let endpoints = s
                .endpoints
                .iter()
                .filter_map(|e| want.remove(&endpoint_key(e)))
                .collect();
            Planned {
                existing: Some(s),
                group: group.clone(),
                endpoints,
            }
        })
        .collect();
    let mut rest: Vec<Endpoint> = desired
        .into_iter()
        .filter(|e| want.contains_key(&endpoint_key(e)))
        .collect();
    for p in planned.iter_mut().filter(|p| !p.endpoints.is_empty()) {
        let room = MAX_ENDPOINTS.saturating_sub(p.endpoints.len());
        let take = room.min(rest.len());
        p.endpoints.extend(rest.drain(..take));
    }
    for p in planned.iter_mut().filter(|p| p.endpoints.is_empty()) {
        let take = MAX_ENDPOINTS.min(rest.len());
        p.endpoints.extend(rest.drain(..take));
    }
    while !rest.is_empty() {
        let take = MAX_ENDPOINTS.min(rest.len());
        planned.push(Planned {
            existing: None,
            group: group.clone(),
            endpoints: rest.drain(..take).collect(),
        });
    }
    planned
}

impl EndpointSliceReconciler {
    /// The slices this controller manages for a Service.
    fn owned_slices(&self, ns: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
        let key = pod_util::key(Some(ns), Some(name));
        let mut s: Vec<Arc<EndpointSlice>> = self
            .slices
            .list_namespace(ns)
            .into_iter()
            .filter(|s| service_of_slice(s).as_deref() == Some(key.as_str()))
            .collect();
        s.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        s
    }

    fn endpoint(&self, pod: &Pod, svc: &Service, ip: String) -> Endpoint {
        let publish = publish_not_ready(svc);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = publish || pod_util::is_ready(pod);
        let ready = serving && (publish || !terminating);
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = node_name
            .as_deref()
            .and_then(|n| self.nodes.get(None, n))
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned());
        Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, svc),
            node_name,
            target_ref: Some(target_ref(pod)),
            zone,
            ..Default::default()
        }
    }

    /// The endpoints the Service should have, by group.
    fn desired(
        &self,
        svc: &Service,
        selector: &rkube_api::selector::LabelSelector,
    ) -> BTreeMap<GroupKey, Vec<Endpoint>> {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let spec = svc.spec.clone().unwrap_or_default();
        let families = spec
            .ip_families
            .clone()
            .unwrap_or_else(|| vec!["IPv4".into()]);
        let service_ports = spec.ports.clone().unwrap_or_default();
        let mut out: BTreeMap<GroupKey, Vec<Endpoint>> = BTreeMap::new();
        let mut pods = self.pods.list_namespace(ns);
        pods.sort_by_key(|p| pod_ip(p));
        for pod in pods {
            if !pod_util::matches(selector, pod.metadata.labels.as_ref())
                || !should_be_in_endpoints(&pod, true)
            {
                continue;
            }
            let mut ports: Vec<_> = service_ports
                .iter()
                .filter_map(|sp| {
                    Some((
                        sp.name.clone(),
                        find_port(&pod, sp)?,
                        Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        sp.app_protocol.clone(),
                    ))
                })
                .collect();
            ports.sort();
            if !service_ports.is_empty() && ports.is_empty() {
                continue;
            }
            let ips: Vec<String> = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ips.as_ref())
                .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
                .filter(|v: &Vec<String>| !v.is_empty())
                .or_else(|| pod_ip(&pod).map(|ip| vec![ip]))
                .unwrap_or_default();
            for fam in &families {
                if let Some(ip) = ips.iter().find(|ip| family(ip) == fam.as_str()) {
                    out.entry((fam.clone(), ports.clone()))
                        .or_default()
                        .push(self.endpoint(&pod, svc, ip.clone()));
                }
            }
        }
        out
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, EndpointSliceError> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let existing = self.owned_slices(ns, name);
        if self.tracker.stale(key, &existing) {
            // Our last writes are not in the cache yet: look again shortly.
            return Ok(Some(Duration::from_millis(50)));
        }
        let svc = self.services.get(Some(ns), name);
        let selector = svc.as_deref().and_then(service_selector);
        let (Some(svc), Some(selector)) = (svc, selector) else {
            // No Service (or no selector any more): no slices of ours.
            for s in existing {
                self.delete(key, &api, &s).await?;
            }
            self.tracker.forget(key);
            return Ok(None);
        };
        if svc.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let desired = self.desired(&svc, &selector);
        let mut by_group: BTreeMap<GroupKey, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
        for s in existing {
            by_group.entry(group_of(&s)).or_default().push(s);
        }
        let mut planned = Vec::new();
        let groups: Vec<GroupKey> = desired.keys().chain(by_group.keys()).cloned().collect();
        for g in groups {
            if planned.iter().any(|p: &Planned| p.group == g) {
                continue;
            }
            let have = by_group.remove(&g).unwrap_or_default();
            let want = desired.get(&g).cloned().unwrap_or_default();
            planned.extend(plan_group(&g, have, want));
        }
        // No endpoints at all: one empty placeholder slice stays.
        if planned.iter().all(|p| p.endpoints.is_empty()) {
            let family = svc
                .spec
                .as_ref()
                .and_then(|s| s.ip_families.as_ref()?.first().cloned())
                .unwrap_or_else(|| "IPv4".into());
            let placeholder: GroupKey = (family, Vec::new());
            // Keep an existing placeholder if there is one; every other slice goes.
            let keep = planned
                .iter()
                .position(|p| p.group == placeholder && p.existing.is_some());
            let placeholder = match keep {
                Some(i) => planned.remove(i),
                None => Planned {
                    existing: None,
                    group: placeholder,
                    endpoints: Vec::new(),
                },
            };
            for p in planned {
                if let Some(s) = p.existing {
                    self.delete(key, &api, &s).await?;
                }
            }
            return self.write(key, &api, &svc, placeholder).await.map(|_| None);
        }
        for p in planned {
            if p.endpoints.is_empty() {
                if let Some(s) = &p.existing {
                    self.delete(key, &api, s).await?;
                }
                continue;
            }
            self.write(key, &api, &svc, p).await?;
        }
        Ok(None)
    }

    async fn delete(
        &self,
        key: &str,
        api: &Api<EndpointSlice>,
        s: &EndpointSlice,
    ) -> Result<(), EndpointSliceError> {
        let name = s.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if crate::api_error::is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.tracker.record(key, &name, None);
        Ok(())
    }

    /// Creates or updates one slice as planned (nothing if it already is so).
    async fn write(
        &self,
        key: &str,
        api: &Api<EndpointSlice>,
        svc: &Service,
        p: Planned,
    ) -> Result<(), EndpointSliceError> {
        let mut labels = endpoint_labels(svc);
        labels.insert(
            SERVICE_NAME_LABEL.into(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let owner = controller_ref::controller_ref(svc);
        let ports = ports_of(&p.group);
        let result = match p.existing {
            Some(cur) => {
                if cur.endpoints == p.endpoints
                    && cur.ports.clone().unwrap_or_default() == ports
                    && cur.metadata.labels.as_ref() == Some(&labels)
                    && controller_ref::controller_of(&cur.metadata)
                        .is_some_and(|r| r.uid == owner.uid)
                {
                    return Ok(());
                }
                let mut s = (*cur).clone();
                s.endpoints = p.endpoints;
                s.ports = Some(ports);
                s.metadata.labels = Some(labels);
                s.metadata.owner_references = Some(vec![owner]);
                let name = s.metadata.name.clone().unwrap_or_default();
                api.replace(&name, &PostParams::default(), &s).await
            }
            None => {
                let s = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!(
                            "{}-",
                            svc.metadata.name.as_deref().unwrap_or_default()
                        )),
                        namespace: svc.metadata.namespace.clone(),
                        labels: Some(labels),
                        owner_references: Some(vec![owner]),
                        ..Default::default()
                    },
                    address_type: p.group.0.clone(),
                    endpoints: p.endpoints,
                    ports: Some(ports),
                };
                api.create(&PostParams::default(), &s).await
            }
        };
        match result {
            Ok(written) => {
                let name = written.metadata.name.clone().unwrap_or_default();
                self.tracker
                    .record(key, &name, Some(rv(&written).unwrap_or(0)));
                Ok(())
            }
            Err(e) if crate::api_error::code(&e) == Some(403) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            ..Default::default()
        }
    }

    fn slice(name: &str, ips: &[&str]) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: ips.iter().map(|i| ep(i)).collect(),
            ports: None,
        })
    }

    #[test]
    fn endpoints_stay_in_their_slice_and_new_ones_fill_room() {
        let g: GroupKey = ("IPv4".into(), Vec::new());
        let plan = plan_group(
            &g,
            vec![
                slice("a", &["10.0.0.1", "10.0.0.2"]),
                slice("b", &["10.0.0.3"]),
            ],
            vec![ep("10.0.0.3"), ep("10.0.0.4"), ep("10.0.0.1")],
        );
        let ips = |p: &Planned| {
            p.endpoints
                .iter()
                .map(|e| e.addresses[0].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(plan.len(), 2);
        assert_eq!(ips(&plan[0]), ["10.0.0.1", "10.0.0.4"]);
        assert_eq!(ips(&plan[1]), ["10.0.0.3"]);
    }

    #[test]
    fn a_full_slice_overflows_into_a_new_one() {
        let g: GroupKey = ("IPv4".into(), Vec::new());
        let desired: Vec<Endpoint> = (0..250)
            .map(|i| ep(&format!("10.0.{}.{}", i / 200, i % 200)))
            .collect();
        let plan = plan_group(&g, vec![], desired);
        let sizes: Vec<usize> = plan.iter().map(|p| p.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(plan.iter().all(|p| p.existing.is_none()));
    }
}
