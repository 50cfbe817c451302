//! The OS work the pod network and the service proxy need, behind small traits.
//!
//! [`NetOps`] is netlink (links, addresses, routes), [`Nft`] loads nftables
//! transactions, [`Sysctl`] writes `/proc/sys`, [`Conntrack`] forgets flows. Each has
//! a real implementation ([`RtNetlink`], [`NftCommand`], [`ProcSysctl`],
//! [`ConntrackCommand`]) and [`RecordingOs`], a fake that keeps enough state to answer
//! queries and records every call for unit tests.

mod conntrack;
mod fake;
mod netlink;
mod nft;
mod sysctl;

use std::net::Ipv4Addr;

use async_trait::async_trait;

pub use conntrack::{ConntrackCommand, ConntrackError, UdpFlows, delete_args};
pub use fake::RecordingOs;
pub use netlink::{NetlinkError, RtNetlink};
pub use nft::{NftCommand, NftError};
pub use sysctl::{ProcSysctl, SysctlError};

use crate::cidr::Ipv4Cidr;
use crate::netns::Netns;

/// The netlink protocol number that marks routes rkube owns, so that it can find
/// and remove them without touching anyone else's.
pub const RKUBE_ROUTE_PROTOCOL: u8 = 0x52;

/// A network interface as netlink reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// Index of the bridge it is enslaved to.
    pub master: Option<u32>,
    /// Link kind (`bridge`, `veth`, ...), when it has one.
    pub kind: Option<String>,
}

/// Where a route sends its packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// Via a gateway (host-gw routes to other nodes, pods' default route).
    Gateway(Ipv4Addr),
    /// Straight out of a device (the service CIDR onto the bridge).
    Device(String),
    /// Dropped on this machine (cluster-CIDR addresses no node owns).
    Blackhole,
}

/// An IPv4 route in the main table, owned by rkube.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination prefix.
    pub dst: Ipv4Cidr,
    /// What happens to matching packets.
    pub target: RouteTarget,
}

/// Netlink operations, each in a given namespace. Adds and deletes are idempotent:
/// adding what exists or deleting what is gone succeeds.
#[async_trait]
pub trait NetOps: Send + Sync {
    /// Every link of the namespace.
    async fn links(&self, ns: &Netns) -> Result<Vec<LinkInfo>, NetlinkError>;
    /// Creates a bridge (down) unless it exists.
    async fn add_bridge(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError>;
    /// Creates a veth pair `name`/`peer` in `ns`.
    async fn add_veth(&self, ns: &Netns, name: &str, peer: &str) -> Result<(), NetlinkError>;
    /// Moves link `name` from `ns` into namespace `to`.
    async fn move_link(&self, ns: &Netns, name: &str, to: &Netns) -> Result<(), NetlinkError>;
    /// Renames a (down) link.
    async fn rename_link(&self, ns: &Netns, name: &str, new_name: &str)
    -> Result<(), NetlinkError>;
    /// Deletes a link; a missing link is not an error.
    async fn delete_link(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError>;
    /// Sets a link up.
    async fn set_up(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError>;
    /// Enslaves `name` to bridge `master`.
    async fn set_master(&self, ns: &Netns, name: &str, master: &str) -> Result<(), NetlinkError>;
    /// Turns hairpin mode of a bridge port on or off.
    async fn set_hairpin(&self, ns: &Netns, name: &str, on: bool) -> Result<(), NetlinkError>;
    /// The IPv4 addresses of a link.
    async fn addresses(&self, ns: &Netns, link: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError>;
    /// Adds an address unless present.
    async fn add_address(
        &self,
        ns: &Netns,
        link: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError>;
    /// The routes rkube owns in the namespace.
    async fn routes(&self, ns: &Netns) -> Result<Vec<Route>, NetlinkError>;
    /// Adds or replaces a route.
    async fn replace_route(&self, ns: &Netns, route: &Route) -> Result<(), NetlinkError>;
    /// Deletes a route; a missing route is not an error.
    async fn delete_route(&self, ns: &Netns, route: &Route) -> Result<(), NetlinkError>;
}

/// Loads nftables rulesets.
#[async_trait]
pub trait Nft: Send + Sync {
    /// Loads `script` (nft syntax) as one transaction: all of it or none of it.
    async fn apply(&self, script: &str) -> Result<(), NftError>;
}

/// Forgets connection-tracking entries.
#[async_trait]
pub trait Conntrack: Send + Sync {
    /// Deletes the UDP entries matching `flows`; none matching is not an error.
    async fn delete_udp(&self, flows: &UdpFlows) -> Result<(), ConntrackError>;
}

/// Writes kernel parameters.
pub trait Sysctl: Send + Sync {
    /// Sets `key` (`net.ipv4.ip_forward`) to `value`.
    fn set(&self, key: &str, value: &str) -> Result<(), SysctlError>;
}
