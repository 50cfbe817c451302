//! The records of the cluster domain, built from a [`DnsData`] snapshot, and the
//! answer to one question. Pure: no I/O.
//!
//! Names follow the Kubernetes DNS specification: `svc.ns.svc.<domain>` (A for a
//! ClusterIP, the ready endpoints for a headless Service, CNAME for ExternalName),
//! `host.svc.ns.svc.<domain>` for headless endpoints and for pods whose
//! hostname/subdomain name a headless Service, `_port._proto.svc.ns.svc.<domain>` SRV
//! for named ports, `a-b-c-d.ns.pod.<domain>` for pods, and PTR records for ClusterIPs
//! and named endpoints.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::{DnsData, DnsService};
use crate::cidr::Ipv4Cidr;

/// One record's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An alias.
    Cname(String),
    /// A service location: priority, weight, port, target.
    Srv(u16, u16, u16, String),
    /// A reverse pointer.
    Ptr(String),
}

/// What the zone says about a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Records of the asked name (and type, or a CNAME).
    Records(Vec<(String, Data)>),
    /// The name exists but has no record of that type.
    NoData,
    /// The name does not exist in a zone we serve.
    NxDomain,
    /// The SOA of the zone apex, asked for directly.
    Soa,
    /// The NS of the zone apex, asked for directly.
    Ns,
    /// Not ours: ask the upstream resolvers.
    Forward,
}

/// The record types the zone answers (the rest get NoData).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qtype {
    /// A.
    A,
    /// SRV.
    Srv,
    /// PTR.
    Ptr,
    /// CNAME.
    Cname,
    /// SOA.
    Soa,
    /// NS.
    Ns,
    /// ANY.
    Any,
    /// Anything else (AAAA, TXT, ...).
    Other,
}

/// The cluster zone: every record by lower-case, dot-terminated owner name.
#[derive(Debug, Default)]
pub struct Zone {
    apex: String,
    records: HashMap<String, Vec<Data>>,
    /// Every owner name and every name above one inside the zone (empty non-terminals
    /// exist: `svc.cluster.local` answers NoData, not NXDOMAIN).
    names: HashSet<String>,
    reverse: Vec<Ipv4Cidr>,
}

/// `a-b-c-d`, the label form of an address.
pub fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `d.c.b.a.in-addr.arpa.`
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
}

