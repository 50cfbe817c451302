//! The bridge from client-side to server-side apply: kubectl's
//! `kubectl.kubernetes.io/last-applied-configuration` annotation.
//!
//! When kubectl applies server-side (manager `kubectl`) to an object that was
//! applied client-side, conflicts on fields whose live value is still the one
//! last applied client-side are allowed (the client-side manager meant them), and
//! the annotation is kept up to date with what was applied.

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::typed::{Ty, Types};

pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Upstream's limit on the total size of an object's annotations.
const ANNOTATIONS_SIZE_LIMIT: usize = 256 * 1024;

fn annotation(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields of the last client-side applied configuration whose values the
/// live object still has (None: no usable annotation).
pub(crate) fn allowed_conflicts(
    types: Types<'_>,
    root: Ty<'_>,
    api_version: &str,
    live: &Value,
) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let set = types.field_set(root, &last, None);
    let c = types.compare(root, &last, live);
    Some(
        set.difference(&c.modified)
            .difference(&c.added)
            .difference(&c.removed),
    )
}

/// After a `kubectl` server-side apply: if the object carries the annotation,
/// it becomes the applied configuration (without the annotation itself).
pub(crate) fn sync(obj: &mut Value, applied: &Value) {
    if annotation(obj).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(a) = config
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    let value = format!("{}\n", go_json(&config));
    let Some(annotations) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(value));
    let size: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > ANNOTATIONS_SIZE_LIMIT {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
}

/// JSON as Go's encoder writes a map: keys sorted, `<`, `>`, `&` escaped.
fn go_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let out: Map<String, Value> = keys
                    .into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect();
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // These characters only occur inside strings, so replacing them is safe.
    sorted(v)
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn go_json_sorts_and_escapes() {
        let v = json!({"b": 1, "a": {"z": "<x&y>", "c": [ {"y": 1, "x": 2} ]}});
        assert_eq!(
            go_json(&v),
            r#"{"a":{"c":[{"x":2,"y":1}],"z":"\u003cx\u0026y\u003e"},"b":1}"#
        );
    }
}
