//! `rbac.authorization.k8s.io` bindings: ROLE and, wide, the subjects by kind.
//! Roles and ClusterRoles have no printer upstream (NAME, CREATED AT).

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, list, text};
use super::{AGE, Column, NAME, Printer};

pub(crate) static ROLE_BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Role", d::RB_ROLE_REF),
        AGE,
        Column::text("Users", "Users in the roleBinding").wide(),
        Column::text("Groups", "Groups in the roleBinding").wide(),
        Column::text("ServiceAccounts", "ServiceAccounts in the roleBinding").wide(),
    ],
    row: binding_row,
};

pub(crate) static CLUSTER_ROLE_BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Role", d::CRB_ROLE_REF),
        AGE,
        Column::text("Users", "Users in the clusterRoleBinding").wide(),
        Column::text("Groups", "Groups in the clusterRoleBinding").wide(),
        Column::text(
            "ServiceAccounts",
            "ServiceAccounts in the clusterRoleBinding",
        )
        .wide(),
    ],
    row: binding_row,
};

fn binding_row(b: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for s in list(b, &["subjects"]) {
        let name = text(s, &["name"]);
        match text(s, &["kind"]) {
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{name}", text(s, &["namespace"])))
            }
            _ => {}
        }
    }
    cells![
        format::name(b),
        format!(
            "{}/{}",
            text(b, &["roleRef", "kind"]),
            text(b, &["roleRef", "name"])
        ),
        format::age(b, now),
        users.join(", "),
        groups.join(", "),
        service_accounts.join(", "),
    ]
}
