//! Crash safety: every write the server acknowledged survives `kill -9`.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::Cluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut cluster = Cluster::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    rt.block_on(async {
        let client = cluster.client().await;
        let mut writers = Vec::new();
        for w in 0..8 {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let mut cm = ConfigMap::default();
                    cm.metadata.name = Some(name.clone());
                    cm.data = Some([("writer".to_string(), w.to_string())].into());
                    match api.create(&PostParams::default(), &cm).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(name);
                        }
                        // The server is gone: stop.
                        Err(_) => return,
                    }
                }
            }));
        }
        // Let the writers get going, then crash the server under load.
        while acked.lock().unwrap().len() < 300 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        cluster.kill();
        for w in writers {
            let _ = w.await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);
    cluster.restart();
    rt.block_on(async {
        let client = cluster.client().await;
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let names: BTreeSet<String> = api
            .list(&ListParams::default())
            .await
            .expect("list after restart")
            .items
            .into_iter()
            .filter_map(|cm| cm.metadata.name)
            .collect();
        let lost: Vec<&String> = acked.difference(&names).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    });
}
