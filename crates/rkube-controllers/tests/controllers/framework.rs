//! The framework: leader election, events, informers.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::Api;
use kube::api::{ListParams, PostParams};
use rkube_apiserver::{ApiServer, Config};
use rkube_controllers::informer::{Change, Informer};
use rkube_controllers::leader_election::LeaderElectionConfig;
use rkube_controllers::{ControllerContext, ControllerManager, ControllerManagerConfig, FakeClock};
use rkube_store::memory::MemoryStore;

use crate::common::{admin, api_server, client_as, eventually};

fn fast_election(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::controller_manager(identity)
    }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt("kube-controller-manager")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Two API servers on one datastore, a manager on each: one leads at a time; when
/// the leader dies the other takes over after the lease runs out, and a manager
/// that shuts down hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_manager_leads_and_another_takes_over() {
    let store = Arc::new(MemoryStore::new());
    let a = ApiServer::new(Config::default(), store.clone())
        .await
        .unwrap();
    let b = ApiServer::new(Config::default(), store.clone())
        .await
        .unwrap();
    let start = |api: &Arc<ApiServer>, id: &str| {
        let client = client_as(api, "system:kube-controller-manager", &["system:masters"]);
        ControllerManager::start(
            client,
            ControllerManagerConfig {
                controllers: vec!["*".into()],
                leader_election: Some(fast_election(id)),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let ma = start(&a, "server-a");
    let mut la = ma.leading();
    la.wait_for(|l| *l).await.unwrap();
    let mb = start(&b, "server-b");
    let lb = mb.leading();
    let leases: Api<Lease> = Api::namespaced(admin(&b), "kube-system");
    assert_eq!(holder(&leases).await.as_deref(), Some("server-a"));
    // b stays a candidate while a renews.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(!*lb.borrow(), "two managers lead at once");
    assert_eq!(holder(&leases).await.as_deref(), Some("server-a"));

    // a crashes: b takes over once the lease has expired.
    let crashed = tokio::time::Instant::now();
    ma.abort();
    let mut lb2 = lb.clone();
    tokio::time::timeout(Duration::from_secs(10), lb2.wait_for(|l| *l))
        .await
        .expect("b never took over")
        .unwrap();
    // Not before the lease ran out: two seconds after the last renewal b saw, which
    // was at most one retry period before the crash.
    assert!(
        crashed.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        crashed.elapsed()
    );
    let lease = leases.get("kube-controller-manager").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("server-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.lease_duration_seconds, Some(2));

    // b shuts down cleanly: a new candidate gets the lease without waiting.
    let mc = start(&a, "server-c");
    mb.shutdown().await;
    let mut lc = mc.leading();
    tokio::time::timeout(Duration::from_millis(900), lc.wait_for(|l| *l))
        .await
        .expect("c did not take over at once after b released the lease")
        .unwrap();
    mc.shutdown().await;
}

/// Repeats of one event raise its count; ten different messages of one reason are
/// combined, as `kubectl describe` shows them.
#[tokio::test]
async fn events_are_counted_and_combined() {
    let api = api_server().await;
    let client = admin(&api);
    let clock = Arc::new(FakeClock::new("2025-03-01T10:00:00Z".parse().unwrap()));
    let ctx = ControllerContext::new(
        client.clone(),
        ControllerManagerConfig {
            clock: clock.clone(),
            ..Default::default()
        },
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "subject"}})).unwrap(),
        )
        .await
        .unwrap();
    let rec = ctx.recorder("test-controller");
    rec.normal(&cm, "Poked", "poked once");
    clock.advance(SignedDuration::from_secs(30));
    rec.normal(&cm, "Poked", "poked once");
    clock.advance(SignedDuration::from_secs(30));
    rec.normal(&cm, "Poked", "poked once");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields("involvedObject.name=subject,reason=Poked");
    let ev = eventually(5, "three counted events", || async {
        let list = events.list(&lp).await.unwrap();
        (list.items.len() == 1 && list.items[0].count == Some(3)).then(|| list.items[0].clone())
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(ev.message.as_deref(), Some("poked once"));
    assert_eq!(
        ev.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("test-controller")
    );
    assert_eq!(ev.involved_object.uid, cm.metadata.uid);
    assert_eq!(ev.involved_object.kind.as_deref(), Some("ConfigMap"));
    let first: Timestamp = ev.first_timestamp.unwrap().0;
    let last: Timestamp = ev.last_timestamp.unwrap().0;
    assert_eq!(first.to_string(), "2025-03-01T10:00:00Z");
    assert_eq!(last.to_string(), "2025-03-01T10:01:00Z");

    for i in 0..12 {
        rec.warning(&cm, "Failed", format!("failure number {i}"));
    }
    let lp = ListParams::default().fields("involvedObject.name=subject,reason=Failed");
    let list = eventually(5, "combined events", || async {
        let list = events.list(&lp).await.unwrap();
        let combined = list.items.iter().find(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("(combined from similar events): "))
        });
        (combined.is_some_and(|e| e.count == Some(3))).then_some(list)
    })
    .await;
    // Nine single events, then one combined event counted three times.
    assert_eq!(list.items.len(), 10, "{:?}", list.items);
    assert!(
        list.items
            .iter()
            .all(|e| e.type_.as_deref() == Some("Warning"))
    );
}