fn parse_reverse(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa.")?;
    let mut o: Vec<u8> = rest
        .split('.')
        .map(|l| l.parse().ok())
        .collect::<Option<_>>()?;
    if o.len() != 4 {
        return None;
    }
    o.reverse();
    Some(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
}

impl Zone {
    /// The zone for `domain` (`cluster.local`) holding `data`; PTR questions for
    /// addresses in `reverse` are answered here (NXDOMAIN when unknown).
    pub fn build(domain: &str, reverse: &[Ipv4Cidr], data: &DnsData) -> Self {
        let apex = format!("{}.", domain.trim_end_matches('.').to_ascii_lowercase());
        let mut z = Zone {
            apex,
            reverse: reverse.to_vec(),
            ..Default::default()
        };
        let headless: HashSet<(String, String)> = data
            .services
            .iter()
            .filter(|s| s.cluster_ips.is_empty() && s.external_name.is_none())
            .map(|s| {
                (
                    s.namespace.to_ascii_lowercase(),
                    s.name.to_ascii_lowercase(),
                )
            })
            .collect();
        for svc in &data.services {
            z.add_service(svc);
        }
        for pod in &data.pods {
            let ns = pod.namespace.to_ascii_lowercase();
            z.add(
                format!("{}.{ns}.pod.{}", dashed(pod.ip), z.apex),
                Data::A(pod.ip),
            );
            if let (Some(host), Some(sub)) = (&pod.hostname, &pod.subdomain)
                && pod.ready
                && headless.contains(&(ns.clone(), sub.to_ascii_lowercase()))
            {
                let name = format!(
                    "{}.{}.{ns}.svc.{}",
                    host.to_ascii_lowercase(),
                    sub.to_ascii_lowercase(),
                    z.apex
                );
                if !z
                    .records
                    .get(&name)
                    .is_some_and(|r| r.contains(&Data::A(pod.ip)))
                {
                    z.add(name, Data::A(pod.ip));
                }
            }
        }
        z
    }

    fn add(&mut self, name: String, data: Data) {
        let mut n = name.as_str();
        while n.len() > self.apex.len() && n.ends_with(&self.apex) {
            self.names.insert(n.to_string());
            n = n.split_once('.').map_or("", |(_, rest)| rest);
        }
        self.records.entry(name).or_default().push(data);
    }

    fn add_service(&mut self, svc: &DnsService) {
        let ns = svc.namespace.to_ascii_lowercase();
        let fqdn = format!("{}.{ns}.svc.{}", svc.name.to_ascii_lowercase(), self.apex);
        if let Some(target) = &svc.external_name {
            let target = format!("{}.", target.trim_end_matches('.').to_ascii_lowercase());
            self.add(fqdn, Data::Cname(target));
            return;
        }
        let srv_name = |port: &super::DnsPort| {
            format!(
                "_{}._{}.{fqdn}",
                port.name.to_ascii_lowercase(),
                port.protocol.as_str()
            )
        };
        if !svc.cluster_ips.is_empty() {
            for ip in &svc.cluster_ips {
                self.add(fqdn.clone(), Data::A(*ip));
                self.records
                    .entry(reverse_name(*ip))
                    .or_default()
                    .push(Data::Ptr(fqdn.clone()));
            }
            for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                self.add(srv_name(port), Data::Srv(0, 100, port.port, fqdn.clone()));
            }
            return;
        }
        // Headless: the ready endpoints, each also under its own name.
        let ready: Vec<_> = svc.endpoints.iter().filter(|e| e.ready).collect();
        let mut seen = HashSet::new();
        for ep in &ready {
            if seen.insert(ep.ip) {
                self.add(fqdn.clone(), Data::A(ep.ip));
            }
            let label = ep
                .hostname
                .as_deref()
                .map_or_else(|| dashed(ep.ip), str::to_ascii_lowercase);
            let host = format!("{label}.{fqdn}");
            if !self
                .records
                .get(&host)
                .is_some_and(|r| r.contains(&Data::A(ep.ip)))
            {
                self.add(host.clone(), Data::A(ep.ip));
            }
            if ep.hostname.is_some() {
                self.records
                    .entry(reverse_name(ep.ip))
                    .or_default()
                    .push(Data::Ptr(host));
            }
        }
        if ready.is_empty() {
            // The Service exists even with nothing behind it: NoData, not NXDOMAIN.
            self.names.insert(fqdn.clone());
            self.add_parents(&fqdn);
        }
        for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
            let targets: Vec<(u16, String)> = ready
                .iter()
                .filter_map(|ep| {
                    let p = ep
                        .ports
                        .iter()
                        .find(|p| p.name == port.name && p.protocol == port.protocol)?;
                    let label = ep
                        .hostname
                        .as_deref()
                        .map_or_else(|| dashed(ep.ip), str::to_ascii_lowercase);
                    Some((p.port, format!("{label}.{fqdn}")))
                })
                .collect();
            let weight = (100 / targets.len().max(1)) as u16;
            for (p, target) in targets {
                self.add(srv_name(port), Data::Srv(0, weight.max(1), p, target));
            }
        }
    }

    fn add_parents(&mut self, name: &str) {
        let mut n = name;
        while let Some((_, rest)) = n.split_once('.') {
            if rest.len() <= self.apex.len() {
                break;
            }
            self.names.insert(rest.to_string());
            n = rest;
        }
    }

    /// The zone apex, dot-terminated (`cluster.local.`).
    pub fn apex(&self) -> &str {
        &self.apex
    }

    /// Whether `name` is inside a zone answered here.
    pub fn is_ours(&self, name: &str) -> bool {
        if name == self.apex || name.ends_with(&format!(".{}", self.apex)) {
            return true;
        }
        parse_reverse(name).is_some_and(|ip| self.reverse.iter().any(|c| c.contains(ip)))
    }

    /// The answer to `qname` (any case, dot-terminated or not) of type `qtype`.
    pub fn lookup(&self, qname: &str, qtype: Qtype) -> Answer {
        let mut name = qname.to_ascii_lowercase();
        if !name.ends_with('.') {
            name.push('.');
        }
        if !self.is_ours(&name) {
            return Answer::Forward;
        }
        if name == self.apex {
            return match qtype {
                Qtype::Soa | Qtype::Any => Answer::Soa,
                Qtype::Ns => Answer::Ns,
                _ => Answer::NoData,
            };
        }
        let Some(records) = self.records.get(&name) else {
            return if self.names.contains(&name) {
                Answer::NoData
            } else {
                Answer::NxDomain
            };
        };
        let wanted = |d: &Data| {
            matches!(
                (qtype, d),
                (Qtype::Any, _)
                    | (_, Data::Cname(_))
                    | (Qtype::A, Data::A(_))
                    | (Qtype::Srv, Data::Srv(..))
                    | (Qtype::Ptr, Data::Ptr(_))
            )
        };
        let found: Vec<(String, Data)> = records
            .iter()
            .filter(|d| wanted(d))
            .map(|d| (name.clone(), d.clone()))
            .collect();
        if found.is_empty() {
            Answer::NoData
        } else {
            Answer::Records(found)
        }
    }

    /// A records for `name`, for the additional section of SRV answers.
    pub fn addresses(&self, name: &str) -> Vec<Ipv4Addr> {
        self.records
            .get(name)
            .map(|r| {
                r.iter()
                    .filter_map(|d| if let Data::A(ip) = d { Some(*ip) } else { None })
                    .collect()
            })
            .unwrap_or_default()
    }
}
