//! A recording stand-in for the OS: keeps links, addresses and routes per namespace,
//! logs every call, and can fail a chosen call to play a crash half-way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    Conntrack, ConntrackError, LinkInfo, NetOps, NetlinkError, Nft, NftError, Route, Sysctl,
    SysctlError, UdpFlows,
};
use crate::netns::Netns;

#[derive(Clone, Debug, Default)]
struct FakeLink {
    index: u32,
    up: bool,
    master: Option<String>,
    kind: String,
    peer: Option<(Netns, String)>,
    hairpin: bool,
    addresses: BTreeSet<(Ipv4Addr, u8)>,
}

#[derive(Default)]
struct State {
    next_index: u32,
    links: BTreeMap<(String, String), FakeLink>,
    routes: BTreeMap<String, BTreeSet<Route>>,
    calls: Vec<String>,
    scripts: Vec<String>,
    sysctls: BTreeMap<String, String>,
    fail_on: Option<String>,
}

/// The recording fake of [`NetOps`], [`Nft`] and [`Sysctl`].
#[derive(Default)]
pub struct RecordingOs {
    state: Mutex<State>,
}

fn ns_key(ns: &Netns) -> String {
    match ns {
        Netns::Current => "node".into(),
        Netns::Path(p) => p.display().to_string(),
    }
}

impl RecordingOs {
    /// An empty machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as `op args` lines.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Forgets the calls so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Every nft script applied.
    pub fn scripts(&self) -> Vec<String> {
        self.lock().scripts.clone()
    }

    /// The sysctls set.
    pub fn sysctls(&self) -> BTreeMap<String, String> {
        self.lock().sysctls.clone()
    }

    /// Makes the next call whose log line starts with `prefix` fail (once).
    pub fn fail_on(&self, prefix: &str) {
        self.lock().fail_on = Some(prefix.to_string());
    }

    /// Names of the links in `ns`.
    pub fn link_names(&self, ns: &Netns) -> Vec<String> {
        let key = ns_key(ns);
        self.lock()
            .links
            .keys()
            .filter(|(n, l)| *n == key && l != "lo")
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The rkube routes of `ns`.
    pub fn route_set(&self, ns: &Netns) -> BTreeSet<Route> {
        self.lock()
            .routes
            .get(&ns_key(ns))
            .cloned()
            .unwrap_or_default()
    }

    /// The master and hairpin flag of a link.
    pub fn port(&self, ns: &Netns, name: &str) -> Option<(Option<String>, bool, bool)> {
        let s = self.lock();
        let l = s.links.get(&(ns_key(ns), name.to_string()))?;
        Some((l.master.clone(), l.hairpin, l.up))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a call and fails it if it was chosen to fail.
    fn record(&self, line: String) -> Result<std::sync::MutexGuard<'_, State>, std::io::Error> {
        let mut s = self.lock();
        if s.fail_on
            .as_ref()
            .is_some_and(|p| line.starts_with(p.as_str()))
        {
            s.fail_on = None;
            s.calls.push(format!("{line} (failed)"));
            return Err(std::io::Error::other(format!("injected failure: {line}")));
        }
        s.calls.push(line);
        Ok(s)
    }

    fn record_nl(
        &self,
        ns: &Netns,
        line: String,
    ) -> Result<std::sync::MutexGuard<'_, State>, NetlinkError> {
        self.record(line).map_err(|source| NetlinkError::Socket {
            netns: ns.clone(),
            source,
        })
    }
}

fn no_link(ns: &Netns, name: &str) -> NetlinkError {
    NetlinkError::NoLink {
        name: name.to_string(),
        netns: ns.clone(),
    }
}

fn exists(ns: &Netns, what: &str) -> NetlinkError {
    NetlinkError::Socket {
        netns: ns.clone(),
        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("{what} exists")),
    }
}

impl State {
    fn add_link(&mut self, ns: &Netns, name: &str, kind: &str) -> &mut FakeLink {
        self.next_index += 1;
        let index = self.next_index;
        let link = self
            .links
            .entry((ns_key(ns), name.to_string()))
            .or_default();
        link.index = index;
        link.kind = kind.to_string();
        link
    }

    fn link_mut(&mut self, ns: &Netns, name: &str) -> Result<&mut FakeLink, NetlinkError> {
        // Every namespace has a loopback device.
        if name == "lo" && !self.links.contains_key(&(ns_key(ns), name.to_string())) {
            self.add_link(ns, name, "loopback");
        }
        self.links
            .get_mut(&(ns_key(ns), name.to_string()))
            .ok_or_else(|| no_link(ns, name))
    }
}

#[async_trait]
impl NetOps for RecordingOs {
    async fn links(&self, ns: &Netns) -> Result<Vec<LinkInfo>, NetlinkError> {
        let s = self.lock();
        let key = ns_key(ns);
        let index_of = |name: &str| {
            s.links
                .get(&(key.clone(), name.to_string()))
                .map(|l| l.index)
        };
        Ok(s.links
            .iter()
            .filter(|((n, _), _)| *n == key)
            .map(|((_, name), l)| LinkInfo {
                index: l.index,
                name: name.clone(),
                up: l.up,
                master: l.master.as_deref().and_then(index_of),
                kind: Some(l.kind.clone()),
            })
            .collect())
    }

