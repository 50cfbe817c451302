//! The Kubernetes layer: Services, EndpointSlices and Pods (through `kube::Client`
//! watchers) become the plain structs of the proxy and the DNS.
//!
//! [`service_ports`] and [`dns_data`] are the conversions (pure, unit-tested);
//! [`run_service_proxy`] and [`run_cluster_dns`] keep reflector caches of the objects
//! and feed the converted snapshot to the proxy and the DNS after every change.

mod convert;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use convert::{dns_data, node_routes, service_ports};

use crate::dns::ClusterDns;
use crate::pod_network::PodNetwork;
use crate::proxy::ServiceProxy;

/// A reflector cache of every object of kind `K`, and a stream that yields once per
/// change to it (after the first full list).
fn cache<K>(client: &Client) -> (Store<K>, impl Stream<Item = ()> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(Api::<K>::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
                Ok(_) => Some(()),
                Err(e) => {
                    tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed; retrying");
                    None
                }
            }
        });
    (store, events)
}

/// Drives the watches (a reflector fills its store only while its stream is polled)
/// until `ready` completes; `false` if the streams ended first.
async fn until_ready(
    ready: impl std::future::Future<Output = ()>,
    changes: &mut (impl Stream<Item = ()> + Unpin),
) -> bool {
    tokio::pin!(ready);
    loop {
        tokio::select! {
            _ = &mut ready => return true,
            more = changes.next() => if more.is_none() { return false },
        }
    }
}

/// Waits for the next change, then lets a burst settle (up to `max`) so that one
/// recomputation covers it. Returns `false` when the streams have ended.
async fn next_batch(
    changes: &mut (impl Stream<Item = ()> + Unpin),
    quiet: Duration,
    max: Duration,
) -> bool {
    if changes.next().await.is_none() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + max;
    while let Ok(Some(())) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + quiet),
        changes.next(),
    )
    .await
    {}
    true
}

/// Runs the service proxy from the API: Services and EndpointSlices are watched and
/// every change re-syncs the proxy (coalesced and rate-limited by the proxy).
/// Returns only when the watches end.
pub async fn run_service_proxy(client: Client, proxy: ServiceProxy) {
    let (services, svc_changes) = cache::<Service>(&client);
    let (slices, slice_changes) = cache::<EndpointSlice>(&client);
    let mut changes = Box::pin(futures::stream::select(svc_changes, slice_changes));
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let proxy_task = tokio::spawn(proxy.run(rx));
    // The first sync waits for both lists, so a restart never loads a table with
    // every Service missing its endpoints.
    let ready = async {
        let _ = services.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
    };
    if !until_ready(ready, &mut changes).await {
        return;
    }
    loop {
        let snapshot = service_ports(&unarc(&services), &unarc(&slices));
        tx.send_replace(Arc::new(snapshot));
        if !next_batch(
            &mut changes,
            Duration::from_millis(20),
            Duration::from_millis(200),
        )
        .await
        {
            break;
        }
    }
    drop(tx);
    let _ = proxy_task.await;
}

/// Runs the cluster DNS from the API: Services, EndpointSlices and Pods are watched
/// and the zone rebuilt after every change. Returns only when the watches end.
pub async fn run_cluster_dns(client: Client, dns: Arc<ClusterDns>) {
    let (services, svc_changes) = cache::<Service>(&client);
    let (slices, slice_changes) = cache::<EndpointSlice>(&client);
    let (pods, pod_changes) = cache::<Pod>(&client);
    let mut changes = Box::pin(futures::stream::select(
        futures::stream::select(svc_changes, slice_changes),
        pod_changes,
    ));
    let ready = async {
        let _ = services.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
        let _ = pods.wait_until_ready().await;
    };
    if !until_ready(ready, &mut changes).await {
        return;
    }
    loop {
        dns.update(&dns_data(&unarc(&services), &unarc(&slices), &unarc(&pods)));
        if !next_batch(
            &mut changes,
            Duration::from_millis(20),
            Duration::from_millis(200),
        )
        .await
        {
            return;
        }
    }
}

/// Keeps the host-gw routes of `pod_network` pointing at every other node's podCIDR
/// (from Nodes' `spec.podCIDR` and InternalIP). Returns only when the watch ends.
pub async fn run_node_routes(client: Client, pod_network: Arc<PodNetwork>, this_node: String) {
    let (nodes, changes) = cache::<Node>(&client);
    let mut changes = Box::pin(changes);
    let ready = async {
        let _ = nodes.wait_until_ready().await;
    };
    if !until_ready(ready, &mut changes).await {
        return;
    }
    loop {
        let routes = node_routes(&unarc(&nodes), &this_node);
        if let Err(e) = pod_network.set_node_routes(&routes).await {
            tracing::warn!(error = %e, "updating routes to other nodes failed");
        }
        if !next_batch(
            &mut changes,
            Duration::from_millis(20),
            Duration::from_millis(200),
        )
        .await
        {
            return;
        }
    }
}

/// The `kube-dns` Service in `kube-system` on `ip`: what pods' resolv.conf points at
/// and what keeps the IP from being handed to another Service. It has no selector:
/// every node serves the cluster DNS on this IP itself (the proxy leaves it alone).
/// Created when missing; an existing one is left as it is (a warning if its IP
/// differs, since pods would then be told an address nobody serves).
pub async fn ensure_dns_service(
    client: &Client,
    ip: std::net::Ipv4Addr,
) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    if let Some(existing) = api.get_opt("kube-dns").await? {
        let current = existing.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        if current != ip.to_string() {
            tracing::warn!(
                %current, wanted = %ip,
                "the kube-dns Service has another IP than the cluster DNS; pods will not resolve names"
            );
        }
        return Ok(());
    }
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
        },
        "spec": {
            "clusterIP": ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }))
    .expect("a valid Service");
    match api.create(&Default::default(), &svc).await {
        Ok(_) => Ok(()),
        // Another node made it first.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn unarc<K: Resource + Clone>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state().iter().map(|k| (**k).clone()).collect()
}
