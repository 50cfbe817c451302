//! What the proxy's table should hold for a list of Service ports: the per-service
//! chains and the elements of the dispatch maps. Pure: no I/O.
//!
//! Packet path (names as in kube-proxy's nftables mode):
//! `nat-prerouting`/`nat-output` jump to `services`, which looks the destination up in
//! `service-ips` (ClusterIPs, external and load-balancer IPs) or `service-nodeports`
//! and jumps to a `service-…` chain (random choice among endpoints, session affinity),
//! an `external-…` chain (NodePort and external traffic policy) or a `local-…` chain
//! (node-local endpoints), ending in an `endpoint-…` chain that DNATs. Destinations
//! with no usable endpoint are found in `no-endpoint-services`/`no-endpoint-nodeports`
//! by the filter chains, which reject them at once (or drop them, when endpoints exist
//! but none may be used from here).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Endpoint, ProxyConfig, ServicePort};
use crate::names::short_hash;

/// The mark bit that asks for masquerade in `nat-postrouting`.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// The rules of one Service port. Kept from one sync to the next while the Service
/// port is unchanged, so a sync renders and compares only what changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// The Service port this was built from.
    pub input: ServicePort,
    /// Its chains and their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Its `service-ips` entries: `ip . proto . port` -> verdict.
    pub service_ips: BTreeMap<String, String>,
    /// Its `service-nodeports` entries: `proto . port` -> verdict.
    pub service_nodeports: BTreeMap<String, String>,
    /// Its `no-endpoint-services` entries.
    pub no_endpoint_services: BTreeMap<String, String>,
    /// Its `no-endpoint-nodeports` entries.
    pub no_endpoint_nodeports: BTreeMap<String, String>,
    /// Its ClusterIP.
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    /// Its session-affinity sets and their timeouts (seconds).
    pub affinity_sets: BTreeMap<String, u32>,
}

/// The wanted content of the table, beyond its fixed skeleton.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Per Service port (by [`ServicePort::key`]), its rules.
    pub fragments: HashMap<String, Arc<Fragment>>,
    /// `service-ips`: `ip . proto . port` -> verdict.
    pub service_ips: BTreeMap<String, String>,
    /// `service-nodeports`: `proto . port` -> verdict.
    pub service_nodeports: BTreeMap<String, String>,
    /// `no-endpoint-services`: `ip . proto . port` -> verdict.
    pub no_endpoint_services: BTreeMap<String, String>,
    /// `no-endpoint-nodeports`: `proto . port` -> verdict.
    pub no_endpoint_nodeports: BTreeMap<String, String>,
    /// `cluster-ips`: every ClusterIP.
    pub cluster_ips: BTreeSet<Ipv4Addr>,
}

impl Ruleset {
    /// The wanted table for `services` on the node of `config`.
    pub fn build(config: &ProxyConfig, services: &[ServicePort]) -> Self {
        Self::build_from(config, services, None)
    }

    /// The same, reusing the fragments of `previous` whose Service port is unchanged.
    pub fn build_from(
        config: &ProxyConfig,
        services: &[ServicePort],
        previous: Option<&Ruleset>,
    ) -> Self {
        let mut rs = Ruleset::default();
        for sp in services {
            let key = sp.key();
            let fragment = match previous.and_then(|p| p.fragments.get(&key)) {
                Some(f) if f.input == *sp => f.clone(),
                _ => Arc::new(Fragment::build(config, sp)),
            };
            rs.service_ips.extend(
                fragment
                    .service_ips
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            rs.service_nodeports.extend(
                fragment
                    .service_nodeports
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            rs.no_endpoint_services.extend(
                fragment
                    .no_endpoint_services
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            rs.no_endpoint_nodeports.extend(
                fragment
                    .no_endpoint_nodeports
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            rs.cluster_ips.extend(fragment.cluster_ips.iter().copied());
            rs.fragments.insert(key, fragment);
        }
        rs
    }

    /// Every chain of every Service port.
    pub fn chains(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.fragments.values().flat_map(|f| f.chains.iter())
    }

    /// Every session-affinity set.
    pub fn affinity_sets(&self) -> impl Iterator<Item = (&String, &u32)> {
        self.fragments.values().flat_map(|f| f.affinity_sets.iter())
    }

    /// The number of chains.
    pub fn chain_count(&self) -> usize {
        self.fragments.values().map(|f| f.chains.len()).sum()
    }
}

/// The order chains must be created in so that every jump target exists first.
pub fn chain_rank(name: &str) -> u8 {
    match name.split('-').next() {
        Some("endpoint") => 0,
        Some("local") | Some("service") => 1,
        _ => 2,
    }
}

/// Characters that may appear in a chain name; anything else becomes `_` (the hash
/// prefix keeps names distinct).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-./_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn chain_name(kind: &str, key: &str) -> String {
    format!("{kind}-{}-{}", short_hash(key, 8), clean(key))
}

struct Endpoints<'a> {
    /// Ready endpoints, or serving-terminating ones when none is ready.
    cluster: Vec<&'a Endpoint>,
    /// The same choice among this node's endpoints.
    local: Vec<&'a Endpoint>,
}

/// Ready endpoints win; terminating-but-serving ones are only a fallback (as upstream).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

fn categorize<'a>(sp: &'a ServicePort, node: &str) -> Endpoints<'a> {
    Endpoints {
        cluster: usable(sp.endpoints.iter()),
        local: usable(
            sp.endpoints
                .iter()
                .filter(|e| e.node_name.as_deref() == Some(node)),
        ),
    }
}

impl Fragment {
    /// The rules of one Service port.
    pub fn build(config: &ProxyConfig, sp: &ServicePort) -> Self {
        let mut f = Fragment {
            input: sp.clone(),
            ..Default::default()
        };
        f.add_service(config, sp);
        f
    }

