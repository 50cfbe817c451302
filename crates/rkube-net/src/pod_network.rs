//! The pod network of a node: a bridge, one veth pair per pod sandbox, addresses
//! from the node's podCIDR, egress masquerade and routes to other nodes (host-gw).
//!
//! Every step converges on the wanted state, so running setup twice, or again after
//! a crash half-way, leaves the same correct state. The node also routes the whole
//! cluster CIDR (a blackhole under the more specific pod routes) and the service CIDR
//! (onto the bridge) to itself, so a packet that no rule claims never leaves the
//! machine by the default route.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cidr::Ipv4Cidr;
use crate::ipam::{Ipam, IpamError};
use crate::names;
use crate::netns::Netns;
use crate::os::{
    NetOps, NetlinkError, Nft, NftCommand, NftError, ProcSysctl, Route, RouteTarget, RtNetlink,
    Sysctl, SysctlError,
};

/// The name of the pod's interface inside its namespace.
pub const POD_INTERFACE: &str = "eth0";

/// How a node's pod network is laid out.
#[derive(Clone, Debug)]
pub struct PodNetworkConfig {
    /// The bridge pods attach to (`rkube0`).
    pub bridge: String,
    /// This node's podCIDR; its first address is the bridge's (the pods' gateway).
    pub pod_cidr: Ipv4Cidr,
    /// The cluster CIDR, which holds every node's podCIDR.
    pub cluster_cidr: Ipv4Cidr,
    /// The service CIDR.
    pub service_cidr: Ipv4Cidr,
    /// Service IPs that the node itself serves (the cluster DNS), added to the bridge.
    pub local_service_ips: Vec<Ipv4Addr>,
    /// Where address allocations are kept (`/var/lib/rkube/ipam`).
    pub ipam_dir: PathBuf,
    /// The nftables table (family `ip`) for egress masquerade.
    pub nft_table: String,
    /// The node's network namespace (the current one in production).
    pub node_netns: Netns,
    /// Whether pods may open connections to addresses outside the cluster (through
    /// the node's masquerade). Off, pods reach only pods, Services and this node's
    /// own addresses: for isolated machines and for tests, whose pods' traffic must
    /// never leave the machine.
    pub egress: bool,
}

impl PodNetworkConfig {
    /// The defaults of a node with podCIDR `pod_cidr`, keeping state under `data_dir`.
    pub fn new(pod_cidr: Ipv4Cidr, data_dir: &Path) -> Self {
        Self {
            bridge: "rkube0".into(),
            pod_cidr,
            cluster_cidr: "10.42.0.0/16".parse().expect("valid"),
            service_cidr: "10.43.0.0/16".parse().expect("valid"),
            local_service_ips: vec![Ipv4Addr::new(10, 43, 0, 10)],
            ipam_dir: data_dir.join("ipam"),
            nft_table: "rkube-podnet".into(),
            node_netns: Netns::Current,
            egress: true,
        }
    }

    fn validate(&self) -> Result<(), PodNetworkError> {
        let bad = |m: String| Err(PodNetworkError::Config(m));
        if !self.cluster_cidr.covers(&self.pod_cidr) {
            return bad(format!(
                "pod CIDR {} is not inside cluster CIDR {}",
                self.pod_cidr, self.cluster_cidr
            ));
        }
        if self.cluster_cidr.covers(&self.service_cidr)
            || self.service_cidr.covers(&self.cluster_cidr)
        {
            return bad(format!(
                "service CIDR {} overlaps cluster CIDR {}",
                self.service_cidr, self.cluster_cidr
            ));
        }
        if let Some(ip) = self
            .local_service_ips
            .iter()
            .find(|ip| !self.service_cidr.contains(**ip))
        {
            return bad(format!(
                "local service IP {ip} is not inside service CIDR {}",
                self.service_cidr
            ));
        }
        if !valid_ifname(&self.bridge) {
            return bad(format!("invalid bridge name {:?}", self.bridge));
        }
        if !valid_nft_name(&self.nft_table) {
            return bad(format!("invalid nftables table name {:?}", self.nft_table));
        }
        Ok(())
    }
}

pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(crate) fn valid_nft_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// What a pod got: its address, prefix length and gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodIp {
    /// The pod's address on `eth0`.
    pub ip: Ipv4Addr,
    /// The prefix length of the pod CIDR.
    pub prefix: u8,
    /// The default gateway (the bridge address).
    pub gateway: Ipv4Addr,
}

/// Another node's podCIDR and the node address that reaches it (a host-gw route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRoute {
    /// The other node's podCIDR.
    pub pod_cidr: Ipv4Cidr,
    /// The other node's address.
    pub node_ip: Ipv4Addr,
}

/// What [`PodNetwork::sweep`] reclaimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Addresses freed, with the sandbox that held them.
    pub addresses: Vec<(Ipv4Addr, String)>,
    /// Host-side links deleted.
    pub links: Vec<String>,
}

/// Why a pod network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PodNetworkError {
    /// The configuration is inconsistent; nothing was changed.
    #[error("pod network configuration: {0}")]
    Config(String),
    /// The sandbox's network namespace does not exist; nothing was changed.
    #[error("network namespace {0} does not exist")]
    NoNetns(PathBuf),
    /// A host-gw route is invalid; nothing was changed.
    #[error("invalid node route: {0}")]
    NodeRoute(String),
    /// Address allocation failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Loading the masquerade rules failed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Setting a sysctl failed.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
}

/// A node's pod network.
pub struct PodNetwork {
    config: PodNetworkConfig,
    ipam: Ipam,
    ops: Arc<dyn NetOps>,
    nft: Arc<dyn Nft>,
    sysctl: Arc<dyn Sysctl>,
}

impl PodNetwork {
    /// Sets up the node side (bridge, routes, masquerade, sysctls) with the real OS.
    pub async fn new(config: PodNetworkConfig) -> Result<Self, PodNetworkError> {
        let ns = config.node_netns.clone();
        Self::with_os(
            config,
            Arc::new(RtNetlink::new(ns.clone())),
            Arc::new(NftCommand::new(ns.clone())),
            Arc::new(ProcSysctl::new(ns)),
        )
        .await
    }

    /// Sets up the node side through the given OS operations.
    pub async fn with_os(
        config: PodNetworkConfig,
        ops: Arc<dyn NetOps>,
        nft: Arc<dyn Nft>,
        sysctl: Arc<dyn Sysctl>,
    ) -> Result<Self, PodNetworkError> {
        config.validate()?;
        let ipam = Ipam::open(&config.ipam_dir, config.pod_cidr)?;
        let net = Self {
            config,
            ipam,
            ops,
            nft,
            sysctl,
        };
        net.ensure_node().await?;
        Ok(net)
    }

    /// The configuration.
    pub fn config(&self) -> &PodNetworkConfig {
        &self.config
    }

    /// The address allocator.
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// The bridge address, which pods use as their gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    /// Brings the node side to its wanted state; safe to call at any time.
    pub async fn ensure_node(&self) -> Result<(), PodNetworkError> {
        let c = &self.config;
        let ns = &c.node_netns;
        self.sysctl.set("net.ipv4.ip_forward", "1")?;
        self.ops.add_bridge(ns, &c.bridge).await?;
        self.ops
            .add_address(ns, &c.bridge, self.gateway(), c.pod_cidr.prefix())
            .await?;
        for ip in &c.local_service_ips {
            self.ops.add_address(ns, &c.bridge, *ip, 32).await?;
        }
        self.ops.set_up(ns, &c.bridge).await?;
        // Bridged packets pass through the IP hooks, so a reply from a pod to a pod on
        // the same bridge is un-NATed by conntrack when it answers a Service request.
        self.sysctl.set("net.bridge.bridge-nf-call-iptables", "1")?;
        // The service CIDR is routed onto the bridge, so a packet to a Service with no
        // endpoint goes back out the way it came. The kernel would answer with an ICMP
        // redirect, which also uses up the per-host ICMP budget so the proxy's reject
        // never reaches the pod (the client hangs). The kernel sends redirects if the
        // "all" or the device switch is on, so both go off.
        for dev in ["all", &c.bridge] {
            self.sysctl
                .set(&format!("net.ipv4.conf.{dev}.send_redirects"), "0")?;
        }
        for route in self.safety_routes() {
            self.ops.replace_route(ns, &route).await?;
        }
        self.nft.apply(&self.masquerade_script()).await?;
        Ok(())
    }

