//! Leader election on a Lease, and two schedulers sharing one API server: one
//! schedules, the other takes over when the first stops.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Options, TestCluster, pod};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use rkube_scheduler::SchedulerStats;
use rkube_scheduler::leader_election::{LeaderElectionConfig, LeaderElector, run_elected};

fn fast(name: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(700),
        retry_period: Duration::from_millis(100),
        ..LeaderElectionConfig::new("kube-system", name, identity)
    }
}

#[tokio::test]
async fn one_leader_then_a_takeover_when_it_goes_silent() {
    let c = TestCluster::start_with(Options {
        nodes: 0,
        scheduler: false,
        ..Default::default()
    })
    .await;
    let mut a = LeaderElector::new(c.client.clone(), fast("test-lease", "a"));
    let mut b = LeaderElector::new(c.client.clone(), fast("test-lease", "b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a.try_acquire_or_renew().await.unwrap(), "the leader renews");
        assert!(
            !b.try_acquire_or_renew().await.unwrap(),
            "a renewed lease is not taken"
        );
    }
    // `a` stops renewing: `b` takes over once the lease is a second old on its clock.
    let silent = Instant::now();
    while !b.try_acquire_or_renew().await.unwrap() {
        assert!(silent.elapsed() < Duration::from_secs(5), "no takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        silent.elapsed() >= Duration::from_millis(900),
        "taken over too early"
    );
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let spec = leases.get("test-lease").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(
        !a.try_acquire_or_renew().await.unwrap(),
        "the old leader lost it"
    );
    // Releasing hands the lease over at once.
    b.release().await;
    assert!(a.try_acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn only_the_elected_scheduler_binds_pods() {
    let c = TestCluster::start_with(Options {
        scheduler: false,
        ..Default::default()
    })
    .await;
    let mut stops = Vec::new();
    let mut stats = Vec::new();
    for id in ["first", "second"] {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let s = Arc::new(SchedulerStats::default());
        let (client, s2) = (c.client.clone(), s.clone());
        tokio::spawn(run_elected(
            c.client.clone(),
            fast(rkube_scheduler::SCHEDULER_LEASE, id),
            stopped,
            move || {
                rkube_scheduler::run_with_stats(
                    client.clone(),
                    common::scheduler_config(),
                    s2.clone(),
                )
            },
        ));
        stops.push(stop);
        stats.push(s);
        // The first candidate wins the election.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..4 {
        c.create_pod(pod(&format!("a-{i}"), "100m")).await;
        c.wait_bound(&format!("a-{i}")).await;
    }
    assert_eq!(stats[0].bound.load(Ordering::Relaxed), 4);
    assert_eq!(stats[1].bound.load(Ordering::Relaxed), 0);

    // The leader shuts down (releasing the lease): the other one takes over.
    stops[0].send(true).unwrap();
    for i in 0..4 {
        c.create_pod(pod(&format!("b-{i}"), "100m")).await;
        c.wait_bound(&format!("b-{i}")).await;
    }
    assert_eq!(stats[0].bound.load(Ordering::Relaxed), 4);
    assert_eq!(stats[1].bound.load(Ordering::Relaxed), 4);
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let holder = leases
        .get(rkube_scheduler::SCHEDULER_LEASE)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("second"));
}
