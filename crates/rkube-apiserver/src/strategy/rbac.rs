//! `rbac.authorization.k8s.io` Roles, ClusterRoles and their bindings: names are
//! path segments (`system:basic-user` is a valid name), rules and role references
//! are checked as upstream does, and a binding's roleRef never changes.

use rkube_api::meta;
use serde_json::Value;

use super::Strategy;
use crate::error::FieldError;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Roles (`namespaced`) and ClusterRoles.
pub struct RoleStrategy {
    pub namespaced: bool,
}

/// RoleBindings (`namespaced`) and ClusterRoleBindings.
pub struct BindingStrategy {
    pub namespaced: bool,
}

fn path_segment_name(name: &str) -> Vec<String> {
    meta::validate_path_segment_name(name)
}

fn list_len(v: &Value, key: &str) -> usize {
    v.get(key).and_then(Value::as_array).map_or(0, Vec::len)
}

impl Strategy for RoleStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        path_segment_name(name)
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let rules = obj
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            if list_len(rule, "verbs") == 0 {
                errs.push(FieldError::required(
                    format!("{path}.verbs"),
                    "verbs must contain at least one value",
                ));
            }
            if list_len(rule, "nonResourceURLs") > 0 {
                let urls = rule.get("nonResourceURLs").cloned().unwrap_or_default();
                if self.namespaced {
                    errs.push(FieldError::invalid(
                        format!("{path}.nonResourceURLs"),
                        urls.clone(),
                        "namespaced rules cannot apply to non-resource URLs",
                    ));
                }
                if ["apiGroups", "resources", "resourceNames"]
                    .iter()
                    .any(|k| list_len(rule, k) > 0)
                {
                    errs.push(FieldError::invalid(
                        format!("{path}.nonResourceURLs"),
                        urls,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    ));
                }
                continue;
            }
            if list_len(rule, "apiGroups") == 0 {
                errs.push(FieldError::required(
                    format!("{path}.apiGroups"),
                    "resource rules must supply at least one api group",
                ));
            }
            if list_len(rule, "resources") == 0 {
                errs.push(FieldError::required(
                    format!("{path}.resources"),
                    "resource rules must supply at least one resource",
                ));
            }
        }
        errs
    }
}

impl Strategy for BindingStrategy {
    fn validate_name(&self, name: &str) -> Vec<String> {
        path_segment_name(name)
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let s = |p: &str| {
            meta::path_str(obj, &["roleRef", p])
                .unwrap_or("")
                .to_string()
        };
        let (group, kind, name) = (s("apiGroup"), s("kind"), s("name"));
        if group != GROUP {
            errs.push(FieldError::not_supported(
                "roleRef.apiGroup",
                group.as_str(),
                &[GROUP],
            ));
        }
        let kinds: &[&str] = if self.namespaced {
            &["Role", "ClusterRole"]
        } else {
            &["ClusterRole"]
        };
        if !kinds.contains(&kind.as_str()) {
            errs.push(FieldError::not_supported(
                "roleRef.kind",
                kind.as_str(),
                kinds,
            ));
        }
        if name.is_empty() {
            errs.push(FieldError::required("roleRef.name", ""));
        } else {
            for e in path_segment_name(&name) {
                errs.push(FieldError::invalid("roleRef.name", name.as_str(), e));
            }
        }
        let subjects = obj
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, subject) in subjects.iter().enumerate() {
            let path = format!("subjects[{i}]");
            let f = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
            if f("name").is_empty() {
                errs.push(FieldError::required(format!("{path}.name"), ""));
            }
            match f("kind") {
                "ServiceAccount" => {
                    if !f("apiGroup").is_empty() {
                        errs.push(FieldError::not_supported(
                            format!("{path}.apiGroup"),
                            f("apiGroup"),
                            &[""],
                        ));
                    }
                    if !self.namespaced && f("namespace").is_empty() {
                        errs.push(FieldError::required(format!("{path}.namespace"), ""));
                    }
                }
                "User" | "Group" => {
                    if f("apiGroup") != GROUP {
                        errs.push(FieldError::not_supported(
                            format!("{path}.apiGroup"),
                            f("apiGroup"),
                            &[GROUP],
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    format!("{path}.kind"),
                    other,
                    &["ServiceAccount", "User", "Group"],
                )),
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.get("roleRef") != old.get("roleRef") {
            errs.push(FieldError::invalid(
                "roleRef",
                new.get("roleRef").cloned().unwrap_or_default(),
                "cannot change roleRef",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: Vec<FieldError>) -> String {
        errs.iter()
            .map(FieldError::message)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn names_are_path_segments() {
        let s = RoleStrategy { namespaced: false };
        assert!(s.validate_name("system:basic-user").is_empty());
        assert!(!s.validate_name("a/b").is_empty());
    }

    #[test]
    fn rules_and_references_follow_upstream() {
        let role = RoleStrategy { namespaced: true };
        let got = messages(role.validate(&json!({"rules": [
            {"verbs": [], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
            {"verbs": ["get"]},
        ]})));
        for want in [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[1].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
            "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[2].resources: Required value: resource rules must supply at least one resource",
        ] {
            assert!(got.contains(want), "missing {want:?} in:\n{got}");
        }
        let crb = BindingStrategy { namespaced: false };
        let b = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "x"},
                       "subjects": [{"kind": "Robot", "name": "r"}]});
        let got = messages(crb.validate(&b));
        assert!(
            got.contains("roleRef.kind: Unsupported value: \"Role\""),
            "{got}"
        );
        assert!(
            got.contains("subjects[0].kind: Unsupported value: \"Robot\""),
            "{got}"
        );
        let old = json!({"roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "a"}});
        let new = json!({"roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "b"}});
        assert!(messages(crb.validate_update(&new, &old)).contains("cannot change roleRef"));
    }
}
