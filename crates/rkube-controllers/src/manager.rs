//! The controller manager: while it holds the `kube-controller-manager` Lease, it
//! runs the enabled controllers over shared informers and one event writer; when it
//! loses the lease it stops them all and stands for election again.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::clock::{Clock, SystemClock};
use crate::events::{EventBroadcaster, EventRecorder};
use crate::informer::InformerFactory;
use crate::leader_election::{LeaderElectionConfig, LeaderElectionError, LeaderElector};

/// Errors of the controller manager itself.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The leader election settings are unusable.
    #[error(transparent)]
    LeaderElection(#[from] LeaderElectionError),
    /// `--controllers` names a controller that does not exist.
    #[error("unknown controller {0:?} (known: {1})")]
    UnknownController(String, String),
}

/// Settings of a controller manager.
#[derive(Clone)]
pub struct ControllerManagerConfig {
    /// Which controllers run, in upstream's `--controllers` syntax: `*` for all,
    /// `name` to enable one, `-name` to disable one.
    pub controllers: Vec<String>,
    /// `None` runs the controllers at once, without a lease (one server only).
    pub leader_election: Option<LeaderElectionConfig>,
    /// The cluster CA bundle published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: Option<String>,
    pub clock: Arc<dyn Clock>,
    /// How many keys each controller syncs at once.
    pub workers: usize,
    /// Terminated pods kept before the pod garbage collector deletes the oldest
    /// (0 keeps them all), as `--terminated-pod-gc-threshold`.
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs (upstream's fixed 20 s; tests
    /// shorten it).
    pub pod_gc_period: std::time::Duration,
}

impl Default for ControllerManagerConfig {
    fn default() -> Self {
        ControllerManagerConfig {
            controllers: vec!["*".into()],
            leader_election: None,
            root_ca_pem: None,
            clock: Arc::new(SystemClock),
            workers: 5,
            terminated_pod_gc_threshold: 12500,
            pod_gc_period: crate::podgc::PERIOD,
        }
    }
}

impl ControllerManagerConfig {
    /// Whether a controller is on.
    pub fn enabled(&self, name: &str) -> bool {
        let mut star = false;
        for c in &self.controllers {
            if c.strip_prefix('-') == Some(name) {
                return false;
            }
            if c == name {
                return true;
            }
            star |= c == "*";
        }
        star
    }

    fn check_names(&self) -> Result<(), ManagerError> {
        let known: Vec<&str> = CONTROLLERS.iter().map(|c| c.name).collect();
        for c in &self.controllers {
            let name = c.strip_prefix('-').unwrap_or(c);
            if name != "*" && !known.contains(&name) {
                return Err(ManagerError::UnknownController(
                    name.to_string(),
                    known.join(", "),
                ));
            }
        }
        Ok(())
    }
}

/// What a controller gets when it starts: the client, the shared informers, an
/// event recorder, the clock and the manager's settings.
#[derive(Clone)]
pub struct ControllerContext {
    pub client: Client,
    pub informers: InformerFactory,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ControllerManagerConfig>,
    events: Arc<EventBroadcaster>,
}

impl ControllerContext {
    /// A context outside a manager (tests of one controller).
    pub fn new(client: Client, config: ControllerManagerConfig) -> Self {
        let clock = config.clock.clone();
        ControllerContext {
            informers: InformerFactory::new(client.clone()),
            events: Arc::new(EventBroadcaster::start(client.clone(), clock.clone())),
            client,
            clock,
            config: Arc::new(config),
        }
    }

