//! Custom resources: a CRD version's `additionalPrinterColumns`, each evaluated by a
//! simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`, `.metadata.labels['app']`).

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::descriptions as d;
use super::format::{self, human_duration};
use super::{ColumnDefinition, NAME};

/// The columns shown when a CRD version declares none.
fn default_spec() -> Vec<Value> {
    vec![serde_json::json!({
        "name": "Age",
        "type": "date",
        "description": d::CREATION_TIMESTAMP,
        "jsonPath": ".metadata.creationTimestamp",
    })]
}

fn spec_or_default(columns_spec: &[Value]) -> std::borrow::Cow<'_, [Value]> {
    if columns_spec.is_empty() {
        std::borrow::Cow::Owned(default_spec())
    } else {
        std::borrow::Cow::Borrowed(columns_spec)
    }
}

/// The Table columns of a custom resource, from its CRD version's
/// `additionalPrinterColumns` (an empty slice gives `Name` and `Age`).
pub fn columns_for_custom(columns_spec: &[Value]) -> Vec<ColumnDefinition> {
    let mut out = vec![NAME.definition()];
    for c in spec_or_default(columns_spec).iter() {
        let path = format::text(c, &["jsonPath"]);
        let description = format::non_empty(c, &["description"])
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!("Custom resource definition column (in JSONPath format): {path}")
            });
        out.push(ColumnDefinition {
            name: format::text(c, &["name"]).to_string(),
            type_: format::text(c, &["type"]).to_string(),
            format: format::text(c, &["format"]).to_string(),
            description,
            priority: format::int(c, &["priority"]) as i32,
        });
    }
    out
}

/// The cells of a custom resource: its name, then each column's value (`null` where the
/// path finds nothing or the value does not fit the column's type).
pub fn row_for_custom(columns_spec: &[Value], obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = vec![Value::from(format::name(obj))];
    for c in spec_or_default(columns_spec).iter() {
        let found = jsonpath_first(obj, format::text(c, &["jsonPath"]));
        cells.push(match found {
            Some(v) => cell(format::text(c, &["type"]), v, now),
            None => Value::Null,
        });
    }
    cells
}

/// A found value as a cell of the given column type.
fn cell(kind: &str, v: &Value, now: Timestamp) -> Value {
    match (kind, v) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(_)) => v.clone(),
        ("string", Value::Object(_) | Value::Array(_)) => Value::from(sorted_json(v).to_string()),
        ("string", other) => Value::from(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::from(*b),
        ("date", Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => Value::from(human_duration(now.duration_since(t))),
            Err(_) => Value::from("<invalid>"),
        },
        _ => Value::Null,
    }
}

/// Maps with sorted keys, as Go's JSON encoder writes them.
fn sorted_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted_json(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_json).collect()),
        other => other.clone(),
    }
}

/// One step of a simple JSONPath.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
}

/// Parses `.a.b[0]['c.d'][*]`; a leading `$`, `{` and `}` are accepted.
fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let chars: Vec<char> = path.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let mut field = String::new();
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    // `\.` keeps a dot inside a key.
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    field.push(chars[i]);
                    i += 1;
                }
                if !field.is_empty() {
                    steps.push(Step::Field(field));
                }
            }
            '[' => {
                let close = chars[i..].iter().position(|c| *c == ']')? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                let quoted = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                steps.push(match quoted {
                    Some(key) => Step::Field(key.to_string()),
                    None if inner == "*" => Step::All,
                    None => Step::Index(inner.parse().ok()?),
                });
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// The first value a simple JSONPath finds, as upstream takes `results[0][0]`.
pub(crate) fn jsonpath_first<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = parse(path)?;
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match (step, v) {
                (Step::Field(f), Value::Object(m)) => next.extend(m.get(f)),
                (Step::Index(i), Value::Array(a)) => {
                    let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                    if idx >= 0 {
                        next.extend(a.get(idx as usize));
                    }
                }
                (Step::All, Value::Array(a)) => next.extend(a.iter()),
                (Step::All, Value::Object(m)) => next.extend(m.values()),
                _ => {}
            }
        }
        current = next;
    }
    current.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_simple_paths() {
        assert_eq!(
            parse(".status.conditions[0].type").unwrap(),
            vec![
                Step::Field("status".into()),
                Step::Field("conditions".into()),
                Step::Index(0),
                Step::Field("type".into())
            ]
        );
        assert_eq!(
            parse(".metadata.labels['app.kubernetes.io/name']").unwrap(),
            vec![
                Step::Field("metadata".into()),
                Step::Field("labels".into()),
                Step::Field("app.kubernetes.io/name".into())
            ]
        );
        assert!(parse("status").is_none());
    }

    #[test]
    fn finds_values() {
        let o =
            json!({"spec": {"items": [{"n": 1}, {"n": 2}]}, "metadata": {"labels": {"a.b": "x"}}});
        assert_eq!(jsonpath_first(&o, ".spec.items[1].n"), Some(&json!(2)));
        assert_eq!(jsonpath_first(&o, ".spec.items[-1].n"), Some(&json!(2)));
        assert_eq!(jsonpath_first(&o, ".spec.items[*].n"), Some(&json!(1)));
        assert_eq!(
            jsonpath_first(&o, ".metadata.labels.a\\.b"),
            Some(&json!("x"))
        );
        assert_eq!(jsonpath_first(&o, ".spec.missing"), None);
    }
}
