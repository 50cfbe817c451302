//! Table columns and cells for `kubectl get`: built-in printers from `rkube_api::table`,
//! and a CRD version's `additionalPrinterColumns` for custom resources.

use serde_json::Value;

use crate::registry::Served;

fn printer_columns(served: &Served) -> Option<&Vec<Value>> {
    served
        .crd_version
        .as_ref()?
        .get("additionalPrinterColumns")?
        .as_array()
}

/// Column definitions of a resource's Table.
pub fn columns(served: &Served) -> Vec<Value> {
    let cols = match (served.is_custom(), printer_columns(served)) {
        (true, Some(spec)) => rkube_api::table::columns_for_custom(spec),
        (true, None) => rkube_api::table::columns_for_custom(&[]),
        _ => rkube_api::table::columns(&served.info.group, &served.info.plural),
    };
    cols.into_iter()
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect()
}

/// The cells of one object's row.
pub fn row(served: &Served, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    match (served.is_custom(), printer_columns(served)) {
        (true, Some(spec)) => rkube_api::table::row_for_custom(spec, obj, now),
        (true, None) => rkube_api::table::row_for_custom(&[], obj, now),
        _ => rkube_api::table::row(&served.info.group, &served.info.plural, obj, now),
    }
}
