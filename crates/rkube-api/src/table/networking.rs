//! `networking.k8s.io` (Ingresses, IngressClasses, NetworkPolicies) and
//! `discovery.k8s.io` EndpointSlices.

use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, non_empty, text};
use super::{AGE, Column, NAME, Printer};
use crate::meta;

pub(crate) static INGRESSES: Printer = Printer {
    columns: &[
        NAME,
        Column::text(
            "Class",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        Column::text(
            "Hosts",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        Column::text(
            "Address",
            "Address is a list containing ingress points for the load-balancer",
        ),
        Column::text("Ports", "Ports of TLS configurations that open"),
        AGE,
    ],
    row: |ing, now| {
        let ports = if list(ing, &["spec", "tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        cells![
            format::name(ing),
            meta::path_str(ing, &["spec", "ingressClassName"]).unwrap_or("<none>"),
            hosts(list(ing, &["spec", "rules"])),
            format::load_balancer_ingress(meta::path(ing, &["status", "loadBalancer"])),
            ports,
            format::age(ing, now),
        ]
    },
};

/// Up to three rule hosts, `*` when no rule names one.
fn hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut more = false;
    for rule in rules {
        if shown.len() == MAX {
            more = true;
        }
        if let Some(host) = non_empty(rule, &["host"]).filter(|_| !more) {
            shown.push(host);
        }
    }
    if shown.is_empty() {
        return "*".to_string();
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

pub(crate) static INGRESS_CLASSES: Printer = Printer {
    columns: &[
        NAME,
        Column::text(
            "Controller",
            "Controller that is responsible for handling this class",
        ),
        Column::text(
            "Parameters",
            "A reference to a resource with additional parameters",
        ),
        AGE,
    ],
    row: |ic, now| {
        let parameters = match meta::path(ic, &["spec", "parameters"]).filter(|p| p.is_object()) {
            Some(p) => {
                let mut s = text(p, &["kind"]).to_string();
                if let Some(group) = meta::path_str(p, &["apiGroup"]) {
                    s = format!("{s}.{group}");
                }
                format!("{s}/{}", text(p, &["name"]))
            }
            None => "<none>".to_string(),
        };
        cells![
            format::name(ic),
            text(ic, &["spec", "controller"]),
            parameters,
            format::age(ic, now),
        ]
    },
};

pub(crate) static NETWORK_POLICIES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Pod-Selector", d::NETPOL_POD_SELECTOR),
        AGE,
    ],
    row: |np, now| {
        cells![
            format::name(np),
            format::label_selector(meta::path(np, &["spec", "podSelector"])),
            format::age(np, now),
        ]
    },
};

pub(crate) static ENDPOINT_SLICES: Printer = Printer {
    columns: &[
        NAME,
        Column::text("AddressType", d::EPS_ADDRESS_TYPE),
        Column::text("Ports", d::EPS_PORTS),
        Column::text("Endpoints", d::EPS_ENDPOINTS),
        AGE,
    ],
    row: |eps, now| {
        let ports = list(eps, &["ports"])
            .iter()
            .map(|p| match meta::path_i64(p, &["port"]) {
                Some(port) => port.to_string(),
                None => meta::path_str(p, &["name"]).unwrap_or("*").to_string(),
            })
            .collect();
        let addresses = list(eps, &["endpoints"])
            .iter()
            .flat_map(|e| list(e, &["addresses"]))
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        cells![
            format::name(eps),
            text(eps, &["addressType"]),
            format::list_with_more(ports, 3),
            format::list_with_more(addresses, 3),
            format::age(eps, now),
        ]
    },
};
