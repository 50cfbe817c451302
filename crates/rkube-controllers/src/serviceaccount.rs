//! The ServiceAccount controller: a `default` ServiceAccount in every namespace that
//! is not being deleted, recreated if someone deletes it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::informer::{Change, Informer, feed};
use crate::manager::ControllerContext;
use crate::queue::WorkQueue;

/// The account every namespace gets.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Errors of the ServiceAccount controller.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

async fn run(ctx: ControllerContext) {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let ns_feed = feed(namespaces.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } => new.metadata.name.clone(),
        Change::Deleted(_) => None,
    });
    let sa_feed = feed(accounts.subscribe(), queue.clone(), |c| match c {
        Change::Deleted(sa) if sa.metadata.name.as_deref() == Some(DEFAULT_ACCOUNT) => {
            sa.metadata.namespace.clone()
        }
        _ => None,
    });
    namespaces.synced().await;
    accounts.synced().await;
    let ctrl = Arc::new(ServiceAccountController {
        client: ctx.client.clone(),
        namespaces,
        accounts,
    });
    let workers = queue.run(ctx.config.workers, "serviceaccount", move |ns| {
        let ctrl = ctrl.clone();
        async move { ctrl.sync(&ns).await }
    });
    futures::join!(ns_feed, sa_feed, workers);
}

struct ServiceAccountController {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
}

impl ServiceAccountController {
    async fn sync(&self, ns: &str) -> Result<Option<Duration>, ServiceAccountError> {
        let Some(namespace) = self.namespaces.get(None, ns) else {
            return Ok(None);
        };
        if namespace.metadata.deletion_timestamp.is_some()
            || self.accounts.get(Some(ns), DEFAULT_ACCOUNT).is_some()
        {
            return Ok(None);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_ACCOUNT.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(None),
            // Already there (the cache lags), or the namespace is going away.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
