//! The garbage collector with each propagation policy, dangling owners, several
//! owners, and custom resources as owners.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, DynamicObject, PostParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde_json::json;

use crate::common::{TestCluster, eventually};
use crate::namespace::widgets_crd;

fn owned_by(owner: &impl Resource<DynamicType = ()>, block: bool) -> OwnerReference {
    let r = owner.object_ref(&());
    OwnerReference {
        api_version: r.api_version.unwrap(),
        kind: r.kind.unwrap(),
        name: r.name.unwrap(),
        uid: r.uid.unwrap(),
        controller: None,
        block_owner_deletion: Some(block),
    }
}

async fn cm(api: &Api<ConfigMap>, name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    let obj: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    eventually(10, &format!("{name} to be deleted"), || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_and_dangling_owners() {
    let c = TestCluster::start(&["garbage-collector"]).await;
    let cms: Api<ConfigMap> = c.api("default");
    let owner = cm(&cms, "owner", vec![]).await;
    cm(&cms, "child", vec![owned_by(&owner, false)]).await;
    let other = cm(&cms, "other-owner", vec![]).await;
    cm(
        &cms,
        "shared",
        vec![owned_by(&owner, false), owned_by(&other, false)],
    )
    .await;
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    gone(&cms, "child").await;
    // A dependent with another owner left only loses the reference.
    let shared = eventually(10, "the gone owner dropped", || async {
        let s = cms.get("shared").await.unwrap();
        (s.metadata.owner_references.as_ref().unwrap().len() == 1).then_some(s)
    })
    .await;
    assert_eq!(
        shared.metadata.owner_references.unwrap()[0].name,
        "other-owner"
    );

    // A dependent whose owner never existed (by uid) is deleted.
    let mut ghost = owned_by(&other, false);
    ghost.uid = "00000000-0000-0000-0000-000000000000".into();
    cm(&cms, "orphaned-at-birth", vec![ghost]).await;
    gone(&cms, "orphaned-at-birth").await;
    // ... while a live owner's dependents stay.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(cms.get_opt("shared").await.unwrap().is_some());
}

/// Foreground deletion: the owner waits (with its finalizer) until its blocking
/// dependents are gone, and dependents with dependents of their own go after those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_goes_leaves_first() {
    let c = TestCluster::start(&["garbage-collector"]).await;
    let cms: Api<ConfigMap> = c.api("default");
    let root = cm(&cms, "root", vec![]).await;
    let mid = cm(&cms, "mid", vec![owned_by(&root, true)]).await;
    cm(&cms, "leaf", vec![owned_by(&mid, true)]).await;
    cm(&cms, "loose", vec![owned_by(&root, false)]).await;

    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = order.clone();
    let rv = cms
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            if let WatchEvent::Deleted(o) = ev {
                seen.lock().unwrap().push(o.metadata.name.unwrap());
            }
        }
    });
    cms.delete("root", &DeleteParams::foreground())
        .await
        .unwrap();
    let r = cms.get("root").await.unwrap();
    assert!(r.metadata.deletion_timestamp.is_some());
    assert_eq!(
        r.metadata.finalizers.as_deref(),
        Some(&["foregroundDeletion".to_string()][..])
    );
    gone(&cms, "root").await;
    gone(&cms, "loose").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    watcher.abort();
    let order = order.lock().unwrap().clone();
    let pos = |n: &str| {
        order
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} not deleted: {order:?}"))
    };
    assert!(pos("leaf") < pos("mid"), "{order:?}");
    assert!(pos("mid") < pos("root"), "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let c = TestCluster::start(&["garbage-collector"]).await;
    let cms: Api<ConfigMap> = c.api("default");
    let owner = cm(&cms, "parent", vec![]).await;
    cm(&cms, "kid-a", vec![owned_by(&owner, true)]).await;
    cm(&cms, "kid-b", vec![owned_by(&owner, false)]).await;
    cms.delete("parent", &DeleteParams::orphan()).await.unwrap();
    gone(&cms, "parent").await;
    for kid in ["kid-a", "kid-b"] {
        let k = cms.get(kid).await.unwrap();
        assert!(
            k.metadata.owner_references.unwrap_or_default().is_empty(),
            "{kid} still references its owner"
        );
    }
}

/// Custom resources are watched once their CRD appears: deleting a custom owner
/// deletes its dependents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_own_objects_too() {
    let c = TestCluster::start(&["garbage-collector"]).await;
    let ar = widgets_crd(&c.client).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &ar);
    let w = DynamicObject::new("gizmo", &ar).data(json!({"spec": {}}));
    let w = eventually(10, "the custom resource to be served", || async {
        widgets.create(&PostParams::default(), &w).await.ok()
    })
    .await;
    let cms: Api<ConfigMap> = c.api("default");
    let owner_ref = OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "gizmo".into(),
        uid: w.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    cm(&cms, "widget-config", vec![owner_ref]).await;
    // The owner exists: the dependent stays.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(cms.get_opt("widget-config").await.unwrap().is_some());
    widgets
        .delete("gizmo", &DeleteParams::foreground())
        .await
        .unwrap();
    gone(&cms, "widget-config").await;
    eventually(10, "the widget gone", || async {
        widgets
            .get_opt("gizmo")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}
