//! The node's heartbeat: a Lease named after the node in `kube-node-lease`, owned by
//! the Node, renewed every quarter of its duration (10 s of 40 s), as upstream's
//! node lease controller does.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

async fn renew_once(client: &Client, node: &str, duration: Duration) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let patch = json!({"spec": {
        "holderIdentity": node,
        "leaseDurationSeconds": duration.as_secs(),
        "renewTime": now,
    }});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let owner = Api::<Node>::all(client.clone()).get(node).await?;
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": node,
                    "namespace": NODE_LEASE_NAMESPACE,
                    "ownerReferences": [{
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": node,
                        "uid": owner.metadata.uid,
                    }],
                },
                "spec": {
                    "holderIdentity": node,
                    "leaseDurationSeconds": duration.as_secs(),
                    "renewTime": now,
                },
            }))
            .expect("a valid Lease");
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Renews the node's Lease for as long as the process runs; failures are retried
/// sooner (every second, up to the renew interval).
pub async fn run(client: Client, node: String, duration: Duration) {
    let interval = duration / 4;
    loop {
        let wait = match renew_once(&client, &node, duration).await {
            Ok(()) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "renewing the node lease failed");
                Duration::from_secs(1).min(interval)
            }
        };
        tokio::time::sleep(wait).await;
    }
}
