//! A pod's hostname and the `/etc/hosts` the kubelet manages for it: localhost, the
//! pod's own IP under its hostname (and FQDN when it has a subdomain, as StatefulSet
//! pods do), then `hostAliases`.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// The pod's hostname and, with a subdomain, its domain
/// (`<subdomain>.<namespace>.svc.<cluster domain>`).
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    // A DNS label: at most 63 characters, not ending in '-' or '.'.
    let mut hostname: String = name.chars().take(63).collect();
    while hostname.ends_with(['-', '.']) {
        hostname.pop();
    }
    let domain = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            format!(
                "{sub}.{}.svc.{}",
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                cluster_domain.trim_end_matches('.')
            )
        });
    (hostname, domain)
}

/// The hostname set in the pod's UTS namespace: the FQDN with `setHostnameAsFQDN`.
pub fn uts_hostname(pod: &Pod, cluster_domain: &str) -> String {
    let (h, d) = hostname_and_domain(pod, cluster_domain);
    let fqdn = pod
        .spec
        .as_ref()
        .and_then(|s| s.set_hostname_as_fqdn)
        .unwrap_or(false);
    match d {
        Some(d) if fqdn => format!("{h}.{d}"),
        _ => h,
    }
}

fn host_aliases(pod: &Pod) -> String {
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_ref())
        .filter(|a| !a.is_empty());
    let Some(aliases) = aliases else {
        return String::new();
    };
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.clone().unwrap_or_default();
        if !names.is_empty() {
            s.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
        }
    }
    s
}

/// The managed `/etc/hosts` of a pod with its own network namespace.
pub fn pod_hosts_file(pod: &Pod, ips: &[Ipv4Addr], cluster_domain: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    for ip in ips {
        match &domain {
            Some(d) => s.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    s.push_str(&host_aliases(pod));
    s
}

/// The managed `/etc/hosts` of a host-network pod: the node's file and the aliases.
pub fn host_network_hosts_file(pod: &Pod, node_hosts: &str) -> String {
    let mut s = String::from("# Kubernetes-managed hosts file (host network).\n");
    s.push_str(node_hosts);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&host_aliases(pod));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(
            json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn statefulset_pod_gets_its_fqdn() {
        let p = pod(json!({"hostname": "web-0", "subdomain": "nginx",
            "hostAliases": [{"ip": "192.0.2.7", "hostnames": ["db.local", "cache.local"]}]}));
        let f = pod_hosts_file(&p, &[Ipv4Addr::new(10, 42, 0, 5)], "cluster.local");
        assert!(
            f.contains("10.42.0.5\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n"),
            "{f}"
        );
        assert!(f.contains("# Entries added by HostAliases.\n192.0.2.7\tdb.local\tcache.local\n"));
        assert_eq!(uts_hostname(&p, "cluster.local"), "web-0");
        let mut p = p;
        p.spec.as_mut().unwrap().set_hostname_as_fqdn = Some(true);
        assert_eq!(
            uts_hostname(&p, "cluster.local"),
            "web-0.nginx.shop.svc.cluster.local"
        );
    }

    #[test]
    fn plain_pod_and_host_network() {
        let p = pod(json!({}));
        let f = pod_hosts_file(&p, &[Ipv4Addr::new(10, 42, 0, 6)], "cluster.local");
        assert!(f.ends_with("10.42.0.6\tweb-0\n"), "{f}");
        let f = host_network_hosts_file(&p, "127.0.0.1 localhost");
        assert_eq!(
            f,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }
}
