//! Objects as their Go types serialise them, for comparisons: upstream compares
//! typed objects, whose non-pointer structs always exist (`{}`) and whose
//! non-`omitempty` slices are `null` when empty. Filling these in before
//! comparing keeps them from counting as "added" by whoever wrote first.

use serde_json::{Value, json};

use crate::schema::{Catalog, Schema, Type};

/// `(definition, field, zero value)`: non-pointer struct fields (and a slice
/// without `omitempty`) of the built-in types an object is usually made of.
const ZERO_FIELDS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.apps.v1.DaemonSetSpec", "template", "{}"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy", "{}"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "{}"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "template", "{}"),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "template", "{}"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "template", "{}"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "updateStrategy", "{}"),
    ("io.k8s.api.batch.v1.CronJobSpec", "jobTemplate", "{}"),
    ("io.k8s.api.batch.v1.JobSpec", "template", "{}"),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "metadata", "{}"),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "spec", "{}"),
    ("io.k8s.api.core.v1.Container", "resources", "{}"),
    ("io.k8s.api.core.v1.PodSpec", "containers", "null"),
    ("io.k8s.api.core.v1.PodTemplateSpec", "metadata", "{}"),
    ("io.k8s.api.core.v1.PodTemplateSpec", "spec", "{}"),
];

/// Top-level structs every built-in kind has.
const TOP_LEVEL: &[&str] = &["metadata", "spec", "status"];

/// Fills in the zero values of a built-in object (see the module doc).
pub(crate) fn fill(catalog: &Catalog, root: &Schema, v: &mut Value) {
    if let (Some(o), Some(m)) = (catalog.object(root), v.as_object_mut()) {
        for f in o
            .fields
            .iter()
            .filter(|f| TOP_LEVEL.contains(&f.name.as_ref()))
        {
            if matches!(catalog.resolve(&f.schema).ty, Type::Object(_)) {
                m.entry(f.name.to_string()).or_insert_with(|| json!({}));
            }
        }
    }
    walk(catalog, root, v);
}

fn walk(catalog: &Catalog, schema: &Schema, v: &mut Value) {
    let mut s = schema;
    let mut names = Vec::new();
    while let Type::Ref(id) = s.ty {
        let d = catalog.definition(id);
        names.push(d.name.as_ref());
        s = &d.schema;
    }
    match (&s.ty, v) {
        (Type::Object(o), Value::Object(m)) => {
            for (_, field, zero) in ZERO_FIELDS.iter().filter(|z| names.contains(&z.0)) {
                if !m.contains_key(*field) {
                    m.insert(
                        field.to_string(),
                        serde_json::from_str(zero).unwrap_or(Value::Null),
                    );
                }
            }
            for (k, cv) in m.iter_mut() {
                if let Some(f) = o.field(k) {
                    walk(catalog, &f.schema, cv);
                }
            }
        }
        (Type::Array(a), Value::Array(items)) => {
            for item in items {
                walk(catalog, &a.items, item);
            }
        }
        (Type::Map(mo), Value::Object(m)) => {
            for cv in m.values_mut() {
                walk(catalog, &mo.values, cv);
            }
        }
        _ => {}
    }
}
