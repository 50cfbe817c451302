//! Formatting shared by the printers: human durations, label maps and selectors,
//! access modes, and reading fields of JSON objects.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::meta;

/// A duration as kubectl users read it in AGE columns: `5s`, `2m3s`, `10m`, `3h`,
/// `5h30m`, `2d5h`, `8d`, `2y45d`, `9y`.
///
/// Up to two seconds in the future counts as now (clocks drift); further in the future
/// is `<invalid>`. Precision falls as the duration grows, exactly as upstream's
/// `duration.HumanDuration`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The time since `t`, or `<unknown>` for a missing (zero) time.
pub(crate) fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// The age of an object.
pub(crate) fn age(obj: &Value, now: Timestamp) -> String {
    since(timestamp(obj, &["metadata", "creationTimestamp"]), now)
}

/// A timestamp field (RFC 3339), if present and valid.
pub(crate) fn timestamp(obj: &Value, path: &[&str]) -> Option<Timestamp> {
    meta::path_str(obj, path)?.parse().ok()
}

pub(crate) fn name(obj: &Value) -> &str {
    meta::name(obj).unwrap_or("")
}

/// A string field, `""` when absent.
pub(crate) fn text<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    meta::path_str(obj, path).unwrap_or("")
}

/// A string field, `None` when absent or empty.
pub(crate) fn non_empty<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    meta::path_str(obj, path).filter(|s| !s.is_empty())
}

/// An integer field, 0 when absent.
pub(crate) fn int(obj: &Value, path: &[&str]) -> i64 {
    meta::path_i64(obj, path).unwrap_or(0)
}

pub(crate) fn boolean(obj: &Value, path: &[&str]) -> Option<bool> {
    meta::path(obj, path)?.as_bool()
}

/// An array field, empty when absent.
pub(crate) fn list<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    meta::path(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// An object field, if present.
pub(crate) fn object<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    meta::path(obj, path)?.as_object()
}

/// Number of entries of a map field.
pub(crate) fn map_len(obj: &Value, path: &[&str]) -> usize {
    object(obj, path).map_or(0, Map::len)
}

/// `True`, `False` or `<unset>`, as upstream prints optional booleans.
pub(crate) fn bool_ptr(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// A label map as `k=v,k2=v2` (sorted by key), or `<none>`.
pub(crate) fn labels(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map.filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&str, &str)> = map
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `metav1.LabelSelector` in selector syntax (`app=web,tier in (a,b),!legacy`),
/// requirements sorted by key; `""` for an empty or missing selector.
pub(crate) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        let values = values.join(",");
        let text = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// A label selector as `kubectl get -o wide` shows it: `<none>` when empty, `<error>`
/// when invalid.
pub(crate) fn label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// Container names and images of a pod spec, each comma-joined.
pub(crate) fn containers(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map_or(&[][..], |s| list(s, &["containers"]));
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Access modes in kubectl's short form, in a fixed order: `RWO,ROX,RWX,RWOP`.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Load-balancer ingress points (IP, else hostname), de-duplicated and sorted.
pub(crate) fn load_balancer_ingress(status: Option<&Value>) -> String {
    let points: BTreeSet<&str> = status
        .map_or(&[][..], |s| list(s, &["ingress"]))
        .iter()
        .filter_map(|i| non_empty(i, &["ip"]).or_else(|| non_empty(i, &["hostname"])))
        .collect();
    points.into_iter().collect::<Vec<_>>().join(",")
}

/// At most `max` items joined by commas, then ` + N more...`; `<unset>` when empty.
pub(crate) fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    let shown = items.into_iter().take(max).collect::<Vec<_>>().join(",");
    if count > max {
        format!("{shown} + {} more...", count - max)
    } else if shown.is_empty() {
        "<unset>".to_string()
    } else {
        shown
    }
}

/// An int-or-string value as Go's `IntOrString.String()` prints it.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A condition of the given type, if present.
pub(crate) fn condition<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| text(c, &["type"]) == kind)
}

/// Whether the first condition of the given type has status `True`.
pub(crate) fn condition_true(conditions: &[Value], kind: &str) -> bool {
    condition(conditions, kind).is_some_and(|c| text(c, &["status"]) == "True")
}

/// Builds a row from values of mixed types.
macro_rules! cells {
    ($($cell:expr),* $(,)?) => {
        vec![$(serde_json::Value::from($cell)),*]
    };
}
pub(crate) use cells;
