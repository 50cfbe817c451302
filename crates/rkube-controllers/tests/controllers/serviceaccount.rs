//! ServiceAccount controller and root CA publisher: every namespace gets a `default`
//! account and the `kube-root-ca.crt` ConfigMap.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use rkube_controllers::ControllerManagerConfig;
use serde_json::json;

use crate::common::{TestCluster, eventually};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_account_and_the_root_ca() {
    let c = TestCluster::start_with(ControllerManagerConfig {
        controllers: vec![
            "serviceaccount".into(),
            "root-ca-certificate-publisher".into(),
        ],
        root_ca_pem: Some(CA.into()),
        ..Default::default()
    })
    .await;
    // Namespaces that existed before the controllers started.
    for ns in ["default", "kube-system"] {
        let sas: Api<ServiceAccount> = c.api(ns);
        eventually(10, "the default account in a system namespace", || async {
            sas.get_opt("default").await.unwrap()
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = c.api("team");
    let first = eventually(10, "the default account", || async {
        sas.get_opt("default").await.unwrap()
    })
    .await;
    let cms: Api<ConfigMap> = c.api("team");
    let cm = eventually(10, "kube-root-ca.crt", || async {
        cms.get_opt("kube-root-ca.crt").await.unwrap()
    })
    .await;
    assert_eq!(cm.data.unwrap()["ca.crt"], CA);
    assert!(cm.metadata.annotations.unwrap()["kubernetes.io/description"].contains("CA bundle"));

    // Deleted: made again. Edited: put back.
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "a new default account", || async {
        let sa = sas.get_opt("default").await.unwrap()?;
        (sa.metadata.uid != first.metadata.uid).then_some(())
    })
    .await;
    let mut cm = cms.get("kube-root-ca.crt").await.unwrap();
    cm.data = Some([("ca.crt".to_string(), "tampered".to_string())].into());
    cms.replace("kube-root-ca.crt", &PostParams::default(), &cm)
        .await
        .unwrap();
    eventually(10, "the CA restored", || async {
        let cm = cms.get("kube-root-ca.crt").await.unwrap();
        (cm.data.unwrap()["ca.crt"] == CA).then_some(())
    })
    .await;
}
