//! Table columns and cells for `kubectl get`, per resource.

use serde_json::{Value, json};

use crate::registry::Served;

/// Column definitions of a resource's Table.
pub fn columns(_served: &Served) -> Vec<Value> {
    vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}),
    ]
}

/// The cells of one object's row.
pub fn row(_served: &Served, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = rkube_api::meta::name(obj).unwrap_or_default();
    vec![json!(name), json!(age(obj, now))]
}

fn age(obj: &Value, now: jiff::Timestamp) -> String {
    let Some(t) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(crate::time::parse)
    else {
        return "<unknown>".into();
    };
    let secs = (now.as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
