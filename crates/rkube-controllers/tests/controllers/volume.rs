//! The PersistentVolume binder and the storage protection controllers against a
//! real API server: matching, pre-binding, release and reclaim, waiting for the
//! first consumer, provisioning hand-off, and claims kept while pods use them.

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::common::{TestCluster, eventually};

const CONTROLLERS: &[&str] = &["persistentvolume-binder", "pvc-protection", "pv-protection"];

async fn add_pv(client: &Client, name: &str, size: &str, extra: serde_json::Value) {
    let mut spec = json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": "manual", "hostPath": {"path": format!("/tmp/{name}")}});
    if let (Some(s), serde_json::Value::Object(e)) = (
        spec.as_object_mut(),
        extra.get("spec").cloned().unwrap_or(json!({})),
    ) {
        s.extend(e);
    }
    let labels = extra.get("labels").cloned().unwrap_or(json!({}));
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": spec}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
}

async fn add_pvc(c: &TestCluster, name: &str, size: &str, extra: serde_json::Value) {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
        "resources": {"requests": {"storage": size}}});
    if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap(),
    )
    .await
    .unwrap();
}

async fn bound(c: &TestCluster, claim: &str) -> (PersistentVolumeClaim, PersistentVolume) {
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    eventually(30, &format!("{claim} bound"), || async {
        let pvc = pvcs.get(claim).await.unwrap();
        if pvc.status.as_ref()?.phase.as_deref() != Some("Bound") {
            return None;
        }
        let pv = pvs
            .get(pvc.spec.as_ref()?.volume_name.as_deref()?)
            .await
            .unwrap();
        (pv.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some((pvc, pv))
    })
    .await
}

async fn event(c: &TestCluster, object: &str, reason: &str) -> String {
    let events: Api<Event> = c.api("default");
    eventually(30, &format!("a {reason} event of {object}"), || async {
        events
            .list(
                &ListParams::default()
                    .fields(&format!("involvedObject.name={object},reason={reason}")),
            )
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
            .and_then(|e| e.message)
    })
    .await
}

fn annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

/// The smallest fitting volume binds, both ways; a selector, a named volume and a
/// volume reserved for a claim are honoured; both objects get their protection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_matching_volumes() {
    let c = TestCluster::start(CONTROLLERS).await;
    add_pv(&c.client, "pv-1g", "1Gi", json!({})).await;
    add_pv(&c.client, "pv-5g", "5Gi", json!({})).await;
    add_pv(
        &c.client,
        "pv-10g",
        "10Gi",
        json!({"labels": {"tier": "gold"}}),
    )
    .await;
    add_pv(
        &c.client,
        "pv-fast",
        "2Gi",
        json!({"spec": {"storageClassName": "fast"}}),
    )
    .await;
    add_pvc(&c, "data", "2Gi", json!({})).await;
    let (pvc, pv) = bound(&c, "data").await;
    assert_eq!(pv.metadata.name.as_deref(), Some("pv-5g"));
    assert_eq!(
        annotation(&pvc.metadata, "pv.kubernetes.io/bind-completed").as_deref(),
        Some("yes")
    );
    assert_eq!(
        annotation(&pvc.metadata, "pv.kubernetes.io/bound-by-controller").as_deref(),
        Some("yes")
    );
    assert_eq!(
        annotation(&pv.metadata, "pv.kubernetes.io/bound-by-controller").as_deref(),
        Some("yes")
    );
    let st = pvc.status.clone().unwrap();
    assert_eq!(st.capacity.unwrap()["storage"].0, "5Gi");
    assert_eq!(st.access_modes.unwrap(), ["ReadWriteOnce"]);
    let r = pv.spec.clone().unwrap().claim_ref.unwrap();
    assert_eq!(
        (r.name, r.uid),
        (pvc.metadata.name.clone(), pvc.metadata.uid.clone())
    );
    // Protection finalizers on both.
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    eventually(30, "the protection finalizers", || async {
        let pvc = pvcs.get("data").await.unwrap();
        let pv = pvs.get("pv-5g").await.unwrap();
        (pvc.metadata.finalizers? == ["kubernetes.io/pvc-protection"]
            && pv.metadata.finalizers? == ["kubernetes.io/pv-protection"])
        .then_some(())
    })
    .await;

    add_pvc(
        &c,
        "gold",
        "1Gi",
        json!({"selector": {"matchLabels": {"tier": "gold"}}}),
    )
    .await;
    assert_eq!(
        bound(&c, "gold").await.1.metadata.name.as_deref(),
        Some("pv-10g")
    );
    add_pvc(&c, "fast", "1Gi", json!({"storageClassName": "fast"})).await;
    assert_eq!(
        bound(&c, "fast").await.1.metadata.name.as_deref(),
        Some("pv-fast")
    );
    // A bound volume survives its deletion while bound.
    eventually(30, "pv-fast protected", || async {
        pvs.get("pv-fast")
            .await
            .unwrap()
            .metadata
            .finalizers
            .map(|_| ())
    })
    .await;
    pvs.delete("pv-fast", &Default::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        pvs.get("pv-fast")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // Named by the claim: a smaller volume than the best match would be.
    add_pv(&c.client, "pv-named", "3Gi", json!({})).await;
    add_pv(&c.client, "pv-3g", "3Gi", json!({})).await;
    add_pvc(&c, "named", "1Gi", json!({"volumeName": "pv-named"})).await;
    let (pvc, _) = bound(&c, "named").await;
    assert_eq!(pvc.spec.unwrap().volume_name.as_deref(), Some("pv-named"));
    // Reserved by the volume for a claim that comes later.
    add_pv(
        &c.client,
        "pv-reserved",
        "8Gi",
        json!({"spec": {"claimRef": {"namespace": "default", "name": "later"}}}),
    )
    .await;
    // Once the binder has seen the volume (else the claim would take the best
    // match it knows of, as upstream's would).
    eventually(30, "pv-reserved available", || async {
        let pv = pvs.get("pv-reserved").await.unwrap();
        (pv.status?.phase.as_deref() == Some("Available")).then_some(())
    })
    .await;
    add_pvc(&c, "later", "1Gi", json!({})).await;
    assert_eq!(
        bound(&c, "later").await.1.metadata.name.as_deref(),
        Some("pv-reserved")
    );
    // Too big for anything: Pending with upstream's event.
    add_pvc(&c, "huge", "1Ti", json!({"storageClassName": ""})).await;
    assert_eq!(
        event(&c, "huge", "FailedBinding").await,
        "no persistent volumes available for this claim and no storage class is set"
    );
    assert_eq!(
        pvcs.get("huge")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
    // A volume that fits arrives: the waiting claim takes it.
    add_pv(
        &c.client,
        "pv-huge",
        "2Ti",
        json!({"spec": {"storageClassName": ""}}),
    )
    .await;
    assert_eq!(
        bound(&c, "huge").await.1.metadata.name.as_deref(),
        Some("pv-huge")
    );
}

/// A deleted claim releases its volume: Retain keeps it Released, Delete removes
/// it; a claim a scheduled pod uses waits for the pod to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_volumes_are_reclaimed_and_used_claims_wait() {
    let c = TestCluster::start(CONTROLLERS).await;
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    for (claim, volume, policy) in [("a", "keep", "Retain"), ("b", "drop", "Delete")] {
        add_pv(
            &c.client,
            volume,
            "1Gi",
            json!({"spec": {"persistentVolumeReclaimPolicy": policy}}),
        )
        .await;
        add_pvc(&c, claim, "1Gi", json!({"volumeName": volume})).await;
        bound(&c, claim).await;
    }

    // A scheduled pod uses claim a.
    let pods: Api<Pod> = c.api("default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "user"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "a"}}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    eventually(30, "claim a protected", || async {
        pvcs.get("a").await.unwrap().metadata.finalizers.map(|_| ())
    })
    .await;
    pvcs.delete("a", &Default::default()).await.unwrap();
    pvcs.delete("b", &Default::default()).await.unwrap();
    // b goes at once and its Delete volume with it.
    eventually(30, "volume drop deleted", || async {
        pvs.get_opt("drop").await.unwrap().is_none().then_some(())
    })
    .await;
    // a stays (Terminating) while the pod exists.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let a = pvcs.get("a").await.unwrap();
    assert!(a.metadata.deletion_timestamp.is_some());
    assert_eq!(
        a.metadata.finalizers.unwrap(),
        ["kubernetes.io/pvc-protection"]
    );
    pods.delete("user", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually(30, "claim a gone", || async {
        pvcs.get_opt("a").await.unwrap().is_none().then_some(())
    })
    .await;
    let keep = eventually(30, "volume keep released", || async {
        let v = pvs.get("keep").await.unwrap();
        (v.status.as_ref()?.phase.as_deref() == Some("Released")).then_some(v)
    })
    .await;
    // Released keeps the old claim reference: it binds to nothing else.
    assert!(keep.spec.unwrap().claim_ref.is_some());
    // A bound volume being deleted waits; a released one goes.
    pvs.delete("keep", &Default::default()).await.unwrap();
    eventually(30, "volume keep deleted", || async {
        pvs.get_opt("keep").await.unwrap().is_none().then_some(())
    })
    .await;
}

/// WaitForFirstConsumer: the claim waits for the scheduler's node, then takes a
/// volume that node reaches; a provisioner's class hands the claim over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_binding_and_provisioners() {
    let c = TestCluster::start(CONTROLLERS).await;
    let classes: Api<StorageClass> = Api::all(c.client.clone());
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "local"},
                "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"}))
            .unwrap(),
        )
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(c.client.clone());
    for n in ["n1", "n2"] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let affinity = |n: &str| {
        json!({"spec": {"storageClassName": "local", "local": {"path": "/mnt/disk"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions":
                [{"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}}}})
    };
    add_pv(&c.client, "local-n1", "1Gi", affinity("n1")).await;
    add_pv(&c.client, "local-n2", "1Gi", affinity("n2")).await;
    add_pvc(&c, "wait", "1Gi", json!({"storageClassName": "local"})).await;
    assert_eq!(
        event(&c, "wait", "WaitForFirstConsumer").await,
        "waiting for first consumer to be created before binding"
    );
    let pvcs: Api<PersistentVolumeClaim> = c.api("default");
    assert_eq!(
        pvcs.get("wait")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
    pvcs.patch(
        "wait",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "n2"}}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        bound(&c, "wait").await.1.metadata.name.as_deref(),
        Some("local-n2")
    );

    // A class with an external provisioner: the claim is left to it.
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "nfs",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "example.com/nfs"}))
            .unwrap(),
        )
        .await
        .unwrap();
    // No class named: the default class is set.
    let pvcs_api: Api<PersistentVolumeClaim> = c.api("default");
    pvcs_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "share"}, "spec": {
                "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        event(&c, "share", "ExternalProvisioning")
            .await
            .starts_with("Waiting for a volume to be created either by the external provisioner 'example.com/nfs'")
    );
    let share = pvcs.get("share").await.unwrap();
    assert_eq!(
        share.spec.unwrap().storage_class_name.as_deref(),
        Some("nfs")
    );
    assert_eq!(
        annotation(&share.metadata, "volume.kubernetes.io/storage-provisioner").as_deref(),
        Some("example.com/nfs")
    );
}
