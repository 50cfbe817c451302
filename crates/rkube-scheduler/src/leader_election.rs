//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's: the holder
//! renews the lease every `retry_period`; others take it over once it has not been
//! renewed for `lease_duration` (measured on their own clock, from when they last
//! saw it change, so clock skew between servers does not matter). A leader that
//! cannot renew within `renew_deadline` stops leading.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// Errors talking to the API about the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    /// Reading, creating or updating the Lease failed.
    #[error("lease {0}: {1}")]
    Api(String, #[source] kube::Error),
}

/// Timing and identity of an election.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per candidate (`<hostname>_<uuid>`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream's defaults: 15s lease, 10s renew deadline, 2s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A unique identity for this process: hostname and a random suffix.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "rkube".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One candidate in an election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The lease as last seen, and when (our clock) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn err(&self, e: kube::Error) -> LeaderElectionError {
        LeaderElectionError::Api(format!("{}/{}", self.config.namespace, self.config.name), e)
    }

    /// Tries once to acquire or renew the lease; true if we hold it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderElectionError> {
        let me = self.config.identity.clone();
        let secs = self.config.lease_duration.as_secs().max(1) as i32;
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(c) => c,
            Err(e) => return Err(self.err(e)),
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observed = l.spec.map(|s| (s, Instant::now()));
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|(s, _)| *s != spec);
        if changed {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == me;
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.config.lease_duration);
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|(_, seen)| seen.elapsed() >= duration);
        if !held_by_me && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let mut new = spec.clone();
        if !held_by_me {
            new.acquire_time = Some(now());
            new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            new.holder_identity = Some(me);
        }
        new.renew_time = Some(now());
        new.lease_duration_seconds = Some(secs);
        lease.spec = Some(new);
        // The update carries the resourceVersion read above: a concurrent candidate
        // that wrote first makes it fail with a conflict.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observed = l.spec.map(|s| (s, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the lease up if we hold it (`holderIdentity` emptied, as client-go's
    /// `ReleaseOnCancel`), so that another candidate need not wait for it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        spec.acquire_time = Some(now());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the lease"),
            Err(e) => tracing::debug!(error = %e, "releasing the lease"),
        }
    }

    /// Waits until this candidate leads, then runs `lead` while renewing; returns
    /// when leadership is lost (the `lead` future is dropped then) or `lead` ends.
    pub async fn run<F, Fut>(&mut self, lead: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        tracing::info!(
            lease = %format!("{}/{}", self.config.namespace, self.config.name),
            identity = %self.config.identity,
            "became leader"
        );
        let lead = lead();
        tokio::pin!(lead);
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = &mut lead => return,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    tracing::warn!("lost the lease to another candidate");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease");
                    if last_renew.elapsed() >= self.config.renew_deadline {
                        tracing::warn!("could not renew the lease in time: stepping down");
                        return;
                    }
                }
            }
        }
    }
}

/// Runs `component` whenever this process leads the election, until `shutdown`
/// turns true (or its sender goes away): after losing leadership it campaigns again
/// (a fresh `component()` each time); on shutdown it releases the lease so another
/// server takes over at once instead of after the lease duration.
pub async fn run_elected<F, Fut>(
    client: Client,
    config: LeaderElectionConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut component: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut elector = LeaderElector::new(client, config);
    loop {
        let stop = tokio::select! {
            _ = elector.run(&mut component) => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        if stop {
            elector.release().await;
            return;
        }
    }
}
