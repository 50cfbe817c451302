//! Turning a wanted [`Ruleset`] into one `nft -f` script: the whole table the first
//! time, and afterwards only what changed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;
use std::sync::Arc;

use super::ProxyConfig;
use super::rules::{Fragment, MASQUERADE_MARK, Ruleset, chain_rank};

const MAPS: [(&str, &str); 4] = [
    (
        "service-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    ("service-nodeports", "inet_proto . inet_service : verdict"),
    (
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
    ),
];

fn map_of<'a>(rs: &'a Ruleset, name: &str) -> &'a BTreeMap<String, String> {
    match name {
        "service-ips" => &rs.service_ips,
        "service-nodeports" => &rs.service_nodeports,
        "no-endpoint-services" => &rs.no_endpoint_services,
        _ => &rs.no_endpoint_nodeports,
    }
}

/// Chains in creation order: jump targets before the chains that jump to them.
fn ordered<'a>(
    chains: impl Iterator<Item = (&'a String, &'a Vec<String>)>,
) -> Vec<(&'a String, &'a Vec<String>)> {
    let mut v: Vec<_> = chains.collect();
    v.sort_unstable_by(|(a, _), (b, _)| (chain_rank(a), a).cmp(&(chain_rank(b), b)));
    v
}

/// The fixed chains that per-service chains jump to.
fn helpers() -> String {
    let m = MASQUERADE_MARK;
    format!(
        "\tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {m:#x}\n\t}}\n\
         \tchain masquerading {{\n\
         \t\tmeta mark & {m:#x} == 0 return\n\
         \t\tmeta mark set meta mark ^ {m:#x}\n\
         \t\tmasquerade fully-random\n\t}}\n\
         \tchain reject-chain {{\n\t\treject\n\t}}\n"
    )
}

/// The fixed chains: hooks and the dispatch and rejection rules.
fn skeleton(config: &ProxyConfig) -> String {
    let mut nodeport_ips: Vec<String> = config
        .nodeport_ips
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    if config.localhost_nodeports && !nodeport_ips.is_empty() {
        nodeport_ips.push("127.0.0.1".into());
    }
    // Without a list, every local address takes NodePorts (127.0.0.1 only if asked).
    let nodeport_match = if nodeport_ips.is_empty() {
        if config.localhost_nodeports {
            "fib daddr type local".to_string()
        } else {
            "fib daddr type local ip daddr != 127.0.0.0/8".to_string()
        }
    } else {
        format!("ip daddr {{ {} }}", nodeport_ips.join(", "))
    };
    let local_ips = if config.node_local_ips.is_empty() {
        String::new()
    } else {
        let ips: Vec<String> = config
            .node_local_ips
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        format!("\t\tip daddr {{ {} }} return\n", ips.join(", "))
    };
    format!(
        "\tchain service-endpoints-check {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t}}\n\
         \tchain nodeport-endpoints-check {{\n\
         \t\t{nodeport_match} meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}\n\
         \tchain cluster-ips-check {{\n{local_ips}\
         \t\tip daddr @cluster-ips reject\n\
         \t\tip daddr {svc} drop\n\t}}\n\
         \tchain services {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @service-ips\n\
         \t\t{nodeport_match} meta l4proto . th dport vmap @service-nodeports\n\t}}\n\
         \tchain filter-input {{\n\
         \t\ttype filter hook input priority -110; policy accept;\n\
         \t\tct state new jump nodeport-endpoints-check\n\
         \t\tct state new jump service-endpoints-check\n\
         \t\tip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8 ct status & dnat == 0 ct state != {{ established, related }} drop\n\t}}\n\
         \tchain filter-forward {{\n\
         \t\ttype filter hook forward priority -110; policy accept;\n\
         \t\tct state new jump service-endpoints-check\n\
         \t\tct state new jump cluster-ips-check\n\t}}\n\
         \tchain filter-output {{\n\
         \t\ttype filter hook output priority -110; policy accept;\n\
         \t\tct state new jump service-endpoints-check\n\t}}\n\
         \tchain filter-output-post-dnat {{\n\
         \t\ttype filter hook output priority -90; policy accept;\n\
         \t\tct state new jump cluster-ips-check\n\t}}\n\
         \tchain nat-prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tjump masquerading\n\t}}\n",
        svc = config.service_cidr,
    )
}

fn elements(map: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = map.iter().map(|(k, v)| format!("{k} : {v}")).collect();
    items.join(",\n\t\t\t")
}

