//! `certificates.k8s.io` CertificateSigningRequests: the requester is recorded from
//! who creates it, the request must be a signed PKCS#10 request, the spec never
//! changes, and approval conditions follow upstream's rules.

use base64::Engine;
use rkube_api::meta;
use serde_json::{Value, json};

use super::Strategy;
use crate::auth::UserInfo;
use crate::error::FieldError;

pub struct CsrStrategy;

/// The key usages upstream accepts (`certificates.KeyUsage`).
const KEY_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// Condition types that may appear once each.
const SINGLE_CONDITIONS: &[&str] = &["Approved", "Denied", "Failed"];

impl Strategy for CsrStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        // Nobody creates an approved or issued request.
        obj["status"] = json!({});
    }

    fn record_requester(&self, obj: &mut Value, user: &UserInfo) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        for k in ["username", "uid", "groups", "extra"] {
            spec.remove(k);
        }
        spec.insert("username".into(), json!(user.name));
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
        if !user.extra.is_empty() {
            let mut extra: Vec<(&String, &Vec<String>)> = user.extra.iter().collect();
            extra.sort();
            let map: serde_json::Map<String, Value> = extra
                .into_iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            spec.insert("extra".into(), Value::Object(map));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // The main resource changes metadata only.
        match old.get("spec") {
            Some(s) => new["spec"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("spec");
                }
            }
        }
    }

    fn prepare_for_subresource_update(&self, subresource: &str, new: &mut Value, old: &Value) {
        // `approval` decides the Approved and Denied conditions only; `status` (the
        // signer) everything else. Each keeps the other's part as it was.
        let approval = subresource == "approval";
        let decides = |c: &Value| {
            let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
            (ty == "Approved" || ty == "Denied") == approval
        };
        let list = |v: &Value| {
            v.pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let now = crate::time::now_rfc3339();
        let old_conds = list(old);
        let mut conds: Vec<Value> = list(new).into_iter().filter(|c| decides(c)).collect();
        for c in &mut conds {
            // Timestamps the writer left out: kept from the same condition, else now.
            let prev = old_conds
                .iter()
                .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"));
            for f in ["lastUpdateTime", "lastTransitionTime"] {
                if c.get(f).is_none_or(Value::is_null) {
                    c[f] = prev
                        .and_then(|p| p.get(f).cloned())
                        .filter(|v| !v.is_null())
                        .unwrap_or_else(|| json!(now));
                }
            }
        }
        conds.extend(old_conds.into_iter().filter(|c| !decides(c)));
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        if approval {
            match old.pointer("/status/certificate") {
                Some(cert) => new["status"]["certificate"] = cert.clone(),
                None => {
                    if let Some(m) = new["status"].as_object_mut() {
                        m.remove("certificate");
                    }
                }
            }
        }
        if conds.is_empty() {
            if let Some(m) = new["status"].as_object_mut() {
                m.remove("conditions");
            }
        } else {
            new["status"]["conditions"] = json!(conds);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        if let Err(why) = check_request(spec.get("request")) {
            errs.push(FieldError::invalid(
                "spec.request",
                spec.get("request").cloned().unwrap_or(json!("")),
                why,
            ));
        }
        match spec.get("signerName").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required("spec.signerName", "")),
            Some(s) => {
                for e in signer_name(s) {
                    errs.push(FieldError::invalid("spec.signerName", s, e));
                }
            }
        }
        let usages: Vec<&str> = spec
            .get("usages")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if usages.is_empty() {
            errs.push(FieldError::required(
                "spec.usages",
                "usages must be provided",
            ));
        }
        for (i, u) in usages.iter().enumerate() {
            let path = format!("spec.usages[{i}]");
            if !KEY_USAGES.contains(u) {
                errs.push(FieldError::not_supported(path, *u, KEY_USAGES));
            } else if usages[..i].contains(u) {
                errs.push(FieldError::duplicate(path, *u));
            }
        }
        if let Some(s) = spec.get("expirationSeconds").and_then(Value::as_i64)
            && s < 600
        {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                s,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        errs.extend(conditions(obj));
        errs
    }

    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = conditions(new);
        // Approval, denial and failure are final.
        for ty in SINGLE_CONDITIONS {
            let (was, is) = (condition(old, ty), condition(new, ty));
            match (was, is) {
                (Some(_), None) => errs.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not remove a condition of type \"{ty}\""),
                )),
                (Some(a), Some(b)) if a != b => errs.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not modify a condition of type \"{ty}\""),
                )),
                _ => {}
            }
        }
        let cert = |v: &Value| {
            v.pointer("/status/certificate")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (was, is) = (cert(old), cert(new));
        if was != is {
            if !was.is_empty() {
                errs.push(FieldError::forbidden(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                ));
            } else if let Err(why) = check_certificates(&is) {
                errs.push(FieldError::invalid(
                    "status.certificate",
                    "<certificate data>",
                    why,
                ));
            }
        }
        errs
    }

    fn field_names(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }

    fn fields(&self, obj: &Value) -> Vec<(String, String)> {
        vec![(
            "spec.signerName".into(),
            meta::path_str(obj, &["spec", "signerName"])
                .unwrap_or("")
                .to_string(),
        )]
    }
}

