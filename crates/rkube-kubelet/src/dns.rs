//! A pod's resolv.conf from its `dnsPolicy` and `dnsConfig`, as upstream's kubelet
//! builds it: ClusterFirst points at the cluster DNS with the namespace's search
//! path, Default copies the node's, None takes only `dnsConfig`.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use rkube_runtime::DnsConfig;

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// What the node knows about DNS.
#[derive(Clone, Debug, Default)]
pub struct NodeDns {
    /// The cluster DNS Service IPs (`--cluster-dns`).
    pub cluster_dns: Vec<Ipv4Addr>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The node's resolv.conf, for `dnsPolicy: Default` and the host search path.
    pub host_resolv_conf: String,
}

/// The parts of a resolv.conf file.
pub fn parse_resolv_conf(s: &str) -> DnsConfig {
    let mut c = DnsConfig::default();
    for line in s.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => c.servers.extend(w.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                c.searches = w.map(|s| s.trim_end_matches('.').to_string()).collect()
            }
            Some("options") => c.options.extend(w.map(str::to_string)),
            _ => {}
        }
    }
    c
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Merges options by name: a later `ndots:2` replaces an earlier `ndots:5`.
fn merge_options(base: Vec<String>, extra: Vec<(String, Option<String>)>) -> Vec<String> {
    let mut opts: Vec<(String, Option<String>)> = base
        .into_iter()
        .map(|o| match o.split_once(':') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (o, None),
        })
        .collect();
    for (k, v) in extra {
        match opts.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => opts.push((k, v)),
        }
    }
    opts.into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}:{v}"),
            None => k,
        })
        .collect()
}

/// The resolv.conf of `pod`.
pub fn pod_dns(pod: &Pod, node: &NodeDns) -> DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host = parse_resolv_conf(&node.host_resolv_conf);
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !node.cluster_dns.is_empty();
    let mut c = if policy == "None" {
        DnsConfig::default()
    } else if cluster {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let d = node.cluster_domain.trim_end_matches('.');
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.to_string()];
        searches.extend(host.searches.iter().cloned());
        DnsConfig {
            servers: node.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        host
    };
    if let Some(dc) = spec.and_then(|s| s.dns_config.as_ref()) {
        c.servers.extend(dc.nameservers.iter().flatten().cloned());
        c.searches.extend(
            dc.searches
                .iter()
                .flatten()
                .map(|s| s.trim_end_matches('.').to_string()),
        );
        let extra = dc
            .options
            .iter()
            .flatten()
            .filter_map(|o| Some((o.name.clone()?, o.value.clone())))
            .collect();
        c.options = merge_options(c.options, extra);
    }
    c.servers = dedup(c.servers);
    c.servers.truncate(MAX_NAMESERVERS);
    c.searches = dedup(c.searches);
    c.searches.truncate(MAX_SEARCHES);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeDns {
        NodeDns {
            cluster_dns: vec![Ipv4Addr::new(10, 43, 0, 10)],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 192.0.2.1\nsearch corp.example\noptions edns0\n".into(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn cluster_first() {
        let c = pod_dns(&pod(json!({})), &node());
        assert_eq!(c.servers, ["10.43.0.10"]);
        assert_eq!(
            c.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(c.options, ["ndots:5"]);
    }

    #[test]
    fn host_network_and_default_use_the_node() {
        for spec in [
            json!({"hostNetwork": true}),
            json!({"dnsPolicy": "Default"}),
        ] {
            let c = pod_dns(&pod(spec), &node());
            assert_eq!(c.servers, ["192.0.2.1"]);
            assert_eq!(c.searches, ["corp.example"]);
        }
        let c = pod_dns(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &node(),
        );
        assert_eq!(c.servers, ["10.43.0.10"]);
    }

    #[test]
    fn none_and_dns_config() {
        let c = pod_dns(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["192.0.2.9"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            &node(),
        );
        assert_eq!(c.servers, ["192.0.2.9"]);
        assert_eq!(c.searches, ["a.example"]);
        assert_eq!(c.options, ["ndots:2", "edns0"]);
        let c = pod_dns(
            &pod(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}})),
            &node(),
        );
        assert_eq!(c.options, ["ndots:1"]);
    }
}