    fn add_service(&mut self, config: &ProxyConfig, sp: &ServicePort) {
        let Some(cluster_ip) = sp.cluster_ip else {
            return; // headless: DNS only
        };
        if config.node_local_ips.contains(&cluster_ip) {
            return; // served by the node itself
        }
        let key = sp.key();
        let proto = sp.proto().as_str();
        let eps = categorize(sp, &config.node_name);
        let cluster_chain = chain_name("service", &key);
        let local_chain = chain_name("local", &key);
        let external_chain = chain_name("external", &key);
        let masq_cluster_ip = format!(
            "ip daddr {cluster_ip} meta l4proto {proto} th dport {} ip saddr != {} jump mark-for-masquerade",
            sp.port, config.cluster_cidr
        );
        self.cluster_ips.insert(cluster_ip);

        let has_cluster = !eps.cluster.is_empty();
        let has_local = !eps.local.is_empty();
        if has_cluster {
            let rules = self.balance(sp, &key, &eps.cluster, &masq_cluster_ip);
            self.chains.insert(cluster_chain.clone(), rules);
        }
        if has_local && (sp.internal_local || sp.external_local) {
            let rules = self.balance(sp, &key, &eps.local, &masq_cluster_ip);
            self.chains.insert(local_chain.clone(), rules);
        }

        // The ClusterIP itself.
        let ip_key = |ip: Ipv4Addr, port: u16| format!("{ip} . {proto} . {port}");
        let internal = if sp.internal_local {
            has_local
        } else {
            has_cluster
        };
        let target = if sp.internal_local {
            &local_chain
        } else {
            &cluster_chain
        };
        if internal {
            self.service_ips
                .insert(ip_key(cluster_ip, sp.port), format!("goto {target}"));
        } else {
            self.no_endpoint_services.insert(
                ip_key(cluster_ip, sp.port),
                no_endpoint_verdict(has_cluster),
            );
        }

        // NodePort, external and load-balancer IPs.
        let external_ips: Vec<Ipv4Addr> = sp
            .external_ips
            .iter()
            .chain(&sp.load_balancer_ips)
            .copied()
            .collect();
        if sp.node_port.is_none() && external_ips.is_empty() {
            return;
        }
        if has_cluster {
            let mut rules = Vec::new();
            if sp.external_local {
                // Pods and the node itself may use any endpoint; others only local
                // ones, with their source address kept.
                rules.push(format!(
                    "ip saddr {} goto {cluster_chain}",
                    config.cluster_cidr
                ));
                rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                rules.push(format!("fib saddr type local goto {cluster_chain}"));
                rules.push(if has_local {
                    format!("goto {local_chain}")
                } else {
                    "drop".to_string()
                });
            } else {
                rules.push("jump mark-for-masquerade".to_string());
                rules.push(format!("goto {cluster_chain}"));
            }
            self.chains.insert(external_chain.clone(), rules);
            let verdict = format!("goto {external_chain}");
            for ip in external_ips {
                self.service_ips
                    .insert(ip_key(ip, sp.port), verdict.clone());
            }
            if let Some(np) = sp.node_port {
                self.service_nodeports
                    .insert(format!("{proto} . {np}"), verdict);
            }
        } else {
            let verdict = no_endpoint_verdict(false);
            for ip in external_ips {
                self.no_endpoint_services
                    .insert(ip_key(ip, sp.port), verdict.clone());
            }
            if let Some(np) = sp.node_port {
                self.no_endpoint_nodeports
                    .insert(format!("{proto} . {np}"), verdict);
            }
        }
    }

    /// The rules of a chain that picks one of `eps` (and the endpoint chains).
    fn balance(
        &mut self,
        sp: &ServicePort,
        key: &str,
        eps: &[&Endpoint],
        masq: &str,
    ) -> Vec<String> {
        let proto = sp.proto().as_str();
        let mut rules = vec![masq.to_string()];
        let mut targets = Vec::new();
        for ep in eps {
            let ep_key = format!("{key}__{}/{}", ep.ip, ep.port);
            let chain = chain_name("endpoint", &ep_key);
            let mut ep_rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
            if let Some(timeout) = sp.affinity_timeout {
                let set = format!(
                    "affinity-{}",
                    short_hash(&format!("{ep_key}/{timeout}"), 12)
                );
                rules.push(format!("ip saddr @{set} goto {chain}"));
                ep_rules.push(format!("update @{set} {{ ip saddr }}"));
                self.affinity_sets.insert(set, timeout);
            }
            ep_rules.push(format!(
                "meta l4proto {proto} dnat to {}:{}",
                ep.ip, ep.port
            ));
            self.chains.insert(chain.clone(), ep_rules);
            targets.push(chain);
        }
        // Endpoint i of n is taken with probability 1/(n-i) among those left, which
        // makes every endpoint equally likely. (One `numgen ... vmap { ... }` per
        // Service would do it in one rule, but each such anonymous map makes the
        // kernel's loop check slower for every other one: a 10,000-Service table
        // then takes minutes to load instead of seconds.)
        let n = targets.len();
        for (i, chain) in targets.iter().enumerate() {
            if i + 1 < n {
                rules.push(format!("numgen random mod {} 0 goto {chain}", n - i));
            } else {
                rules.push(format!("goto {chain}"));
            }
        }
        rules
    }
}

/// With no endpoint at all, reject (the client learns at once); with endpoints that
/// may not be used from here (traffic policy Local), drop.
fn no_endpoint_verdict(has_endpoints: bool) -> String {
    if has_endpoints {
        "drop".to_string()
    } else {
        "goto reject-chain".to_string()
    }
}
