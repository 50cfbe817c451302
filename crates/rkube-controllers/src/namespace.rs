//! Namespace lifecycle: when a namespace is being deleted, delete everything in it
//! (every namespaced resource discovery reports, custom resources included), wait
//! until it is all gone, then take the `kubernetes` finalizer off through
//! `namespaces/<n>/finalize`; the API server removes the namespace when nothing
//! holds it. The `NamespaceDeletion*` / `Namespace*Remaining` conditions say what is
//! in the way, as upstream reports them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};

use crate::clock::Clock;
use crate::discovery::Resources;
use crate::informer::{Change, feed};
use crate::manager::ControllerContext;
use crate::queue::WorkQueue;

/// The finalizer the namespace controller is responsible for.
pub const FINALIZER: &str = "kubernetes";

/// Errors of the namespace controller.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: ControllerContext) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx))
}

struct NamespaceController {
    client: Client,
    clock: Arc<dyn Clock>,
    /// Passes per namespace that found content still there (for the retry delay).
    passes: Mutex<HashMap<String, u32>>,
}

async fn run(ctx: ControllerContext) {
    let namespaces = ctx.informers.get::<Namespace>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let feed = feed(namespaces.subscribe(), queue.clone(), |c| match c {
        Change::Applied { new, .. } if new.metadata.deletion_timestamp.is_some() => {
            new.metadata.name.clone()
        }
        _ => None,
    });
    namespaces.synced().await;
    let ctrl = Arc::new(NamespaceController {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        passes: Mutex::new(HashMap::new()),
    });
    let workers = queue.run(ctx.config.workers.max(2), "namespace", move |name| {
        let ctrl = ctrl.clone();
        async move { ctrl.sync(&name).await }
    });
    futures::join!(feed, workers);
}

/// What one pass over the namespace's content found.
#[derive(Default, Debug)]
struct Pass {
    discovery_failure: Option<String>,
    deletion_failures: Vec<String>,
    /// `<resource>.<group>` → objects left.
    remaining: BTreeMap<String, usize>,
    /// finalizer → objects holding it.
    finalizers: BTreeMap<String, usize>,
}

impl Pass {
    fn done(&self) -> bool {
        self.discovery_failure.is_none()
            && self.deletion_failures.is_empty()
            && self.remaining.is_empty()
    }

