//! The root CA publisher: a `kube-root-ca.crt` ConfigMap in every namespace holding
//! the cluster CA bundle (`ca.crt`), so pods can verify the API server; kept equal
//! to the bundle if edited, recreated if deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::informer::{Change, Informer, feed};
use crate::manager::ControllerContext;
use crate::queue::WorkQueue;

/// The ConfigMap's name.
pub const CONFIGMAP: &str = "kube-root-ca.crt";
/// Its key.
pub const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Errors of the root CA publisher.
#[derive(Debug, thiserror::Error)]
pub enum RootCaError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

async fn run(ctx: ControllerContext) {
    let Some(ca) = ctx.config.root_ca_pem.clone() else {
        tracing::info!("no cluster CA given: not publishing {CONFIGMAP}");
        return std::future::pending().await;
    };
    let namespaces = ctx.informers.get::<Namespace>();
    let configmaps = ctx.informers.get::<ConfigMap>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let ns_feed = feed(namespaces.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } => new.metadata.name.clone(),
        Change::Deleted(_) => None,
    });
    let cm_feed = feed(configmaps.subscribe(), queue.clone(), |c| {
        let cm = match c {
            Change::Applied { new, .. } => new,
            Change::Deleted(o) => o,
        };
        (cm.metadata.name.as_deref() == Some(CONFIGMAP))
            .then(|| cm.metadata.namespace.clone())
            .flatten()
    });
    namespaces.synced().await;
    configmaps.synced().await;
    let ctrl = Arc::new(RootCaPublisher {
        client: ctx.client.clone(),
        ca,
        namespaces,
        configmaps,
    });
    let workers = queue.run(ctx.config.workers, "root-ca-cert-publisher", move |ns| {
        let ctrl = ctrl.clone();
        async move { ctrl.sync(&ns).await }
    });
    futures::join!(ns_feed, cm_feed, workers);
}

struct RootCaPublisher {
    client: Client,
    ca: String,
    namespaces: Arc<Informer<Namespace>>,
    configmaps: Arc<Informer<ConfigMap>>,
}

impl RootCaPublisher {
    fn data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(KEY.to_string(), self.ca.clone())])
    }

    fn annotations() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "kubernetes.io/description".to_string(),
            DESCRIPTION.to_string(),
        )])
    }

    async fn sync(&self, ns: &str) -> Result<Option<Duration>, RootCaError> {
        let Some(namespace) = self.namespaces.get(None, ns) else {
            return Ok(None);
        };
        if namespace.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let result = match self.configmaps.get(Some(ns), CONFIGMAP) {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(CONFIGMAP.into()),
                        annotations: Some(Self::annotations()),
                        ..Default::default()
                    },
                    data: Some(self.data()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
            Some(cm) if cm.data.as_ref() != Some(&self.data()) || cm.binary_data.is_some() => {
                let mut cm = (*cm).clone();
                cm.data = Some(self.data());
                cm.binary_data = None;
                cm.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .extend(Self::annotations());
                api.replace(CONFIGMAP, &PostParams::default(), &cm)
                    .await
                    .map(|_| ())
            }
            Some(_) => Ok(()),
        };
        match result {
            Ok(()) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
