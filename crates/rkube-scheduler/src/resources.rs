//! Compute resources as integers: what a pod requests and what a node offers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_api::quantity::Quantity as Q;

/// CPU assumed for a container without a CPU request, when scoring (upstream's
/// `DefaultMilliCPURequest`), so that many request-less pods do not pile on one node.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request, when scoring.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource. Extended resources (`example.com/gpu`, `hugepages-2Mi`)
/// are kept in a small sorted list: most pods have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: Vec<(String, i64)>,
}

fn parse(q: &Quantity) -> Option<Q> {
    Q::parse(&q.0).ok()
}

/// Whether a resource name is an extended or hugepages resource the scheduler counts.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

impl Resource {
    /// The resources in a `ResourceList` (requests, or a node's allocatable).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resource {
        let mut r = Resource::default();
        r.add_list(list);
        r
    }

    pub fn add_list(&mut self, list: Option<&BTreeMap<String, Quantity>>) {
        for (name, q) in list.into_iter().flatten() {
            let Some(q) = parse(q) else { continue };
            match name.as_str() {
                "cpu" => self.milli_cpu += q.milli_value(),
                "memory" => self.memory += q.value(),
                "ephemeral-storage" => self.ephemeral_storage += q.value(),
                "pods" => self.pods += q.value(),
                other if is_scalar(other) => self.add_scalar(other, q.value()),
                _ => {}
            }
        }
    }

    fn add_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 += v,
            Err(i) => self.scalar.insert(i, (name.to_string(), v)),
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (n, v) in &other.scalar {
            self.add_scalar(n, *v);
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (n, v) in &other.scalar {
            self.add_scalar(n, -*v);
        }
    }

    /// Each resource the larger of the two.
    fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (n, v) in &other.scalar {
            let cur = self.scalar(n);
            if *v > cur {
                self.add_scalar(n, v - cur);
            }
        }
    }
}

fn container_requests(c: &Container) -> Resource {
    Resource::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// What a pod requests, as upstream computes it: the sum of its containers and of its
/// sidecars (restartable init containers), or the largest init container (plus the
/// sidecars started before it) if that is more, plus the pod overhead. Counts one pod.
pub fn pod_requests(spec: &PodSpec) -> Resource {
    pod_requests_with(spec, container_requests)
}

/// Like [`pod_requests`], but a container without a CPU or memory request counts the
/// scoring defaults (upstream's "non-zero" requests).
pub fn pod_non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let r = pod_requests_with(spec, |c| {
        let mut r = container_requests(c);
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if req.is_none_or(|m| !m.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if req.is_none_or(|m| !m.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
        r
    });
    (r.milli_cpu, r.memory)
}

fn pod_requests_with(spec: &PodSpec, per_container: impl Fn(&Container) -> Resource) -> Resource {
    let mut sum = Resource::default();
    for c in &spec.containers {
        sum.add(&per_container(c));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = per_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            // A sidecar runs beside every later init container.
            init_max.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_max.max_with(&during);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_max);
    sum.add_list(spec.overhead.as_ref());
    sum.pods = 1;
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: Option<&str>, mem: Option<&str>) -> Container {
        let mut req = BTreeMap::new();
        if let Some(c) = cpu {
            req.insert("cpu".to_string(), Quantity(c.into()));
        }
        if let Some(m) = mem {
            req.insert("memory".to_string(), Quantity(m.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sums_containers_and_takes_the_largest_init() {
        let spec = PodSpec {
            containers: vec![
                container(Some("250m"), Some("64Mi")),
                container(Some("250m"), None),
            ],
            init_containers: Some(vec![container(Some("2"), Some("1Mi"))]),
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.memory, 64 << 20);
        assert_eq!(r.pods, 1);
        assert_eq!(
            pod_non_zero_requests(&spec),
            (2000, (64 << 20) + DEFAULT_MEMORY_REQUEST)
        );
    }

    #[test]
    fn sidecars_add_up() {
        let mut sidecar = container(Some("100m"), None);
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container(Some("200m"), None)],
            init_containers: Some(vec![sidecar, container(Some("250m"), None)]),
            overhead: Some([("cpu".to_string(), Quantity("10m".into()))].into()),
            ..Default::default()
        };
        // max(200 + 100, 100 + 250) + 10 overhead
        assert_eq!(pod_requests(&spec).milli_cpu, 360);
    }

    #[test]
    fn extended_resources() {
        let r = Resource::from_list(Some(
            &[
                ("example.com/gpu".to_string(), Quantity("2".into())),
                ("hugepages-2Mi".to_string(), Quantity("4Mi".into())),
                ("pods".to_string(), Quantity("110".into())),
            ]
            .into(),
        ));
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.pods, 110);
    }
}