    /// Routes that keep the cluster and service CIDRs on this machine.
    fn safety_routes(&self) -> Vec<Route> {
        vec![
            Route {
                dst: self.config.cluster_cidr,
                target: RouteTarget::Blackhole,
            },
            Route {
                dst: self.config.service_cidr,
                target: RouteTarget::Device(self.config.bridge.clone()),
            },
        ]
    }

    fn masquerade_script(&self) -> String {
        let c = &self.config;
        // Without egress, connections that pods open to anything outside the cluster
        // are dropped where they would be forwarded off the node; replies (to a
        // NodePort client, say) still pass, and the node's own addresses are not
        // forwarded to at all.
        let forward = if c.egress {
            String::new()
        } else {
            format!(
                "\tchain forward {{\n\
                 \t\ttype filter hook forward priority filter + 10; policy accept;\n\
                 \t\tip saddr {pod} ip daddr != {cluster} ct direction original drop\n\
                 \t}}\n",
                pod = c.pod_cidr,
                cluster = c.cluster_cidr,
            )
        };
        // Replaced whole in one transaction: create (so delete cannot fail), delete,
        // then define.
        format!(
            "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
             \t\tip saddr {pod} ip daddr != {{ {cluster}, {svc}, 224.0.0.0/4 }} masquerade fully-random\n\
             \t}}\n{forward}}}\n",
            t = c.nft_table,
            pod = c.pod_cidr,
            cluster = c.cluster_cidr,
            svc = c.service_cidr,
        )
    }

    /// Connects the sandbox whose network namespace is at `netns_path` to the bridge
    /// and returns its address. Calling it again for the same sandbox (or after a
    /// crash half-way) returns the same address and a correct interface.
    pub async fn setup(
        &self,
        sandbox_id: &str,
        netns_path: &Path,
    ) -> Result<PodIp, PodNetworkError> {
        let pod = Netns::path(netns_path);
        if !pod.exists() {
            return Err(PodNetworkError::NoNetns(netns_path.to_path_buf()));
        }
        let ip = self.ipam.allocate(sandbox_id)?;
        let result = self.wire(sandbox_id, &pod, ip).await;
        if result.is_err() {
            tracing::warn!(sandbox_id, %ip, "pod network setup failed; the next setup or teardown finishes it");
        }
        result
    }

    async fn wire(
        &self,
        sandbox_id: &str,
        pod: &Netns,
        ip: Ipv4Addr,
    ) -> Result<PodIp, PodNetworkError> {
        let c = &self.config;
        let node = &c.node_netns;
        let host = names::host_veth(sandbox_id);
        let temp = names::temp_peer(sandbox_id);
        let node_links = self.ops.links(node).await?;
        let pod_links = self.ops.links(pod).await?;
        let has = |links: &[crate::os::LinkInfo], n: &str| links.iter().any(|l| l.name == n);
        if !(has(&node_links, &host) && has(&pod_links, POD_INTERFACE)) {
            // Missing or half-made: start the pair again from nothing. The sandbox's
            // namespace belongs to this pod, so its eth0 (if any) is ours to remove.
            self.ops.delete_link(node, &host).await?;
            self.ops.delete_link(node, &temp).await?;
            self.ops.delete_link(pod, POD_INTERFACE).await?;
            self.ops.delete_link(pod, &temp).await?;
            self.ops.add_veth(node, &host, &temp).await?;
            self.ops.move_link(node, &temp, pod).await?;
            self.ops.rename_link(pod, &temp, POD_INTERFACE).await?;
        }
        self.ops.set_master(node, &host, &c.bridge).await?;
        self.ops.set_hairpin(node, &host, true).await?;
        self.ops.set_up(node, &host).await?;
        self.ops.set_up(pod, "lo").await?;
        self.ops
            .add_address(pod, POD_INTERFACE, ip, c.pod_cidr.prefix())
            .await?;
        self.ops.set_up(pod, POD_INTERFACE).await?;
        let gateway = self.gateway();
        self.ops
            .replace_route(
                pod,
                &Route {
                    dst: Ipv4Cidr::containing(Ipv4Addr::UNSPECIFIED, 0),
                    target: RouteTarget::Gateway(gateway),
                },
            )
            .await?;
        Ok(PodIp {
            ip,
            prefix: c.pod_cidr.prefix(),
            gateway,
        })
    }

    /// Disconnects a sandbox and frees its address. The namespace may already be gone;
    /// a sandbox that was never set up (or was torn down) is not an error.
    pub async fn teardown(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>, PodNetworkError> {
        let node = &self.config.node_netns;
        // Deleting the host end deletes the pod end with it.
        self.ops
            .delete_link(node, &names::host_veth(sandbox_id))
            .await?;
        self.ops
            .delete_link(node, &names::temp_peer(sandbox_id))
            .await?;
        Ok(self.ipam.release(sandbox_id)?)
    }

    /// Reclaims addresses and host links of sandboxes that are not in `live`.
    pub async fn sweep(&self, live: &HashSet<String>) -> Result<SweepReport, PodNetworkError> {
        let node = &self.config.node_netns;
        let mut report = SweepReport {
            addresses: self.ipam.sweep(live)?,
            links: Vec::new(),
        };
        let keep: HashSet<String> = live
            .iter()
            .flat_map(|id| [names::host_veth(id), names::temp_peer(id)])
            .collect();
        let links = self.ops.links(node).await?;
        let bridge = links
            .iter()
            .find(|l| l.name == self.config.bridge)
            .map(|l| l.index);
        for link in &links {
            let hashed = |prefix: &str| {
                link.name.len() == 15
                    && link
                        .name
                        .strip_prefix(prefix)
                        .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
            };
            // A host end is ours when it is on our bridge, or on no bridge yet (a setup
            // that crashed before enslaving it).
            let ours = (hashed("veth") && (link.master.is_none() || link.master == bridge))
                || hashed("rkp");
            if ours && !keep.contains(&link.name) {
                self.ops.delete_link(node, &link.name).await?;
                report.links.push(link.name.clone());
            }
        }
        Ok(report)
    }

    /// Makes the host-gw routes to other nodes exactly `routes`: adds or updates the
    /// given ones and removes those of nodes no longer listed.
    pub async fn set_node_routes(&self, routes: &[NodeRoute]) -> Result<(), PodNetworkError> {
        let c = &self.config;
        for r in routes {
            if !c.cluster_cidr.covers(&r.pod_cidr) || r.pod_cidr == c.pod_cidr {
                return Err(PodNetworkError::NodeRoute(format!(
                    "{} is not another node's podCIDR inside {}",
                    r.pod_cidr, c.cluster_cidr
                )));
            }
        }
        let wanted: Vec<Route> = routes
            .iter()
            .map(|r| Route {
                dst: r.pod_cidr,
                target: RouteTarget::Gateway(r.node_ip),
            })
            .collect();
        let ns = &c.node_netns;
        for current in self.ops.routes(ns).await? {
            let is_node_route = matches!(current.target, RouteTarget::Gateway(_))
                && c.cluster_cidr.covers(&current.dst);
            if is_node_route && !wanted.contains(&current) {
                self.ops.delete_route(ns, &current).await?;
            }
        }
        for route in &wanted {
            self.ops.replace_route(ns, route).await?;
        }
        Ok(())
    }

    /// Removes the node side: routes, bridge, masquerade table. Pods must be torn
    /// down first. Used when a node leaves and by tests.
    pub async fn remove_node(&self) -> Result<(), PodNetworkError> {
        let ns = &self.config.node_netns;
        for route in self.ops.routes(ns).await? {
            self.ops.delete_route(ns, &route).await?;
        }
        self.ops.delete_link(ns, &self.config.bridge).await?;
        let t = &self.config.nft_table;
        self.nft
            .apply(&format!("add table ip {t}\ndelete table ip {t}\n"))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
