//! The end of a pod: on deletion, every container gets its preStop hook and the stop
//! signal with the grace period (regular containers together, then sidecars in
//! reverse order), the final status is written, the pod object is deleted for good
//! (grace 0, this UID only), and the sandbox, network, volumes and logs go.
//! A pod that finished (Succeeded/Failed) has its containers and sandbox stopped
//! but stays until someone deletes it.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};

use super::PodWorker;
use super::start::pre_stop;
use crate::status::is_sidecar;

impl PodWorker {
    /// Stops every running instance: regular containers concurrently, then sidecars
    /// and other init containers in reverse spec order.
    async fn stop_all(&mut self, grace: Duration) {
        let (inits, regular) = self.spec_containers();
        let running: Vec<super::Instance> = self
            .instances
            .iter()
            .filter(|i| !i.finished())
            .cloned()
            .collect();
        let pod = self.pod.clone();
        let mut regular_jobs = Vec::new();
        let mut rest = Vec::new();
        for i in running {
            if let Some(h) = self.probers.remove(&i.id) {
                for a in h {
                    a.abort();
                }
            }
            self.ctx.events.pod(
                &pod,
                Some(&i.name),
                crate::events::EventType::Normal,
                "Killing",
                &format!("Stopping container {}", i.name),
            );
            if regular.iter().any(|c| c.name == i.name) {
                regular_jobs.push(i);
            } else {
                rest.push(i);
            }
        }
        let kill = |i: super::Instance| {
            let spec = self.container_spec(&i.name);
            let target = spec.as_ref().map(|c| self.target(c, &i.id));
            let ctx = self.ctx.clone();
            let pod = pod.clone();
            async move {
                let left = match (&spec, &target) {
                    (Some(c), Some(t)) if i.running() => {
                        pre_stop(&ctx.events, &pod, c, t, grace).await
                    }
                    _ => grace,
                };
                if let Err(e) = ctx.runtime.stop_container(&i.id, left).await {
                    tracing::warn!(container = %i.name, error = %e, "stopping a container failed");
                }
            }
        };
        join_all(regular_jobs.into_iter().map(kill)).await;
        // Sidecars last, the last-started first.
        let order = |i: &super::Instance| {
            inits
                .iter()
                .position(|c| c.name == i.name && is_sidecar(c))
                .unwrap_or(usize::MAX)
        };
        rest.sort_by_key(|i| std::cmp::Reverse(order(i)));
        for i in rest {
            kill(i).await;
        }
        self.refresh_instances().await;
    }

    /// The pod finished: nothing runs any more, and its sandbox goes.
    pub(crate) async fn stop_everything(&mut self) {
        if self.instances.iter().any(|i| !i.finished()) {
            let grace = self.grace();
            self.stop_all(grace).await;
        }
        if let Some(sb) = self.sandbox.clone() {
            self.last_ips = sb.ips.clone();
            self.release_sandbox(&sb).await;
        }
    }

    /// Takes the sandbox's network and namespaces away, keeping the container
    /// records (their final states are still reported).
    async fn release_sandbox(&mut self, sb: &super::PodSandbox) {
        if sb.netns.is_some()
            && let Err(e) = self.ctx.network.teardown(&sb.id).await
        {
            tracing::warn!(pod = %self.name(), error = %e, "pod network teardown failed");
        }
        if let Err(e) = self
            .ctx
            .runtime
            .stop_pod_sandbox(&sb.id, Duration::ZERO)
            .await
        {
            tracing::warn!(pod = %self.name(), error = %e, "stopping the sandbox failed");
        }
        self.stopped_sandboxes.push(sb.clone());
        self.sandbox = None;
    }

    /// Ends the pod. `in_api`: the pod still exists (graceful deletion), so its final
    /// status is written and the object deleted when everything stopped.
    pub(crate) async fn terminate(&mut self, grace: Duration, in_api: bool) {
        tracing::info!(pod = %self.name(), grace = ?grace, "terminating pod");
        self.refresh_instances().await;
        self.stop_all(grace).await;
        if let Some(sb) = self.sandbox.clone() {
            self.last_ips = sb.ips.clone();
        }
        if in_api {
            if self.terminal.is_none() {
                self.terminal = Some((String::new(), None, None));
            }
            self.publish();
            // The final status goes out before the object does.
            for _ in 0..100 {
                if self.ctx.status.is_synced(&self.uid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let name = self.pod.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => tracing::warn!(pod = %self.name(), error = %e, "deleting the pod failed"),
            }
        }
        self.cleanup().await;
    }

    /// Removes everything the pod left on the node.
    async fn cleanup(&mut self) {
        let mut sandboxes: Vec<super::PodSandbox> = self.stopped_sandboxes.drain(..).collect();
        sandboxes.extend(self.sandbox.take());
        for sb in sandboxes {
            if sb.netns.is_some() {
                let _ = self.ctx.network.teardown(&sb.id).await;
            }
            if let Err(e) = self.ctx.runtime.remove_pod_sandbox(&sb.id).await {
                tracing::warn!(pod = %self.name(), error = %e, "removing the sandbox failed");
            }
        }
        for i in std::mem::take(&mut self.instances) {
            let _ = self.ctx.runtime.remove_container(&i.id).await;
            self.ctx.probes.forget(&i.id);
        }
        if let Err(e) = self.ctx.volumes.teardown(&self.uid) {
            tracing::warn!(pod = %self.name(), error = %e, "removing the pod's volumes failed");
        }
        let logs = self.ctx.config.pod_log_dir.join(format!(
            "{}_{}_{}",
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or(""),
            self.uid
        ));
        let _ = std::fs::remove_dir_all(logs);
        self.ctx.registry.remove(
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or(""),
            &self.uid,
        );
        self.ctx.status.forget(&self.uid);
    }
}