    /// An event recorder for a component (`deployment-controller`, ...).
    pub fn recorder(&self, component: &str) -> EventRecorder {
        self.events.recorder(component)
    }
}

/// How a controller is started: it runs until the manager stops it.
pub type StartFn = fn(ControllerContext) -> BoxFuture<'static, ()>;

/// A controller the manager knows, by upstream's `--controllers` name.
pub struct ControllerDescriptor {
    pub name: &'static str,
    pub start: StartFn,
}

/// Every controller, in start order. A new controller is one more line here.
pub static CONTROLLERS: &[ControllerDescriptor] = &[
    ControllerDescriptor {
        name: "namespace",
        start: crate::namespace::start,
    },
    ControllerDescriptor {
        name: "endpoints",
        start: crate::endpoints::start,
    },
    ControllerDescriptor {
        name: "endpointslice",
        start: crate::endpointslice::start,
    },
    ControllerDescriptor {
        name: "garbage-collector",
        start: crate::garbage_collector::start,
    },
    ControllerDescriptor {
        name: "deployment",
        start: crate::deployment::start,
    },
    ControllerDescriptor {
        name: "replicaset",
        start: crate::replicaset::start,
    },
    ControllerDescriptor {
        name: "job",
        start: crate::job::start,
    },
    ControllerDescriptor {
        name: "cronjob",
        start: crate::cronjob::start,
    },
    ControllerDescriptor {
        name: "ttl-after-finished",
        start: crate::ttl_after_finished::start,
    },
    ControllerDescriptor {
        name: "daemonset",
        start: crate::daemonset::start,
    },
    ControllerDescriptor {
        name: "statefulset",
        start: crate::statefulset::start,
    },
    ControllerDescriptor {
        name: "persistentvolume-binder",
        start: crate::volume::binder::start,
    },
    ControllerDescriptor {
        name: "pvc-protection",
        start: crate::volume::protection::start_pvc_protection,
    },
    ControllerDescriptor {
        name: "pv-protection",
        start: crate::volume::protection::start_pv_protection,
    },
    ControllerDescriptor {
        name: "pod-garbage-collector",
        start: crate::podgc::start,
    },
    ControllerDescriptor {
        name: "serviceaccount",
        start: crate::serviceaccount::start,
    },
    ControllerDescriptor {
        name: "root-ca-certificate-publisher",
        start: crate::root_ca::start,
    },
];

/// A running controller manager.
pub struct ControllerManager {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    leading: watch::Receiver<bool>,
}

impl ControllerManager {
    /// Starts the manager in the background.
    pub fn start(client: Client, config: ControllerManagerConfig) -> Result<Self, ManagerError> {
        config.check_names()?;
        let elector = match &config.leader_election {
            Some(le) => Some(LeaderElector::new(
                client.clone(),
                le.clone(),
                config.clock.clone(),
            )?),
            None => None,
        };
        let (stop, stopped) = oneshot::channel();
        let (leading_tx, leading) = watch::channel(false);
        let task = tokio::spawn(run(client, config, elector, stopped, leading_tx));
        Ok(ControllerManager {
            stop: Some(stop),
            task,
            leading,
        })
    }

    /// Whether this manager is the active one (changes as leadership moves).
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops the controllers and gives the lease up.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops at once without giving the lease up, as a crash would.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// One term of leadership: the controllers and what they share. Dropping it stops
/// everything it started.
struct Term {
    tasks: JoinSet<&'static str>,
    _ctx: ControllerContext,
}

fn start_term(client: &Client, config: &Arc<ControllerManagerConfig>) -> Term {
    let ctx = ControllerContext {
        client: client.clone(),
        informers: InformerFactory::new(client.clone()),
        events: Arc::new(EventBroadcaster::start(
            client.clone(),
            config.clock.clone(),
        )),
        clock: config.clock.clone(),
        config: config.clone(),
    };
    let mut tasks = JoinSet::new();
    for c in CONTROLLERS.iter().filter(|c| config.enabled(c.name)) {
        tracing::debug!("starting controller {}", c.name);
        let fut = (c.start)(ctx.clone());
        let name = c.name;
        tasks.spawn(async move {
            fut.await;
            name
        });
    }
    Term { tasks, _ctx: ctx }
}

async fn run(
    client: Client,
    config: ControllerManagerConfig,
    mut elector: Option<LeaderElector>,
    stopped: oneshot::Receiver<()>,
    leading: watch::Sender<bool>,
) {
    let config = Arc::new(config);
    let mut stopped = std::pin::pin!(stopped);
    loop {
        if let Some(le) = elector.as_mut() {
            tokio::select! {
                _ = le.acquire() => {}
                _ = &mut stopped => return,
            }
        }
        let _ = leading.send(true);
        let mut term = start_term(&client, &config);
        let stop_now = {
            let lost = async {
                match elector.as_mut() {
                    Some(le) => le.hold().await,
                    None => std::future::pending().await,
                }
            };
            let mut lost = std::pin::pin!(lost);
            loop {
                tokio::select! {
                    _ = &mut lost => break false,
                    _ = &mut stopped => break true,
                    Some(done) = term.tasks.join_next() => match done {
                        Ok(name) => tracing::warn!("controller {name} stopped"),
                        Err(e) if e.is_panic() => tracing::error!("a controller panicked: {e}"),
                        Err(_) => {}
                    },
                }
            }
        };
        drop(term);
        let _ = leading.send(false);
        if stop_now {
            if let Some(le) = elector.as_mut() {
                le.release().await;
            }
            return;
        }
    }
}

/// Runs `fut` until `stop` resolves (helper for controllers' own loops).
pub async fn until<F: Future<Output = ()>>(fut: F, stop: impl Future<Output = ()>) {
    tokio::select! {
        _ = fut => {}
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_follows_upstream() {
        let mut c = ControllerManagerConfig::default();
        assert!(c.enabled("deployment"));
        c.controllers = vec!["*".into(), "-deployment".into()];
        assert!(!c.enabled("deployment"));
        assert!(c.enabled("replicaset"));
        c.controllers = vec!["replicaset".into()];
        assert!(!c.enabled("deployment"));
        assert!(c.enabled("replicaset"));
    }
}
