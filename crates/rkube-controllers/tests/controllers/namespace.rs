//! Namespace lifecycle: deleting a namespace deletes everything in it, custom
//! resources included, and then the namespace itself.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;

use crate::common::{TestCluster, eventually};

fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

pub async fn widgets_crd(client: &kube::Client) -> ApiResource {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &object(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            }
        })),
    )
    .await
    .unwrap();
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_its_content_then_itself() {
    let c = TestCluster::start(&["namespace"]).await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "doomed"}})),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = c.api("doomed");
    cms.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "plain"}})),
    )
    .await
    .unwrap();
    cms.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = c.api("doomed");
    secrets
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}})),
        )
        .await
        .unwrap();
    let deploys: Api<Deployment> = c.api("doomed");
    deploys
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
            })),
        )
        .await
        .unwrap();
    let services: Api<Service> = c.api("doomed");
    services
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    let ar = widgets_crd(&c.client).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "doomed", &ar);
    let w = DynamicObject::new("w1", &ar).data(json!({"spec": {"size": 3}}));
    eventually(10, "the custom resource to be served", || async {
        widgets.create(&PostParams::default(), &w).await.ok()
    })
    .await;

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = namespaces.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));

    // Everything without a finalizer goes; the held ConfigMap keeps the namespace.
    let ns = eventually(10, "the finalizer condition", || async {
        let ns = namespaces.get("doomed").await.ok()?;
        let conds = ns.status.as_ref()?.conditions.clone()?;
        conds
            .iter()
            .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
            .then_some(ns)
    })
    .await;
    let conds = ns.status.unwrap().conditions.unwrap();
    let fin = conds
        .iter()
        .find(|c| c.type_ == "NamespaceFinalizersRemaining")
        .unwrap();
    assert_eq!(fin.reason.as_deref(), Some("SomeFinalizersRemain"));
    assert_eq!(
        fin.message.as_deref(),
        Some(
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        )
    );
    let remaining = conds
        .iter()
        .find(|c| c.type_ == "NamespaceContentRemaining")
        .unwrap();
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    assert!(cms.get_opt("plain").await.unwrap().is_none());
    assert!(secrets.get_opt("s").await.unwrap().is_none());
    assert!(deploys.get_opt("web").await.unwrap().is_none());
    assert!(services.get_opt("svc").await.unwrap().is_none());
    assert!(widgets.get_opt("w1").await.unwrap().is_none());

    // Releasing the last finalizer lets the namespace go.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(10, "the namespace to be gone", || async {
        namespaces
            .get_opt("doomed")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // A namespace of the same name starts empty.
    namespaces
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "doomed"}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        cms.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
