//! The pod-template-hash: a stable hash of a Deployment's pod template that names
//! its ReplicaSets and labels their pods. Like upstream, FNV-1a (32 bit) over the
//! template plus the collision count, written with the alphabet that cannot spell
//! words; the template is hashed as canonical JSON (keys sorted, empty values
//! dropped), so the value does not depend on field order or on which client wrote
//! the object, and stays the same across restarts and versions of rkube.

use serde_json::Value;

/// The label (and selector key) that separates a Deployment's ReplicaSets.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Drops nulls, empty objects and empty arrays (the same template either way), and
/// sorts object keys.
pub fn canonical(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                if let Some(c) = canonical(&m[k]) {
                    out.insert(k.clone(), c);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a
                .iter()
                .map(|x| canonical(x).unwrap_or(Value::Null))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

fn fnv1a32(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// Upstream's `SafeEncodeString` of the decimal hash.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash of a pod template (as JSON) with the Deployment's collision count.
pub fn compute_hash(template: &Value, collision_count: Option<i32>) -> String {
    let canon = canonical(template).unwrap_or(Value::Null);
    let text = serde_json::to_string(&canon).expect("JSON encodes");
    let mut h = fnv1a32(text.as_bytes(), 2_166_136_261);
    if let Some(c) = collision_count {
        h = fnv1a32(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// Whether two templates are the same but for the pod-template-hash label.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(l) = v
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            l.remove(POD_TEMPLATE_HASH);
        }
        canonical(&v)
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order_and_empty_fields() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let b = json!({"spec": {"containers": [{"image": "nginx", "name": "c", "env": []}]},
            "metadata": {"creationTimestamp": null, "labels": {"tier": "fe", "app": "web"}}});
        assert_eq!(compute_hash(&a, None), compute_hash(&b, None));
        let c = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}});
        assert_ne!(compute_hash(&a, None), compute_hash(&c, None));
        assert_ne!(compute_hash(&a, None), compute_hash(&a, Some(1)));
    }

    #[test]
    fn the_hash_is_stable_and_uses_the_safe_alphabet() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let h = compute_hash(&t, None);
        // A fixed value: it names ReplicaSets, so it must never change between releases.
        assert_eq!(h, "5776f98846");
        assert!(
            h.len() <= 10 && h.chars().all(|c| "456789bcdf".contains(c)),
            "{h}"
        );
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn templates_equal_but_for_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"x": 1}});
        let b = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"x": 1}});
        assert!(equal_ignore_hash(&a, &b));
        let c = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}, "spec": {"x": 1}});
        assert!(!equal_ignore_hash(&a, &c));
    }
}
