//! The Endpoints controller: for every Service with a selector, an Endpoints object
//! of the same name listing the selected pods' IPs (ready ones under `addresses`,
//! others under `notReadyAddresses`, all of them ready with
//! publishNotReadyAddresses) per set of resolved ports, with nodeName and a
//! targetRef to the pod; deleted with the Service. Services without a selector are
//! left alone (their endpoints belong to whoever wrote them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::endpoint_util::*;
use crate::informer::{Change, Informer, feed};
use crate::manager::ControllerContext;
use crate::pod_util::{self, object_key, split_key};
use crate::queue::WorkQueue;

/// At most this many addresses per Endpoints object (as upstream).
pub const MAX_ADDRESSES: usize = 1000;
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// Errors of the Endpoints controller.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

struct EndpointsController {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
}

async fn run(ctx: ControllerContext) {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let endpoints = ctx.informers.get::<Endpoints>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let svc_feed = feed(services.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } => Some(object_key(new.as_ref())),
        Change::Deleted(s) => Some(object_key(s.as_ref())),
    });
    let s = services.clone();
    let pod_feed = feed(pods.subscribe(), queue.clone(), move |c| {
        services_for_change(&s, &c)
    });
    // Someone else changed or deleted our Endpoints: put them back.
    let ep_feed = feed(endpoints.subscribe(), queue.clone(), |c| match c {
        Change::Applied { old: Some(_), new } => Some(object_key(new.as_ref())),
        Change::Deleted(e) => Some(object_key(e.as_ref())),
        _ => None,
    });
    services.synced().await;
    pods.synced().await;
    endpoints.synced().await;
    let ctrl = Arc::new(EndpointsController {
        client: ctx.client.clone(),
        services,
        pods,
        endpoints,
    });
    let workers = queue.run(ctx.config.workers, "endpoints", move |key| {
        let ctrl = ctrl.clone();
        async move { ctrl.sync(&key).await }
    });
    futures::join!(svc_feed, pod_feed, ep_feed, workers);
}

/// One address with the ports it serves and whether it is ready.
struct Backend {
    address: EndpointAddress,
    ports: BTreeSet<PortKey>,
    ready: bool,
}

type PortKey = (String, i32, String, Option<String>);

fn port_of(k: &PortKey) -> EndpointPort {
    EndpointPort {
        name: (!k.0.is_empty()).then(|| k.0.clone()),
        port: k.1,
        protocol: Some(k.2.clone()),
        app_protocol: k.3.clone(),
    }
}

/// The subsets for a Service's backends: addresses grouped by the set of ports
/// they serve, sorted.
fn subsets(backends: Vec<Backend>) -> Vec<EndpointSubset> {
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for b in backends {
        let g = groups.entry(b.ports.into_iter().collect()).or_default();
        if b.ready { &mut g.0 } else { &mut g.1 }.push(b.address);
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            let key = |a: &EndpointAddress| {
                (
                    a.ip.clone(),
                    a.target_ref.as_ref().and_then(|r| r.uid.clone()),
                )
            };
            ready.sort_by_key(key);
            not_ready.sort_by_key(key);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| ports.iter().map(port_of).collect()),
            }
        })
        .collect()
}

/// Keeps the first `MAX_ADDRESSES` addresses (ready ones first); whether it cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= MAX_ADDRESSES {
        return false;
    }
    let mut budget = MAX_ADDRESSES;
    for pick_ready in [true, false] {
        for s in subsets.iter_mut() {
            let list = if pick_ready {
                &mut s.addresses
            } else {
                &mut s.not_ready_addresses
            };
            if let Some(l) = list {
                l.truncate(budget);
                budget -= l.len();
            }
        }
    }
    true
}

impl EndpointsController {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, EndpointsError> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let Some(svc) = self.services.get(Some(ns), name) else {
            // The Service is gone: so are its endpoints (unless someone else's).
            if self.endpoints.get(Some(ns), name).is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if crate::api_error::is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(None);
        };
        let Some(selector) = service_selector(&svc) else {
            return Ok(None);
        };
        let publish = publish_not_ready(&svc);
        let service_ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let mut backends = Vec::new();
        for pod in self.pods.list_namespace(ns) {
            if !pod_util::matches(&selector, pod.metadata.labels.as_ref())
                || !should_be_in_endpoints(&pod, publish)
            {
                continue;
            }
            let Some(ip) = pod_ip(&pod) else { continue };
            let address = EndpointAddress {
                ip,
                hostname: hostname(&pod, &svc),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(target_ref(&pod)),
            };
            let ready = publish || pod_util::is_ready(&pod);
            if service_ports.is_empty() {
                if is_headless(&svc) {
                    backends.push(Backend {
                        address,
                        ports: BTreeSet::new(),
                        ready,
                    });
                }
                continue;
            }
            let ports: BTreeSet<PortKey> = service_ports
                .iter()
                .filter_map(|sp| {
                    let port = find_port(&pod, sp)?;
                    Some((
                        sp.name.clone().unwrap_or_default(),
                        port,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        sp.app_protocol.clone(),
                    ))
                })
                .collect();
            if !ports.is_empty() {
                backends.push(Backend {
                    address,
                    ports,
                    ready,
                });
            }
        }
        let mut subsets = subsets(backends);
        let truncated = truncate(&mut subsets);
        let labels = endpoint_labels(&svc);
        let current = self.endpoints.get(Some(ns), name);
        let mut annotations = current
            .as_ref()
            .and_then(|e| e.metadata.annotations.clone())
            .unwrap_or_default();
        if truncated {
            annotations.insert(OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY);
        }
        let subsets = (!subsets.is_empty()).then_some(subsets);
        if let Some(cur) = &current
            && cur.subsets == subsets
            && cur.metadata.labels.clone().unwrap_or_default() == labels
            && cur.metadata.annotations.clone().unwrap_or_default() == annotations
        {
            return Ok(None);
        }
        let mut ep = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            subsets: None,
        });
        ep.metadata.labels = Some(labels);
        ep.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        ep.subsets = subsets;
        let result = if current.is_some() {
            api.replace(name, &PostParams::default(), &ep).await
        } else {
            api.create(&PostParams::default(), &ep).await
        };
        match result {
            Ok(_) => Ok(None),
            // The namespace is going away.
            Err(e) if crate::api_error::code(&e) == Some(403) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(ip: &str, ports: &[i32], ready: bool) -> Backend {
        Backend {
            address: EndpointAddress {
                ip: ip.into(),
                ..Default::default()
            },
            ports: ports
                .iter()
                .map(|p| (String::new(), *p, "TCP".into(), None))
                .collect(),
            ready,
        }
    }

    #[test]
    fn addresses_are_grouped_by_their_ports() {
        let s = subsets(vec![
            backend("10.0.0.2", &[80], true),
            backend("10.0.0.1", &[80], false),
            backend("10.0.0.3", &[80, 443], true),
        ]);
        assert_eq!(s.len(), 2);
        let web = s
            .iter()
            .find(|s| s.ports.as_ref().unwrap().len() == 1)
            .unwrap();
        assert_eq!(web.addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(web.not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
    }

    #[test]
    fn too_many_addresses_are_cut_ready_first() {
        let mut s = subsets(
            (0..1100)
                .map(|i| backend(&format!("10.1.{}.{}", i / 250, i % 250), &[80], i % 2 == 0))
                .collect(),
        );
        assert!(truncate(&mut s));
        assert_eq!(s[0].addresses.as_ref().unwrap().len(), 550);
        assert_eq!(s[0].not_ready_addresses.as_ref().unwrap().len(), 450);
    }
}
