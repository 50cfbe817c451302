//! Events, both `v1` and `events.k8s.io/v1` (whose fields carry other names):
//! LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, non_empty, text};
use super::{Column, NAME, Printer};

pub(crate) static EVENTS: Printer = Printer {
    columns: &[
        Column::text("Last Seen", d::EV_LAST),
        Column::text("Type", d::EV_TYPE),
        Column::text("Reason", d::EV_REASON),
        Column::text("Object", d::EV_OBJECT),
        Column::text("Subobject", d::EV_FIELD_PATH).wide(),
        Column::text("Source", d::EV_SOURCE).wide(),
        Column::text("Message", d::EV_MESSAGE),
        Column::text("First Seen", d::EV_FIRST).wide(),
        Column::text("Count", d::EV_COUNT).wide(),
        NAME.wide(),
    ],
    row: event_row,
};

/// Field names of the two Event shapes.
struct Fields {
    first: &'static str,
    last: &'static str,
    count: &'static str,
    object: &'static str,
    message: &'static str,
    source: &'static str,
}

const CORE: Fields = Fields {
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    object: "involvedObject",
    message: "message",
    source: "source",
};

const EVENTS_V1: Fields = Fields {
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    object: "regarding",
    message: "note",
    source: "deprecatedSource",
};

fn event_row(ev: &Value, now: Timestamp) -> Vec<Value> {
    let f = if text(ev, &["apiVersion"]) == "events.k8s.io/v1" || ev.get("regarding").is_some() {
        &EVENTS_V1
    } else {
        &CORE
    };
    let first = match format::timestamp(ev, &[f.first]) {
        Some(t) => format::since(Some(t), now),
        None => format::since(format::timestamp(ev, &["eventTime"]), now),
    };
    let mut last = match format::timestamp(ev, &[f.last]) {
        Some(t) => format::since(Some(t), now),
        None => first.clone(),
    };
    let mut count = format::int(ev, &[f.count]);
    if ev.get("series").is_some_and(Value::is_object) {
        last = format::since(format::timestamp(ev, &["series", "lastObservedTime"]), now);
        count = format::int(ev, &["series", "count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }

    let kind = text(ev, &[f.object, "kind"]).to_lowercase();
    let target = match non_empty(ev, &[f.object, "name"]) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let component = non_empty(ev, &[f.source, "component"]).unwrap_or_else(|| {
        // `reportingComponent` in v1, `reportingController` in events.k8s.io.
        non_empty(ev, &["reportingComponent"])
            .or_else(|| non_empty(ev, &["reportingController"]))
            .unwrap_or("")
    });
    let instance = non_empty(ev, &[f.source, "host"])
        .or_else(|| non_empty(ev, &["reportingInstance"]))
        .unwrap_or("");
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    cells![
        last,
        text(ev, &["type"]),
        text(ev, &["reason"]),
        target,
        text(ev, &[f.object, "fieldPath"]),
        source,
        text(ev, &[f.message]).trim(),
        first,
        count,
        format::name(ev),
    ]
}