/// `spec.request`: base64 of a PEM `CERTIFICATE REQUEST` whose signature holds.
fn check_request(v: Option<&Value>) -> Result<(), String> {
    let b64 = v.and_then(Value::as_str).unwrap_or("");
    let pem_bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_bytes).map_err(|_| wrong_type())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(wrong_type());
    }
    use x509_parser::prelude::FromDer;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| format!("asn1: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("x509: signature verification failed: {e}"))
}

/// A signer name is `<domain>/<path>`.
fn signer_name(s: &str) -> Vec<String> {
    let Some((domain, path)) = s.split_once('/') else {
        return vec![
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"
                .into(),
        ];
    };
    let mut errs: Vec<String> = meta::validate_dns1123_subdomain(domain)
        .into_iter()
        .map(|e| format!("validating the domain part: {e}"))
        .collect();
    let path_ok = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        });
    if !path_ok {
        errs.push(
            "validating the path part: must consist of alphanumeric characters, '-', '_' or '.', separated by '/'"
                .into(),
        );
    }
    errs
}

/// The condition of a type, if the object has one.
fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
}

/// `status.certificate`: base64 of one or more PEM `CERTIFICATE` blocks, each a
/// certificate.
fn check_certificates(b64: &str) -> Result<(), String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    let mut count = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found \"{}\"",
                pem.label
            ));
        }
        count += 1;
        pem.parse_x509()
            .map_err(|e| format!("failure parsing certificate {count}: {e}"))?;
    }
    if count == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// `status.conditions`: types present, Approved/Denied/Failed at most once, True, and
/// never both Approved and Denied.
fn conditions(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let conds = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conds.iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
        if ty.is_empty() {
            errs.push(FieldError::required(format!("{path}.type"), ""));
            continue;
        }
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        if SINGLE_CONDITIONS.contains(&ty) {
            if seen.contains(&ty) {
                errs.push(FieldError::duplicate(format!("{path}.type"), ty));
            }
            if status != "True" {
                errs.push(FieldError::not_supported(
                    format!("{path}.status"),
                    status,
                    &["True"],
                ));
            }
        } else if !["True", "False", "Unknown"].contains(&status) {
            errs.push(FieldError::not_supported(
                format!("{path}.status"),
                status,
                &["False", "True", "Unknown"],
            ));
        }
        if (ty == "Approved" && seen.contains(&"Denied"))
            || (ty == "Denied" && seen.contains(&"Approved"))
        {
            errs.push(FieldError::invalid(
                format!("{path}.type"),
                ty,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        seen.push(ty);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_replaces_what_the_body_says() {
        let mut csr = json!({"spec": {"username": "mallory", "groups": ["system:masters"]}});
        let mut user = UserInfo::new("user1", &["g1", "system:authenticated"]);
        user.uid = "abc123".into();
        user.extra
            .insert("key1".into(), vec!["hello there".into(), "one,two".into()]);
        CsrStrategy.record_requester(&mut csr, &user);
        assert_eq!(
            csr["spec"],
            json!({"username": "user1", "uid": "abc123", "groups": ["g1", "system:authenticated"],
                   "extra": {"key1": ["hello there", "one,two"]}})
        );
    }

    #[test]
    fn bad_requests_and_conditions_are_refused() {
        let csr = json!({"spec": {"request": "bm90IGEgY3Ny", "signerName": "example", "usages": ["client auth", "frobnicate", "client auth"]},
                         "status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}});
        let msgs: Vec<String> = CsrStrategy
            .validate(&csr)
            .iter()
            .map(FieldError::message)
            .collect();
        let all = msgs.join("\n");
        for want in [
            "spec.request: Invalid value",
            "PEM block type must be CERTIFICATE REQUEST",
            "spec.signerName: Invalid value: \"example\"",
            "spec.usages[1]: Unsupported value: \"frobnicate\"",
            "spec.usages[2]: Duplicate value: \"client auth\"",
            "Approved and Denied conditions are mutually exclusive",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn issued_certificates_and_decisions_are_final() {
        let approved = json!({"type": "Approved", "status": "True", "reason": "R"});
        let old = json!({"status": {"conditions": [approved]}});
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let msgs = |new: &Value, old: &Value| {
            CsrStrategy
                .validate_status_update(new, old)
                .iter()
                .map(FieldError::message)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let garbage = json!({"status": {"conditions": [approved], "certificate": b64("nope")}});
        assert!(msgs(&garbage, &old).contains(
            "status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let issued = json!({"status": {"conditions": [approved], "certificate": b64(&pem)}});
        assert_eq!(msgs(&issued, &old), "");
        let reissued = json!({"status": {"conditions": [approved], "certificate": b64(&format!("{pem}{pem}"))}});
        assert!(
            msgs(&reissued, &issued)
                .contains("updates may not modify existing certificate content")
        );
        let changed = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Other"}]}});
        assert!(
            msgs(&changed, &old)
                .contains("updates may not modify a condition of type \"Approved\"")
        );
        assert!(
            msgs(&json!({"status": {}}), &old)
                .contains("updates may not remove a condition of type \"Approved\"")
        );
    }
}
