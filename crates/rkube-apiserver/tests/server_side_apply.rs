//! Server-side apply and managedFields through `kube::Client`, against an
//! in-process API server on the memory store.

use std::sync::Arc;

use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::{ApiServer, Config};
use rkube_store::memory::MemoryStore;
use serde_json::{Value, json};

async fn client() -> kube::Client {
    let server = ApiServer::new(Config::default(), Arc::new(MemoryStore::new()))
        .await
        .expect("starting the API server");
    let service = server.local_service(UserInfo::new("admin", &["system:masters"]));
    kube::Client::new(service, "default")
}

fn deployment(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    })
}

/// Sends a raw request and returns the status code and the JSON body.
async fn send(client: &kube::Client, req: http::Request<Vec<u8>>) -> (u16, Value) {
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("sending the request");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).expect("a JSON answer"))
}

fn entries(d: &Deployment) -> Vec<(String, String, Option<String>)> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.subresource.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn conflicts_come_back_as_a_status_with_causes() {
    let client = client().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created = api
        .patch(
            "web",
            &PatchParams::apply("alice"),
            &Patch::Apply(deployment(2)),
        )
        .await
        .expect("apply creates");
    assert_eq!(
        entries(&created),
        vec![("alice".into(), "Apply".into(), None)]
    );

    // Through kube: a 409 Conflict with upstream's message.
    let err = api
        .patch(
            "web",
            &PatchParams::apply("bob"),
            &Patch::Apply(deployment(3)),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );

    // On the wire: each conflict is a FieldManagerConflict cause.
    let req =
        http::Request::patch("/apis/apps/v1/namespaces/default/deployments/web?fieldManager=bob")
            .header("Content-Type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&deployment(3)).unwrap())
            .unwrap();
    let (code, body) = send(&client, req).await;
    assert_eq!(code, 409);
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".spec.replicas"}])
    );

    // Forced, bob takes the field.
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(deployment(3)),
        )
        .await
        .expect("a forced apply wins");
    assert_eq!(forced.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        entries(&forced),
        vec![
            ("alice".into(), "Apply".into(), None),
            ("bob".into(), "Apply".into(), None)
        ]
    );
}

#[tokio::test]
async fn status_writes_and_user_agents_name_their_entries() {
    let client = client().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");

    // A create naming no manager is recorded under its User-Agent's name.
    let req = http::Request::post("/apis/apps/v1/namespaces/default/deployments")
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            "kube-controller-manager/v1.33.0 (linux/amd64) kubernetes/abc",
        )
        .body(serde_json::to_vec(&deployment(1)).unwrap())
        .unwrap();
    let (code, body) = send(&client, req).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["metadata"]["managedFields"][0]["manager"],
        "kube-controller-manager"
    );
    assert_eq!(body["metadata"]["managedFields"][0]["operation"], "Update");

    // A status apply is recorded with its subresource, owning only status.
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "status": {"replicas": 1, "readyReplicas": 1}});
    let d = api
        .patch_status(
            "web",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(status),
        )
        .await
        .expect("status apply");
    assert_eq!(d.status.as_ref().unwrap().ready_replicas, Some(1));
    assert!(entries(&d).contains(&(
        "status-writer".into(),
        "Apply".into(),
        Some("status".into())
    )));
    let mf = d.metadata.managed_fields.unwrap();
    let status_entry = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("status-writer"))
        .unwrap();
    assert_eq!(
        status_entry.fields_v1.as_ref().unwrap().0,
        json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}})
    );

    // `managedFields: []` in a patch clears them.
    let cleared = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"managedFields": []}})),
        )
        .await
        .unwrap();
    assert!(cleared.metadata.managed_fields.is_none());
}