    async fn add_bridge(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("add_bridge {} {name}", ns_key(ns)))?;
        if !s.links.contains_key(&(ns_key(ns), name.to_string())) {
            s.add_link(ns, name, "bridge");
        }
        Ok(())
    }

    async fn add_veth(&self, ns: &Netns, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("add_veth {} {name} {peer}", ns_key(ns)))?;
        for n in [name, peer] {
            if s.links.contains_key(&(ns_key(ns), n.to_string())) {
                return Err(exists(ns, n));
            }
        }
        s.add_link(ns, name, "veth").peer = Some((ns.clone(), peer.to_string()));
        s.add_link(ns, peer, "veth").peer = Some((ns.clone(), name.to_string()));
        Ok(())
    }

    async fn move_link(&self, ns: &Netns, name: &str, to: &Netns) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(
            ns,
            format!("move_link {} {name} {}", ns_key(ns), ns_key(to)),
        )?;
        let link = s
            .links
            .remove(&(ns_key(ns), name.to_string()))
            .ok_or_else(|| no_link(ns, name))?;
        if let Some((pns, pname)) = &link.peer
            && let Some(p) = s.links.get_mut(&(ns_key(pns), pname.clone()))
        {
            p.peer = Some((to.clone(), name.to_string()));
        }
        s.links.insert((ns_key(to), name.to_string()), link);
        Ok(())
    }

    async fn rename_link(
        &self,
        ns: &Netns,
        name: &str,
        new_name: &str,
    ) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("rename_link {} {name} {new_name}", ns_key(ns)))?;
        if s.links.contains_key(&(ns_key(ns), new_name.to_string())) {
            return Err(exists(ns, new_name));
        }
        let link = s
            .links
            .remove(&(ns_key(ns), name.to_string()))
            .ok_or_else(|| no_link(ns, name))?;
        if let Some((pns, pname)) = &link.peer
            && let Some(p) = s.links.get_mut(&(ns_key(pns), pname.clone()))
        {
            p.peer = Some((ns.clone(), new_name.to_string()));
        }
        s.links.insert((ns_key(ns), new_name.to_string()), link);
        Ok(())
    }

    async fn delete_link(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("delete_link {} {name}", ns_key(ns)))?;
        // Deleting one end of a veth pair deletes both, as the kernel does.
        if let Some(link) = s.links.remove(&(ns_key(ns), name.to_string()))
            && let Some((pns, pname)) = link.peer
        {
            s.links.remove(&(ns_key(&pns), pname));
        }
        Ok(())
    }

    async fn set_up(&self, ns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("set_up {} {name}", ns_key(ns)))?;
        s.link_mut(ns, name)?.up = true;
        Ok(())
    }

    async fn set_master(&self, ns: &Netns, name: &str, master: &str) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("set_master {} {name} {master}", ns_key(ns)))?;
        s.link_mut(ns, master)?;
        s.link_mut(ns, name)?.master = Some(master.to_string());
        Ok(())
    }

    async fn set_hairpin(&self, ns: &Netns, name: &str, on: bool) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(ns, format!("set_hairpin {} {name} {on}", ns_key(ns)))?;
        s.link_mut(ns, name)?.hairpin = on;
        Ok(())
    }

    async fn addresses(&self, ns: &Netns, link: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let mut s = self.lock();
        Ok(s.link_mut(ns, link)?.addresses.iter().copied().collect())
    }

    async fn add_address(
        &self,
        ns: &Netns,
        link: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(
            ns,
            format!("add_address {} {link} {ip}/{prefix}", ns_key(ns)),
        )?;
        s.link_mut(ns, link)?.addresses.insert((ip, prefix));
        Ok(())
    }

    async fn routes(&self, ns: &Netns) -> Result<Vec<Route>, NetlinkError> {
        Ok(self.route_set(ns).into_iter().collect())
    }

    async fn replace_route(&self, ns: &Netns, route: &Route) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(
            ns,
            format!(
                "replace_route {} {} {:?}",
                ns_key(ns),
                route.dst,
                route.target
            ),
        )?;
        let routes = s.routes.entry(ns_key(ns)).or_default();
        routes.retain(|r| r.dst != route.dst);
        routes.insert(route.clone());
        Ok(())
    }

    async fn delete_route(&self, ns: &Netns, route: &Route) -> Result<(), NetlinkError> {
        let mut s = self.record_nl(
            ns,
            format!(
                "delete_route {} {} {:?}",
                ns_key(ns),
                route.dst,
                route.target
            ),
        )?;
        s.routes.entry(ns_key(ns)).or_default().remove(route);
        Ok(())
    }
}

#[async_trait]
impl Nft for RecordingOs {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut s = self
            .record("nft apply".into())
            .map_err(|e| NftError::Rejected(e.to_string()))?;
        s.scripts.push(script.to_string());
        Ok(())
    }
}

impl Sysctl for RecordingOs {
    fn set(&self, key: &str, value: &str) -> Result<(), SysctlError> {
        let mut s = self
            .record(format!("sysctl {key}={value}"))
            .map_err(|source| SysctlError::Write {
                key: key.to_string(),
                source,
            })?;
        s.sysctls.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

#[async_trait]
impl Conntrack for RecordingOs {
    async fn delete_udp(&self, flows: &UdpFlows) -> Result<(), ConntrackError> {
        let line = format!("conntrack {}", super::delete_args(flows).join(" "));
        drop(
            self.record(line)
                .map_err(|e| ConntrackError::Failed(e.to_string()))?,
        );
        Ok(())
    }
}