    /// The five conditions, as upstream words them.
    fn conditions(&self) -> Vec<(&'static str, bool, &'static str, String)> {
        let mut out = Vec::new();
        out.push(match &self.discovery_failure {
            Some(e) => (
                "NamespaceDeletionDiscoveryFailure",
                true,
                "DiscoveryFailed",
                format!("Discovery failed for some groups, 1 failing: {e}"),
            ),
            None => (
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
            ),
        });
        out.push((
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ));
        out.push(if self.deletion_failures.is_empty() {
            (
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            (
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    self.deletion_failures.len(),
                    self.deletion_failures.join(", ")
                ),
            )
        });
        out.push(if self.remaining.is_empty() {
            (
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            let parts: Vec<String> = self
                .remaining
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect();
            (
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", parts.join(", ")),
            )
        });
        out.push(if self.finalizers.is_empty() {
            (
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            let parts: Vec<String> = self
                .finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            (
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    parts.join(", ")
                ),
            )
        });
        out
    }
}

impl NamespaceController {
    async fn sync(&self, name: &str) -> Result<Option<Duration>, NamespaceError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = api.get_opt(name).await? else {
            self.passes.lock().expect("lock").remove(name);
            return Ok(None);
        };
        let held = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
        if ns.metadata.deletion_timestamp.is_none() || !held {
            return Ok(None);
        }
        let pass = self.delete_content(name).await;
        self.update_conditions(&api, &ns, &pass).await?;
        if !pass.done() {
            let n = {
                let mut passes = self.passes.lock().expect("lock");
                let n = passes.entry(name.to_string()).or_insert(0);
                *n += 1;
                *n
            };
            // Content going away by itself (finalizers, graceful pods): look again soon,
            // then less often.
            let delay = Duration::from_millis(50u64 << n.min(7)).min(Duration::from_secs(5));
            tracing::debug!("namespace {name}: content remains ({pass:?}), again in {delay:?}");
            return Ok(Some(delay));
        }
        self.passes.lock().expect("lock").remove(name);
        // Take our finalizer off, on the latest version.
        let mut ns = api.get(name).await?;
        if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
            f.retain(|f| f != FINALIZER);
        }
        api.replace_subresource("finalize", name, &PostParams::default(), &ns)
            .await?;
        tracing::info!("namespace {name}: content deleted, finalized");
        Ok(None)
    }

    /// Deletes every namespaced object and reports what is left.
    async fn delete_content(&self, namespace: &str) -> Pass {
        let mut pass = Pass::default();
        let resources = match Resources::discover(&self.client).await {
            Ok(r) => r,
            Err(e) => {
                pass.discovery_failure = Some(e.to_string());
                return pass;
            }
        };
        let background = DeleteParams::background();
        for s in &resources.all {
            if !s.namespaced || !s.supports("list") || !s.supports("delete") {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &s.resource);
            let gr = format!("{}.{}", s.resource.plural, s.resource.group);
            let deleted = if s.supports("deletecollection") {
                api.delete_collection(&background, &ListParams::default())
                    .await
                    .map(|_| ())
            } else {
                delete_each(&api, &background).await
            };
            if let Err(e) = deleted {
                pass.deletion_failures.push(format!("{gr}: {e}"));
                continue;
            }
            match api.list_metadata(&ListParams::default()).await {
                Ok(left) if !left.items.is_empty() => {
                    pass.remaining.insert(gr, left.items.len());
                    for o in &left.items {
                        for f in o.metadata.finalizers.iter().flatten() {
                            *pass.finalizers.entry(f.clone()).or_insert(0) += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => pass.deletion_failures.push(format!("{gr}: {e}")),
            }
        }
        pass
    }

    async fn update_conditions(
        &self,
        api: &Api<Namespace>,
        ns: &Namespace,
        pass: &Pass,
    ) -> Result<(), NamespaceError> {
        let now = Time(self.clock.now());
        let old = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut conditions = old.clone();
        for (ty, status, reason, message) in pass.conditions() {
            let status = if status { "True" } else { "False" };
            match conditions.iter_mut().find(|c| c.type_ == ty) {
                Some(c) => {
                    if c.status != status {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = status.into();
                    c.reason = Some(reason.into());
                    c.message = Some(message);
                }
                None => conditions.push(NamespaceCondition {
                    type_: ty.into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                }),
            }
        }
        if conditions == old {
            return Ok(());
        }
        let mut updated = ns.clone();
        updated
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(conditions);
        match api
            .replace_status(
                ns.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &updated,
            )
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote first: the next pass sets them.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes the objects of a resource that has no `deletecollection` one by one.
async fn delete_each(api: &Api<DynamicObject>, dp: &DeleteParams) -> Result<(), kube::Error> {
    let list = api.list_metadata(&ListParams::default()).await?;
    for o in list.items {
        let name = o.metadata.name.unwrap_or_default();
        match api.delete(&name, dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains() {
        let mut p = Pass::default();
        p.remaining.insert("pods.".into(), 2);
        p.finalizers.insert("example.com/hold".into(), 1);
        let c = p.conditions();
        let remaining = c
            .iter()
            .find(|c| c.0 == "NamespaceContentRemaining")
            .unwrap();
        assert!(remaining.1);
        assert_eq!(
            remaining.3,
            "Some resources are remaining: pods. has 2 resource instances"
        );
        let fin = c
            .iter()
            .find(|c| c.0 == "NamespaceFinalizersRemaining")
            .unwrap();
        assert_eq!(
            fin.3,
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert!(!p.done());
        assert!(Pass::default().done());
    }
}
