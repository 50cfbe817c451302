//! Leader election on a coordination.k8s.io/v1 Lease, as upstream's client-go does:
//! a candidate takes the lease when its holder has not renewed it for a lease
//! duration (measured on the candidate's own clock from when it saw the last change,
//! so clock skew between servers does not matter), the leader renews it every retry
//! period and steps down when it could not renew within the renew deadline.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::clock::Clock;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    /// The renew deadline must be shorter than the lease duration, and the retry
    /// period shorter than the renew deadline.
    #[error("invalid leader election timings: {0}")]
    InvalidTimings(String),
}

/// Where the lease is and how long its terms are.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (`holderIdentity`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// The kube-controller-manager lease with upstream's timings (15s, 10s, 2s).
    pub fn controller_manager(identity: impl Into<String>) -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    pub fn validate(&self) -> Result<(), LeaderElectionError> {
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaderElectionError::InvalidTimings(
                "the lease duration must be greater than the renew deadline".into(),
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(LeaderElectionError::InvalidTimings(
                "the renew deadline must be greater than the retry period".into(),
            ));
        }
        Ok(())
    }
}

/// One candidate for the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    clock: Arc<dyn Clock>,
    /// The last lease spec seen, and when (on our clock) it was first seen.
    observed: Option<(LeaseSpec, Timestamp)>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        config: LeaderElectionConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LeaderElectionError> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            clock,
            observed: None,
        })
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            if self.try_acquire_or_renew().await {
                tracing::info!(
                    "{}: acquired lease {}/{}",
                    self.config.identity,
                    self.config.namespace,
                    self.config.name
                );
                return;
            }
            tokio::time::sleep(jitter(self.config.retry_period)).await;
        }
    }

    /// Renews the lease every retry period; returns when it could not be renewed
    /// within the renew deadline (leadership is lost).
    pub async fn hold(&mut self) {
        loop {
            let deadline = tokio::time::Instant::now() + self.config.renew_deadline;
            let renewed = loop {
                if self.try_acquire_or_renew().await {
                    break true;
                }
                if tokio::time::Instant::now() + self.config.retry_period > deadline {
                    break false;
                }
                tokio::time::sleep(self.config.retry_period).await;
            };
            if !renewed {
                tracing::warn!(
                    "{}: failed to renew lease {}/{}: leadership lost",
                    self.config.identity,
                    self.config.namespace,
                    self.config.name
                );
                return;
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Gives the lease up (on shutdown) so another candidate takes it at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = MicroTime(self.clock.now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..Default::default()
        });
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::debug!("releasing lease {}: {e}", self.config.name);
        }
    }

    /// One attempt to take or renew the lease; whether we hold it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        let now = self.clock.now();
        let duration_secs = self.config.lease_duration.as_secs().max(1) as i32;
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("reading lease {}: {e}", self.config.name);
                return false;
            }
        };
        let Some(mut lease) = lease else {
            let spec = LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observed = Some((spec, now));
                    true
                }
                Err(e) => {
                    tracing::debug!("creating lease {}: {e}", self.config.name);
                    false
                }
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|(s, _)| *s != current);
        if changed {
            self.observed = Some((current.clone(), now));
        }
        let observed_at = self.observed.as_ref().map(|(_, t)| *t).unwrap_or(now);
        let holder = current.holder_identity.clone().unwrap_or_default();
        let is_leader = holder == self.config.identity;
        let term = SignedDuration::from_secs(i64::from(
            current.lease_duration_seconds.unwrap_or(duration_secs),
        ));
        let valid = observed_at.checked_add(term).is_ok_and(|until| until > now);
        if !holder.is_empty() && valid && !is_leader {
            return false;
        }
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: if is_leader {
                current.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                current.lease_transitions.unwrap_or(0) + if is_leader { 0 } else { 1 },
            ),
            ..Default::default()
        };
        lease.spec = Some(spec.clone());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = Some((spec, now));
                true
            }
            Err(e) => {
                tracing::debug!("updating lease {}: {e}", self.config.name);
                false
            }
        }
    }
}

/// Up to 20% more than `d`, so candidates do not retry in lock step.
fn jitter(d: Duration) -> Duration {
    let extra = uuid::Uuid::new_v4().as_u128() % 1000;
    d + d.mul_f64(0.2 * extra as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_checked() {
        let mut c = LeaderElectionConfig::controller_manager("a");
        assert!(c.validate().is_ok());
        c.renew_deadline = Duration::from_secs(20);
        assert!(c.validate().is_err());
        c.renew_deadline = Duration::from_secs(1);
        assert!(c.validate().is_err());
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(2) && j <= Duration::from_millis(2400));
        }
    }
}
