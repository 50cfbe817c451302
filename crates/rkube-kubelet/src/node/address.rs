//! The node's addresses from the kernel's tables (`/proc/net/fib_trie`,
//! `/proc/net/route`): every local IPv4 address, and the one a node should advertise
//! when none is given — the address on the interface of the default route, as k3s and
//! the kubelet choose it. Pod bridges hold local addresses too (the pods' gateway),
//! so "the first local address" would pick one of those once a node has run.

use std::net::Ipv4Addr;

use rkube_net::Ipv4Cidr;

/// The host's IPv4 addresses other than loopback, in the kernel's order.
pub fn host_ipv4_addresses() -> Vec<Ipv4Addr> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    local_addresses(&trie)
}

/// The address to advertise: on the default route's interface if there is one,
/// else the first local address outside `exclude` (the cluster and service CIDRs).
pub fn default_node_ip(exclude: &[Ipv4Cidr]) -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    choose(&host_ipv4_addresses(), &routes, exclude)
}

fn local_addresses(trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']).trim();
        if let Ok(ip) = t.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// `/proc/net/route` writes addresses as little-endian hex.
fn hex_ip(s: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(s, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_le_bytes()))
}

fn choose(local: &[Ipv4Addr], routes: &str, exclude: &[Ipv4Cidr]) -> Option<Ipv4Addr> {
    let rows: Vec<Vec<&str>> = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.len() >= 8)
        .collect();
    let excluded = |ip: &Ipv4Addr| exclude.iter().any(|c| c.contains(*ip));
    let default_iface = rows
        .iter()
        .find(|r| r[1] == "00000000" && r[7] == "00000000")
        .map(|r| r[0]);
    if let Some(iface) = default_iface {
        // The interface's own subnets (its directly connected routes) hold its address.
        for r in rows.iter().filter(|r| r[0] == iface && r[2] == "00000000") {
            let (Some(dst), Some(mask)) = (hex_ip(r[1]), hex_ip(r[7])) else {
                continue;
            };
            let (dst, mask) = (u32::from(dst), u32::from(mask));
            if mask == 0 {
                continue;
            }
            if let Some(ip) = local
                .iter()
                .find(|ip| u32::from(**ip) & mask == dst && !excluded(ip))
            {
                return Some(*ip);
            }
        }
    }
    local.iter().find(|ip| !excluded(ip)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.42.0.0/16 2 0 2
        |-- 10.42.0.1
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
        |-- 192.0.2.2
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
";

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
rkube0\t00002A0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    #[test]
    fn local_addresses_skip_loopback() {
        assert_eq!(
            local_addresses(TRIE),
            vec![Ipv4Addr::new(10, 42, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
    }

    #[test]
    fn the_default_route_interface_wins_over_a_pod_bridge() {
        let local = local_addresses(TRIE);
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(
            choose(&local, ROUTES, &[]),
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        // Without a default route: the first address outside the cluster's CIDRs.
        let no_default = ROUTES
            .lines()
            .filter(|l| !l.contains("010200C0"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            choose(&local, &no_default, &[cluster]),
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        assert_eq!(choose(&[], ROUTES, &[]), None);
    }
}
