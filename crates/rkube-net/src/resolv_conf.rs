//! resolv.conf: the one pods get, and the host's upstream resolvers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The resolv.conf of a pod with DNS policy ClusterFirst in `namespace`.
pub fn pod_resolv_conf(dns_ip: Ipv4Addr, namespace: &str, domain: &str) -> String {
    let domain = domain.trim_end_matches('.');
    format!(
        "search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {dns_ip}\noptions ndots:5\n"
    )
}

/// The `nameserver` lines of a resolv.conf, as port-53 addresses. Addresses in
/// `exclude` (the cluster DNS itself) are left out so that forwarding cannot loop.
pub fn nameservers(resolv_conf: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .filter(|ip| !exclude.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The node's upstream resolvers, from `/etc/resolv.conf`.
pub fn host_nameservers(exclude: &[IpAddr]) -> std::io::Result<Vec<SocketAddr>> {
    Ok(nameservers(
        &std::fs::read_to_string("/etc/resolv.conf")?,
        exclude,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_resolv_conf_searches_the_namespace_first() {
        assert_eq!(
            pod_resolv_conf(Ipv4Addr::new(10, 43, 0, 10), "shop", "cluster.local."),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn nameservers_are_read_and_the_cluster_dns_left_out() {
        let conf = "# comment\nnameserver 192.0.2.53\nnameserver 10.43.0.10\nsearch example\nnameserver ::1\nnameserver junk\n";
        let got = nameservers(conf, &["10.43.0.10".parse().unwrap()]);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