/// An informer reports additions, updates with the old object, and deletions; a
/// late subscriber first gets what is already cached.
#[tokio::test]
async fn informers_report_changes() {
    let api = api_server().await;
    let client = admin(&api);
    let informer = Informer::<ConfigMap>::start(client.clone());
    informer.synced().await;
    let mut changes = informer.subscribe();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mk = |v: &str| {
        serde_json::from_value::<ConfigMap>(
            serde_json::json!({"metadata": {"name": "watched"}, "data": {"v": v}}),
        )
        .unwrap()
    };
    cms.create(&PostParams::default(), &mk("1")).await.unwrap();
    let mut cur = cms.get("watched").await.unwrap();
    cur.data = mk("2").data;
    cms.replace("watched", &PostParams::default(), &cur)
        .await
        .unwrap();
    cms.delete("watched", &Default::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let c = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("a change")
            .unwrap();
        match c {
            Change::Applied { old, new } if new.metadata.name.as_deref() == Some("watched") => {
                let v = |c: &ConfigMap| c.data.as_ref().unwrap()["v"].clone();
                seen.push(format!("{:?}->{}", old.map(|o| v(&o)), v(&new)));
            }
            Change::Deleted(o) if o.metadata.name.as_deref() == Some("watched") => {
                seen.push("deleted".into())
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["None->1", "Some(\"1\")->2", "deleted"]);
    assert_eq!(
        informer
            .list_namespace("default")
            .iter()
            .filter(|c| c.metadata.name.as_deref() == Some("watched"))
            .count(),
        0
    );
    cms.create(&PostParams::default(), &mk("3")).await.unwrap();
    eventually(5, "the cache to follow", || async {
        informer.get(Some("default"), "watched").map(|_| ())
    })
    .await;
    let mut late = informer.subscribe();
    let mut names = Vec::new();
    while let Ok(c) = late.try_recv() {
        if let Change::Applied { new, .. } = c {
            names.push(new.metadata.name.clone().unwrap());
        }
    }
    assert!(names.contains(&"watched".to_string()), "{names:?}");
}

/// An informer's owner index follows an object's controller reference: owned
/// objects and orphans are claimable, another controller's are not, and a change
/// of controller or a deletion moves the object in the index.
#[tokio::test]
async fn informers_index_objects_by_controller() {
    let api = api_server().await;
    let client = admin(&api);
    let informer = Informer::<ConfigMap>::start(client.clone());
    informer.synced().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owned_by = |name: &str, uid: Option<&str>| {
        let refs: Vec<serde_json::Value> = uid
            .map(|u| {
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                    "uid": u, "controller": true})
            })
            .into_iter()
            .collect();
        serde_json::from_value::<ConfigMap>(serde_json::json!({
            "metadata": {"name": name, "ownerReferences": refs}}))
        .unwrap()
    };
    for (name, uid) in [
        ("mine", Some("u-1")),
        ("theirs", Some("u-2")),
        ("free", None),
    ] {
        cms.create(&PostParams::default(), &owned_by(name, uid))
            .await
            .unwrap();
    }
    let names = |objs: Vec<std::sync::Arc<ConfigMap>>| {
        let mut n: Vec<String> = objs
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .filter(|n| ["mine", "theirs", "free"].contains(&n.as_str()))
            .collect();
        n.sort();
        n
    };
    eventually(5, "the three objects indexed", || async {
        (names(informer.list_claimable("default", "u-1")) == ["free", "mine"]).then_some(())
    })
    .await;
    assert_eq!(names(informer.list_controlled_by("u-2")), ["theirs"]);
    assert!(names(informer.list_claimable("kube-system", "u-1")).is_empty());

    // "theirs" is released and becomes an orphan; "mine" is deleted.
    let mut theirs = cms.get("theirs").await.unwrap();
    theirs.metadata.owner_references = None;
    cms.replace("theirs", &PostParams::default(), &theirs)
        .await
        .unwrap();
    cms.delete("mine", &Default::default()).await.unwrap();
    eventually(5, "the index to follow", || async {
        (names(informer.list_claimable("default", "u-1")) == ["free", "theirs"]).then_some(())
    })
    .await;
    assert!(informer.list_controlled_by("u-2").is_empty());
}
