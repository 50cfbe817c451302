//! Services (TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S)) and Endpoints.

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};

pub(crate) static SERVICES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Type", d::SVC_TYPE),
        Column::text("Cluster-IP", d::SVC_CLUSTER_IP),
        Column::text("External-IP", d::SVC_EXTERNAL_IPS),
        Column::text("Port(s)", d::SVC_PORTS),
        AGE,
        Column::text("Selector", d::SVC_SELECTOR).wide(),
    ],
    row: service_row,
};

fn service_row(svc: &Value, now: Timestamp) -> Vec<Value> {
    let kind = non_empty(svc, &["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = list(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| non_empty(svc, &["spec", "clusterIP"]))
        .unwrap_or("<none>");
    let ports: Vec<String> = list(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = format::int(p, &["port"]);
            let protocol = non_empty(p, &["protocol"]).unwrap_or("TCP");
            match format::int(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    cells![
        format::name(svc),
        kind,
        cluster_ip,
        external_ip(svc, kind),
        ports,
        format::age(svc, now),
        format::labels(format::object(svc, &["spec", "selector"])),
    ]
}

/// EXTERNAL-IP: external IPs, load-balancer ingress (`<pending>` until assigned), or the
/// external name.
fn external_ip(svc: &Value, kind: &str) -> String {
    let external_ips: Vec<&str> = list(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match kind {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb =
                format::load_balancer_ingress(crate::meta::path(svc, &["status", "loadBalancer"]));
            let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(crate) static ENDPOINTS: Printer = Printer {
    columns: &[NAME, Column::text("Endpoints", d::EP_SUBSETS), AGE],
    row: |ep, now| cells![format::name(ep), endpoints(ep), format::age(ep, now)],
};

/// Up to three `ip:port` pairs, then `+ N more...`; `<none>` without subsets.
fn endpoints(ep: &Value) -> String {
    let subsets = list(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            shown.extend(
                addresses
                    .iter()
                    .map(|a| text(a, &["ip"]).to_string())
                    .take(MAX.saturating_sub(shown.len())),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    break;
                }
                shown.push(host_port(
                    text(address, &["ip"]),
                    format::int(port, &["port"]),
                ));
            }
        }
    }
    let joined = shown.join(",");
    if count > shown.len() && shown.len() == MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// `ip:port`, with IPv6 addresses bracketed as Go's `net.JoinHostPort` does.
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}
