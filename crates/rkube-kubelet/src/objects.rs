//! The cluster objects pods refer to — ConfigMaps, Secrets (volumes, env, pull
//! secrets) and Services (service environment variables) — kept in watch caches,
//! with a live read when the cache lacks an object just created. Changes are
//! announced so pod workers refresh the volumes that use them.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// Which kind of object changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

/// A ConfigMap or Secret that was added, changed or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Watch caches of the objects pods refer to.
pub struct ClusterObjects {
    client: Client,
    configmaps: Store<ConfigMap>,
    secrets: Store<Secret>,
    services: Store<Service>,
    changes: broadcast::Sender<Changed>,
}

fn cache<K>(
    client: &Client,
    kind: Option<ObjectKind>,
    changes: broadcast::Sender<Changed>,
) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    let drive = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => o,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed; retrying");
                    continue;
                }
            };
            if let Some(kind) = kind {
                let _ = changes.send(Changed {
                    kind,
                    namespace: obj.meta().namespace.clone().unwrap_or_default(),
                    name: obj.meta().name.clone().unwrap_or_default(),
                });
            }
        }
    };
    (store, Box::pin(drive))
}

async fn get<K>(
    client: &Client,
    store: &Store<K>,
    ns: &str,
    name: &str,
) -> Result<Option<Arc<K>>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    if let Some(o) = store.get(&ObjectRef::new(name).within(ns)) {
        return Ok(Some(o));
    }
    // Created a moment ago, and the watch has not delivered it yet?
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(Arc::new))
}

impl ClusterObjects {
    /// The caches, and the future that keeps them filled (run it for as long as the
    /// kubelet runs).
    pub fn start(client: Client) -> (Arc<ClusterObjects>, BoxFuture<'static, ()>) {
        let (changes, _) = broadcast::channel(1024);
        let (configmaps, a) = cache(&client, Some(ObjectKind::ConfigMap), changes.clone());
        let (secrets, b) = cache(&client, Some(ObjectKind::Secret), changes.clone());
        let (services, c) = cache(&client, None, changes.clone());
        let objects = Arc::new(ClusterObjects {
            client,
            configmaps,
            secrets,
            services,
            changes,
        });
        let drive = async move {
            tokio::join!(a, b, c);
        };
        (objects, Box::pin(drive))
    }

    /// Waits until every cache has its first full list.
    pub async fn ready(&self) {
        let _ = self.configmaps.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
    }

    /// A ConfigMap, if it exists.
    pub async fn configmap(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<ConfigMap>>, kube::Error> {
        get(&self.client, &self.configmaps, ns, name).await
    }

    /// A Secret, if it exists.
    pub async fn secret(&self, ns: &str, name: &str) -> Result<Option<Arc<Secret>>, kube::Error> {
        get(&self.client, &self.secrets, ns, name).await
    }

    /// The Services of a namespace (for service environment variables).
    pub fn services_in(&self, ns: &str) -> Vec<Arc<Service>> {
        self.services
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .collect()
    }

    /// Announcements of changed ConfigMaps and Secrets.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }

    /// The API client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
