//! Conversions from Kubernetes objects to the proxy's and the DNS's structs.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointSlice};

use crate::dns::{DnsData, DnsEndpoint, DnsPod, DnsPort, DnsService};
use crate::pod_network::NodeRoute;
use crate::proxy::{Endpoint, Protocol, ServicePort};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

fn cluster_ips(spec: &ServiceSpec) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|s| v4(s))
        .collect();
    ips.dedup();
    ips
}

/// Slices of each Service, by (namespace, service name).
fn slices_by_service(slices: &[EndpointSlice]) -> HashMap<(String, String), Vec<&EndpointSlice>> {
    let mut map: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for s in slices.iter().filter(|s| s.address_type == "IPv4") {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        map.entry((ns, svc.clone())).or_default().push(s);
    }
    map
}

/// Ready, serving and terminating, with upstream's defaults for unset conditions.
fn conditions(ep: &SliceEndpoint) -> (bool, bool, bool) {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    (ready, serving, terminating)
}

/// Every port of every Service with a ClusterIP, with its endpoints (IPv4 only).
/// ExternalName and headless Services are left out: the proxy has nothing to do
/// for them.
pub fn service_ports(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
    let by_service = slices_by_service(slices);
    let mut out = Vec::new();
    for svc in services {
        let (Some(spec), Some(name)) = (&svc.spec, &svc.metadata.name) else {
            continue;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            continue;
        }
        let Some(cluster_ip) = cluster_ips(spec).first().copied() else {
            continue;
        };
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| v4(s))
            .collect();
        let lb_ips: Vec<Ipv4Addr> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref().and_then(v4))
            .collect();
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
                .clamp(1, 86400) as u32
        });
        let node_port_type = ty == "NodePort" || ty == "LoadBalancer";
        let svc_slices = by_service.get(&(ns.clone(), name.clone()));
        for port in spec.ports.iter().flatten() {
            let Some(proto) = protocol(port.protocol.as_deref()) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let mut endpoints: Vec<Endpoint> = Vec::new();
            let mut seen = BTreeSet::new();
            for slice in svc_slices.into_iter().flatten() {
                // The slice's port of the same name and protocol carries the resolved
                // target port (a named targetPort may differ from pod to pod, and then
                // slices differ too).
                let Some(target) = slice.ports.iter().flatten().find(|p| {
                    p.name.clone().unwrap_or_default() == port_name
                        && protocol(p.protocol.as_deref()) == Some(proto)
                }) else {
                    continue;
                };
                let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    let (ready, serving, terminating) = conditions(ep);
                    for ip in ep.addresses.iter().filter_map(|a| v4(a)) {
                        if seen.insert((ip, target)) {
                            endpoints.push(Endpoint {
                                ip,
                                port: target,
                                ready,
                                serving,
                                terminating,
                                node_name: ep.node_name.clone(),
                            });
                        }
                    }
                }
            }
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                protocol: Some(proto),
                cluster_ip: Some(cluster_ip),
                port: number,
                node_port: port
                    .node_port
                    .filter(|_| node_port_type)
                    .and_then(|p| u16::try_from(p).ok()),
                external_ips: external_ips.clone(),
                load_balancer_ips: lb_ips.clone(),
                affinity_timeout,
                external_local: node_port_type
                    && spec.external_traffic_policy.as_deref() == Some("Local"),
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                endpoints,
            });
        }
    }
    out
}

/// The DNS view of Services, their endpoints and pods.
pub fn dns_data(services: &[Service], slices: &[EndpointSlice], pods: &[Pod]) -> DnsData {
    let by_service = slices_by_service(slices);
    let mut data = DnsData::default();
    for svc in services {
        let (Some(spec), Some(name)) = (&svc.spec, &svc.metadata.name) else {
            continue;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let ports: Vec<DnsPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(DnsPort {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: protocol(p.protocol.as_deref())?,
                    port: u16::try_from(p.port).ok()?,
                })
            })
            .collect();
        let mut out = DnsService {
            namespace: ns.clone(),
            name: name.clone(),
            ports,
            ..Default::default()
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            out.external_name = spec.external_name.clone();
        } else {
            out.cluster_ips = cluster_ips(spec);
        }
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        if out.cluster_ips.is_empty() && out.external_name.is_none() {
            for slice in by_service
                .get(&(ns.clone(), name.clone()))
                .into_iter()
                .flatten()
            {
                let slice_ports: Vec<DnsPort> = slice
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(DnsPort {
                            name: p.name.clone().unwrap_or_default(),
                            protocol: protocol(p.protocol.as_deref())?,
                            port: u16::try_from(p.port?).ok()?,
                        })
                    })
                    .collect();
                for ep in &slice.endpoints {
                    let (ready, _, _) = conditions(ep);
                    for ip in ep.addresses.iter().filter_map(|a| v4(a)) {
                        out.endpoints.push(DnsEndpoint {
                            ip,
                            hostname: ep.hostname.clone(),
                            ready: ready || publish_not_ready,
                            ports: slice_ports.clone(),
                        });
                    }
                }
            }
        }
        data.services.push(out);
    }
    for pod in pods {
        let Some(status) = &pod.status else { continue };
        let Some(ip) = status.pod_ip.as_deref().and_then(v4) else {
            continue;
        };
        let spec = pod.spec.as_ref();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        data.pods.push(DnsPod {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            ip,
            hostname: spec.and_then(|s| s.hostname.clone()),
            subdomain: spec.and_then(|s| s.subdomain.clone()),
            ready,
        });
    }
    data
}

/// Host-gw routes to every other node that has a podCIDR and an InternalIP.
pub fn node_routes(nodes: &[Node], this_node: &str) -> Vec<NodeRoute> {
    let mut routes: Vec<NodeRoute> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(this_node))
        .filter_map(|n| {
            let spec = n.spec.as_ref()?;
            let pod_cidr = spec
                .pod_cidrs
                .iter()
                .flatten()
                .chain(spec.pod_cidr.iter())
                .find_map(|c| c.parse().ok())?;
            let node_ip = n
                .status
                .as_ref()?
                .addresses
                .iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| v4(&a.address))?;
            Some(NodeRoute { pod_cidr, node_ip })
        })
        .collect();
    routes.sort_by_key(|r| (r.pod_cidr, r.node_ip));
    routes.dedup();
    routes
}

#[cfg(test)]
mod tests;
