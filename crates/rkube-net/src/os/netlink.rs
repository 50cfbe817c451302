//! [`NetOps`] over rtnetlink.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use async_trait::async_trait;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::sync::OnceCell;

use super::{LinkInfo, NetOps, RKUBE_ROUTE_PROTOCOL, Route, RouteTarget};
use crate::cidr::Ipv4Cidr;
use crate::netns::{Netns, NetnsError};

/// Why a netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused the request.
    #[error("netlink {op} in {netns}: {source}")]
    Request {
        /// What was asked (`add veth vethX`).
        op: String,
        /// The namespace.
        netns: Netns,
        /// The rtnetlink error.
        source: rtnetlink::Error,
    },
    /// A link that must exist does not.
    #[error("no link {name} in {netns}")]
    NoLink {
        /// The link name.
        name: String,
        /// The namespace.
        netns: Netns,
    },
    /// A netlink socket could not be opened.
    #[error("cannot open a netlink socket in {netns}: {source}")]
    Socket {
        /// The namespace.
        netns: Netns,
        /// The OS error.
        source: std::io::Error,
    },
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// Netlink through `rtnetlink`. The connection to its home namespace (the node's) is
/// kept; other namespaces (pods') get a connection per call, made inside them.
pub struct RtNetlink {
    home: Netns,
    home_handle: OnceCell<Handle>,
}

impl RtNetlink {
    /// Netlink whose kept connection is to `home`.
    pub fn new(home: Netns) -> Self {
        Self {
            home,
            home_handle: OnceCell::new(),
        }
    }

    async fn handle(&self, ns: &Netns) -> Result<Handle, NetlinkError> {
        if *ns == self.home {
            return self
                .home_handle
                .get_or_try_init(|| connect(ns))
                .await
                .cloned();
        }
        connect(ns).await
    }

    async fn index(&self, h: &Handle, ns: &Netns, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = h.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(nix::errno::Errno::ENODEV) => Ok(None),
            Err(source) => Err(request(format!("get link {name}"), ns, source)),
        }
    }

    async fn must_index(&self, h: &Handle, ns: &Netns, name: &str) -> Result<u32, NetlinkError> {
        self.index(h, ns, name)
            .await?
            .ok_or_else(|| NetlinkError::NoLink {
                name: name.to_string(),
                netns: ns.clone(),
            })
    }
}

async fn connect(ns: &Netns) -> Result<Handle, NetlinkError> {
    let netns = ns.clone();
    // The socket is made on a thread inside the namespace and stays bound to it.
    let (conn, handle, _) = ns
        .run_in_runtime(rtnetlink::new_connection)
        .await?
        .map_err(|source| NetlinkError::Socket { netns, source })?;
    tokio::spawn(conn);
    Ok(handle)
}

fn request(op: String, ns: &Netns, source: rtnetlink::Error) -> NetlinkError {
    NetlinkError::Request {
        op,
        netns: ns.clone(),
        source,
    }
}

/// Runs a dump again when the kernel reports it was interrupted by a concurrent
/// change (EBUSY): with pods coming and going, links and routes change all the time.
async fn dump<T, F, Fut>(mut f: F) -> Result<Vec<T>, rtnetlink::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, rtnetlink::Error>>,
{
    let mut tries = 0u64;
    loop {
        match f().await {
            Err(e) if errno(&e) == Some(nix::errno::Errno::EBUSY) && tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2 * tries)).await;
            }
            other => return other,
        }
    }
}

fn errno(e: &rtnetlink::Error) -> Option<nix::errno::Errno> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => {
            Some(nix::errno::Errno::from_raw(msg.raw_code().abs()))
        }
        _ => None,
    }
}

fn ignore(
    result: Result<(), rtnetlink::Error>,
    benign: &[nix::errno::Errno],
) -> Result<(), rtnetlink::Error> {
    match result {
        Err(e) if errno(&e).is_some_and(|n| benign.contains(&n)) => Ok(()),
        other => other,
    }
}

fn route_message(route: &Route, oif: Option<u32>) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.dst.addr(), route.dst.prefix())
        .protocol(RouteProtocol::Other(RKUBE_ROUTE_PROTOCOL));
    match &route.target {
        RouteTarget::Gateway(gw) => b = b.gateway(*gw),
        RouteTarget::Device(_) => {
            b = b.scope(RouteScope::Link);
            if let Some(oif) = oif {
                b = b.output_interface(oif);
            }
        }
        RouteTarget::Blackhole => b = b.kind(RouteType::BlackHole),
    }
    b.build()
}