/// The whole table: deleted and defined again in one transaction. Returns the script
/// and the number of chains it writes.
pub fn full(config: &ProxyConfig, rs: &Ruleset) -> (String, usize) {
    let t = &config.table;
    let mut s = String::with_capacity(256 + rs.chain_count() * 200);
    // `add` first so that `delete` cannot fail on a missing table.
    let _ = writeln!(s, "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{");
    let _ = writeln!(s, "\tcomment \"rkube service proxy\"");
    s.push_str("\tset cluster-ips {\n\t\ttype ipv4_addr\n");
    if !rs.cluster_ips.is_empty() {
        let ips: Vec<String> = rs.cluster_ips.iter().map(|ip| ip.to_string()).collect();
        let _ = writeln!(s, "\t\telements = {{ {} }}", ips.join(", "));
    }
    s.push_str("\t}\n");
    for (name, timeout) in rs.affinity_sets() {
        let _ = writeln!(
            s,
            "\tset {name} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}"
        );
    }
    for (name, ty) in MAPS {
        let _ = writeln!(s, "\tmap {name} {{\n\t\ttype {ty}");
        s.push_str("\t}\n");
    }
    s.push_str(&helpers());
    for (name, rules) in ordered(rs.chains()) {
        let _ = writeln!(s, "\tchain {name} {{");
        for r in rules {
            let _ = writeln!(s, "\t\t{r}");
        }
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    // Map elements name chains, so they come once every chain exists, and before the
    // maps are used by any rule: the kernel checks elements added to a map in use
    // against the table, which makes a large first load several times slower.
    for (name, _) in MAPS {
        let map = map_of(rs, name);
        if !map.is_empty() {
            let _ = writeln!(
                s,
                "add element ip {t} {name} {{\n\t\t\t{}\n}}",
                elements(map)
            );
        }
    }
    let _ = writeln!(s, "table ip {t} {{");
    s.push_str(&skeleton(config));
    s.push_str("}\n");
    (s, rs.chain_count())
}

/// Only the differences from `old` to `new`, in an order the kernel accepts: new
/// chains and sets first, then rewritten chains, then map elements, and last the
/// chains and sets nothing refers to any more.
pub fn incremental(t: &str, old: &Ruleset, new: &Ruleset) -> (String, usize) {
    let mut s = String::new();
    let empty = Fragment::default();
    let mut changed = Vec::new();
    let mut created = HashSet::new();
    let mut stale = Vec::new();
    let mut new_sets = Vec::new();
    let mut stale_sets = Vec::new();
    // Only Service ports whose fragment was rebuilt can differ.
    for (key, nf) in &new.fragments {
        let of = match old.fragments.get(key) {
            Some(of) if Arc::ptr_eq(of, nf) => continue,
            Some(of) => of.as_ref(),
            None => &empty,
        };
        for (name, rules) in &nf.chains {
            match of.chains.get(name) {
                Some(r) if r == rules => {}
                Some(_) => changed.push((name, rules)),
                None => {
                    created.insert(name);
                    changed.push((name, rules));
                }
            }
        }
        stale.extend(of.chains.keys().filter(|c| !nf.chains.contains_key(*c)));
        new_sets.extend(
            nf.affinity_sets
                .iter()
                .filter(|(k, _)| !of.affinity_sets.contains_key(*k)),
        );
        stale_sets.extend(
            of.affinity_sets
                .keys()
                .filter(|k| !nf.affinity_sets.contains_key(*k)),
        );
    }
    for (key, of) in &old.fragments {
        if !new.fragments.contains_key(key) {
            stale.extend(of.chains.keys());
            stale_sets.extend(of.affinity_sets.keys());
        }
    }
    for (name, timeout) in new_sets {
        let _ = writeln!(
            s,
            "add set ip {t} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
        );
    }
    let changed = ordered(changed.into_iter());
    for (name, _) in &changed {
        if created.contains(name) {
            let _ = writeln!(s, "add chain ip {t} {name}");
        }
    }
    for (name, rules) in &changed {
        if !created.contains(name) {
            let _ = writeln!(s, "flush chain ip {t} {name}");
        }
        for r in *rules {
            let _ = writeln!(s, "add rule ip {t} {name} {r}");
        }
    }
    let old_ips: BTreeSet<_> = old.cluster_ips.iter().collect();
    let new_ips: BTreeSet<_> = new.cluster_ips.iter().collect();
    let gone: Vec<String> = old_ips
        .difference(&new_ips)
        .map(|ip| ip.to_string())
        .collect();
    let added: Vec<String> = new_ips
        .difference(&old_ips)
        .map(|ip| ip.to_string())
        .collect();
    if !gone.is_empty() {
        let _ = writeln!(
            s,
            "delete element ip {t} cluster-ips {{ {} }}",
            gone.join(", ")
        );
    }
    if !added.is_empty() {
        let _ = writeln!(
            s,
            "add element ip {t} cluster-ips {{ {} }}",
            added.join(", ")
        );
    }
    for (map, _) in MAPS {
        let (o, n) = (map_of(old, map), map_of(new, map));
        // A changed verdict is a delete and an add.
        let removed: Vec<&String> = o
            .iter()
            .filter(|(k, v)| n.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        let upserts: BTreeMap<String, String> = n
            .iter()
            .filter(|(k, v)| o.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !removed.is_empty() {
            let keys: Vec<&str> = removed.iter().map(|k| k.as_str()).collect();
            let _ = writeln!(s, "delete element ip {t} {map} {{ {} }}", keys.join(", "));
        }
        if !upserts.is_empty() {
            let _ = writeln!(s, "add element ip {t} {map} {{ {} }}", elements(&upserts));
        }
    }
    for c in &stale {
        let _ = writeln!(s, "flush chain ip {t} {c}");
    }
    for c in &stale {
        let _ = writeln!(s, "delete chain ip {t} {c}");
    }
    for set in stale_sets {
        let _ = writeln!(s, "delete set ip {t} {set}");
    }
    (s, changed.len())
}