#[async_trait]
impl NetOps for RtNetlink {
    async fn links(&self, ns: &Netns) -> Result<Vec<LinkInfo>, NetlinkError> {
        let h = self.handle(ns).await?;
        let msgs: Vec<_> = dump(|| h.link().get().execute().try_collect())
            .await
            .map_err(|e| request("list links".into(), ns, e))?;
        Ok(msgs
            .into_iter()
            .map(|m| {
                let mut info = LinkInfo {
                    index: m.header.index,
                    name: String::new(),
                    up: m.header.flags.contains(LinkFlags::Up),
                    master: None,
                    kind: None,
                };
                for attr in m.attributes {
                    match attr {
                        LinkAttribute::IfName(n) => info.name = n,
                        LinkAttribute::Controller(i) => info.master = Some(i),
                        LinkAttribute::LinkInfo(infos) => {
                            for i in infos {
                                if let NlLinkInfo::Kind(k) = i {
                                    info.kind = Some(k.to_string());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                info
            })
            .collect())
    }

    async fn add_bridge(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let msg = LinkBridge::new(name).down().build();
        ignore(
            h.link().add(msg).execute().await,
            &[nix::errno::Errno::EEXIST],
        )
        .map_err(|e| request(format!("add bridge {name}"), ns, e))
    }

    async fn add_veth(&self, ns: &Netns, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        h.link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(|e| request(format!("add veth {name}/{peer}"), ns, e))
    }

    async fn move_link(&self, ns: &Netns, name: &str, to: &Netns) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, name).await?;
        let target = to.open()?;
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(target.as_raw_fd())
            .build();
        h.link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| request(format!("move {name} to {to}"), ns, e))
    }

    async fn rename_link(
        &self,
        ns: &Netns,
        name: &str,
        new_name: &str,
    ) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, name).await?;
        let msg = LinkUnspec::new_with_index(index).name(new_name).build();
        h.link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| request(format!("rename {name} to {new_name}"), ns, e))
    }

    async fn delete_link(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let Some(index) = self.index(&h, ns, name).await? else {
            return Ok(());
        };
        ignore(
            h.link().del(index).execute().await,
            &[nix::errno::Errno::ENODEV],
        )
        .map_err(|e| request(format!("delete link {name}"), ns, e))
    }

    async fn set_up(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, name).await?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| request(format!("set {name} up"), ns, e))
    }

    async fn set_master(&self, ns: &Netns, name: &str, master: &str) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, name).await?;
        let master_index = self.must_index(&h, ns, master).await?;
        h.link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(master_index)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| request(format!("enslave {name} to {master}"), ns, e))
    }

    async fn set_hairpin(&self, ns: &Netns, name: &str, on: bool) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, name).await?;
        h.link()
            .set_port(LinkBridgePort::new(index).hairpin(on).build())
            .execute()
            .await
            .map_err(|e| request(format!("set hairpin on {name}"), ns, e))
    }

    async fn addresses(&self, ns: &Netns, link: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, link).await?;
        let msgs: Vec<_> = dump(|| {
            h.address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect()
        })
        .await
        .map_err(|e| request(format!("list addresses of {link}"), ns, e))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    async fn add_address(
        &self,
        ns: &Netns,
        link: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let index = self.must_index(&h, ns, link).await?;
        ignore(
            h.address()
                .add(index, IpAddr::V4(ip), prefix)
                .execute()
                .await,
            &[nix::errno::Errno::EEXIST],
        )
        .map_err(|e| request(format!("add {ip}/{prefix} to {link}"), ns, e))
    }

    async fn routes(&self, ns: &Netns) -> Result<Vec<Route>, NetlinkError> {
        let h = self.handle(ns).await?;
        let names: std::collections::HashMap<u32, String> = self
            .links(ns)
            .await?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        let msgs: Vec<_> = dump(|| {
            h.route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
        })
        .await
        .map_err(|e| request("list routes".into(), ns, e))?;
        Ok(msgs
            .into_iter()
            .filter(|m| {
                m.header.protocol == RouteProtocol::Other(RKUBE_ROUTE_PROTOCOL)
                    && m.header.table == RouteHeader::RT_TABLE_MAIN
            })
            .filter_map(|m| {
                let mut dst = Ipv4Addr::UNSPECIFIED;
                let mut gateway = None;
                let mut oif = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                let target = if m.header.kind == RouteType::BlackHole {
                    RouteTarget::Blackhole
                } else if let Some(gw) = gateway {
                    RouteTarget::Gateway(gw)
                } else {
                    RouteTarget::Device(names.get(&oif?)?.clone())
                };
                let dst = Ipv4Cidr::new(dst, m.header.destination_prefix_length).ok()?;
                Some(Route { dst, target })
            })
            .collect())
    }

    async fn replace_route(&self, ns: &Netns, route: &Route) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let oif = match &route.target {
            RouteTarget::Device(dev) => Some(self.must_index(&h, ns, dev).await?),
            _ => None,
        };
        h.route()
            .add(route_message(route, oif))
            .replace()
            .execute()
            .await
            .map_err(|e| request(format!("replace route {route:?}"), ns, e))
    }

    async fn delete_route(&self, ns: &Netns, route: &Route) -> Result<(), NetlinkError> {
        let h = self.handle(ns).await?;
        let oif = match &route.target {
            RouteTarget::Device(dev) => self.index(&h, ns, dev).await?,
            _ => None,
        };
        ignore(
            h.route().del(route_message(route, oif)).execute().await,
            &[nix::errno::Errno::ESRCH, nix::errno::Errno::ENOENT],
        )
        .map_err(|e| request(format!("delete route {route:?}"), ns, e))
    }
}
