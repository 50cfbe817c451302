//! The REST operations of one resource as OpenAPI path items.

use serde_json::{Map, Value, json};

use super::render::Dialect;
use crate::resource::{GroupVersionKind, ResourceInfo};

pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Patch types a resource accepts; strategic merge only for built-in kinds (kubectl
/// sends strategic merge patches to whatever lists it).
pub(crate) fn patch_types(builtin: bool) -> Vec<&'static str> {
    let mut types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if builtin {
        types.push("application/strategic-merge-patch+json");
    }
    types
}

const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const WATCH_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

/// `(name, type, description)` of the query parameters each action takes.
const LIST_PARAMS: &[(&str, &str, &str)] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "Asks for BOOKMARK watch events, which carry only a resourceVersion.",
    ),
    (
        "continue",
        "string",
        "The continue token of the previous page of a paged list.",
    ),
    (
        "fieldSelector",
        "string",
        "Restricts the list to objects whose fields match, e.g. metadata.name=web.",
    ),
    (
        "labelSelector",
        "string",
        "Restricts the list to objects whose labels match, e.g. app=web,tier!=db.",
    ),
    (
        "limit",
        "integer",
        "The largest number of objects to return; the rest comes with the continue token.",
    ),
    (
        "resourceVersion",
        "string",
        "Which state to serve: unset is the latest, 0 any cached state, else not older than this version.",
    ),
    (
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to a list: NotOlderThan or Exact.",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "With watch: start with ADDED events for the current objects, then a bookmark.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Ends the list or watch call after this many seconds.",
    ),
    (
        "watch",
        "boolean",
        "Streams changes (ADDED, MODIFIED, DELETED) instead of returning a list.",
    ),
];
const WRITE_PARAMS: &[(&str, &str, &str)] = &[
    (
        "dryRun",
        "string",
        "With All, the request is processed but nothing is stored.",
    ),
    (
        "fieldManager",
        "string",
        "The name of the actor making the change, recorded in managedFields.",
    ),
    (
        "fieldValidation",
        "string",
        "What to do with unknown or duplicate fields: Ignore, Warn (the default) or Strict (reject the request).",
    ),
];
const FORCE_PARAM: (&str, &str, &str) = (
    "force",
    "boolean",
    "For apply patches: take over fields that other managers own instead of failing with a conflict.",
);
const DELETE_PARAMS: &[(&str, &str, &str)] = &[
    (
        "dryRun",
        "string",
        "With All, the request is processed but nothing is stored.",
    ),
    (
        "gracePeriodSeconds",
        "integer",
        "Seconds before the object is deleted; 0 deletes at once.",
    ),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Deletes an object that cannot be read from storage (unsafe).",
    ),
    (
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy. Whether dependents are orphaned.",
    ),
    (
        "propagationPolicy",
        "string",
        "Whether and how dependents are deleted: Orphan, Background or Foreground.",
    ),
];

fn parameter(
    dialect: Dialect,
    (name, ty, description): (&str, &str, &str),
    location: &str,
) -> Value {
    match dialect {
        Dialect::V3 => json!({
            "name": name, "in": location, "description": description,
            "schema": {"type": ty, "uniqueItems": true},
        }),
        Dialect::V2 => json!({
            "name": name, "in": location, "description": description,
            "type": ty, "uniqueItems": true,
        }),
    }
}

fn path_parameter(dialect: Dialect, name: &str, description: &str) -> Value {
    let mut p = parameter(dialect, (name, "string", description), "path");
    p["required"] = true.into();
    p
}

/// The operation-id words of a group-version: `CoreV1`, `AppsV1`, `NetworkingV1`,
/// `RbacAuthorizationV1`, `ExampleComV1`.
pub(crate) fn gv_words(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let mut out: String = group.split(['.', '-']).map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The `tags` of a group-version: `core_v1`, `apps_v1`, `networking_v1`.
pub(crate) fn tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    format!("{}_{}", group.replace(['.', '-'], "_"), version)
}

/// Everything needed to write the operations of one resource.
pub(crate) struct ResourceOps<'a> {
    pub info: &'a ResourceInfo,
    /// Component name of the kind and its list.
    pub kind_def: String,
    pub list_def: String,
    pub builtin: bool,
    pub dialect: Dialect,
}

struct Op<'a> {
    verb: &'static str,
    action: &'static str,
    id: String,
    description: String,
    params: Vec<(&'a str, &'a str, &'a str)>,
    body: Option<(Vec<&'static str>, String)>,
    response: String,
    response_types: &'static [&'static str],
    gvk: GroupVersionKind,
}

impl ResourceOps<'_> {
    /// Adds this resource's path items to `paths`.
    pub fn add_to(&self, paths: &mut Map<String, Value>) {
        let r = self.info;
        let prefix = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let words = gv_words(&r.group, &r.version);
        let kind = &r.kind;
        let gvk = r.gvk();
        let ns = r.namespaced();
        let scope = if ns { "Namespaced" } else { "" };
        let collection = if ns {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let has = |v: &str| r.has_verb(v);
        let mut write = WRITE_PARAMS.to_vec();

        let mut ops = Vec::new();
        if has("list") {
            ops.push(self.op(
                "get",
                "list",
                format!("list{words}{scope}{kind}"),
                format!("list or watch objects of kind {kind}"),
                LIST_PARAMS.to_vec(),
                None,
                &self.list_def,
                WATCH_TYPES,
                &gvk,
            ));
        }
        if has("create") {
            ops.push(self.op(
                "post",
                "post",
                format!("create{words}{scope}{kind}"),
                format!("create a {kind}"),
                write.clone(),
                Some((vec!["application/json"], self.kind_def.clone())),
                &self.kind_def,
                RESPONSE_TYPES,
                &gvk,
            ));
        }
        if has("deletecollection") {
            let mut params = DELETE_PARAMS.to_vec();
            params.extend(
                LIST_PARAMS
                    .iter()
                    .filter(|p| p.0 != "watch" && p.0 != "allowWatchBookmarks"),
            );
            ops.push(self.op(
                "delete",
                "deletecollection",
                format!("deletecollection{words}{scope}{kind}"),
                format!("delete collection of {kind}"),
                params,
                Some((vec!["application/json"], DELETE_OPTIONS.into())),
                STATUS,
                RESPONSE_TYPES,
                &gvk,
            ));
        }
        self.insert(paths, &collection, ns, false, ops);

        let mut ops = Vec::new();
        if has("get") {
            ops.push(self.op(
                "get",
                "get",
                format!("read{words}{scope}{kind}"),
                format!("read the specified {kind}"),
                vec![],
                None,
                &self.kind_def,
                RESPONSE_TYPES,
                &gvk,
            ));
        }
        if has("update") {
            ops.push(self.op(
                "put",
                "put",
                format!("replace{words}{scope}{kind}"),
                format!("replace the specified {kind}"),
                write.clone(),
                Some((vec!["application/json"], self.kind_def.clone())),
                &self.kind_def,
                RESPONSE_TYPES,
                &gvk,
            ));
        }
        if has("delete") {
            ops.push(self.op(
                "delete",
                "delete",
                format!("delete{words}{scope}{kind}"),
                format!("delete a {kind}"),
                DELETE_PARAMS.to_vec(),
                Some((vec!["application/json"], DELETE_OPTIONS.into())),
                STATUS,
                RESPONSE_TYPES,
                &gvk,
            ));
        }
        write.push(FORCE_PARAM);
        if has("patch") {
            ops.push(self.op(
                "patch",
                "patch",
                format!("patch{words}{scope}{kind}"),
                format!("partially update the specified {kind}"),
                write.clone(),
                Some((patch_types(self.builtin), PATCH.into())),
                &self.kind_def,
                RESPONSE_TYPES,
                &gvk,
            ));
        }
        if r.stored {
            self.insert(paths, &item, ns, true, ops);
        }

        for sub in &r.subresources {
            let (def, sub_gvk, suffix) = match sub.name.as_str() {
                "status" => (self.kind_def.clone(), gvk.clone(), "Status"),
                "scale" => (
                    SCALE.to_string(),
                    GroupVersionKind::new("autoscaling", "v1", "Scale"),
                    "Scale",
                ),
                _ => continue,
            };
            let has = |v: &str| sub.verbs.iter().any(|s| s == v);
            let mut ops = Vec::new();
            if has("get") {
                ops.push(self.op(
                    "get",
                    "get",
                    format!("read{words}{scope}{kind}{suffix}"),
                    format!("read {} of the specified {kind}", sub.name),
                    vec![],
                    None,
                    &def,
                    RESPONSE_TYPES,
                    &sub_gvk,
                ));
            }
            if has("update") {
                ops.push(self.op(
                    "put",
                    "put",
                    format!("replace{words}{scope}{kind}{suffix}"),
                    format!("replace {} of the specified {kind}", sub.name),
                    WRITE_PARAMS.to_vec(),
                    Some((vec!["application/json"], def.clone())),
                    &def,
                    RESPONSE_TYPES,
                    &sub_gvk,
                ));
            }
            if has("patch") {
                ops.push(self.op(
                    "patch",
                    "patch",
                    format!("patch{words}{scope}{kind}{suffix}"),
                    format!("partially update {} of the specified {kind}", sub.name),
                    write.clone(),
                    Some((patch_types(self.builtin), PATCH.into())),
                    &def,
                    RESPONSE_TYPES,
                    &sub_gvk,
                ));
            }
            self.insert(paths, &format!("{item}/{}", sub.name), ns, true, ops);
        }

        if has("watch") {
            let watch = |action, id: String, params: Vec<_>| {
                self.op(
                    "get",
                    action,
                    id,
                    format!("watch changes to {kind} objects"),
                    params,
                    None,
                    WATCH_EVENT,
                    WATCH_TYPES,
                    &gvk,
                )
            };
            let list_watch: Vec<_> = LIST_PARAMS.to_vec();
            let (wcollection, witem) = if ns {
                (
                    format!("{prefix}/watch/namespaces/{{namespace}}/{}", r.plural),
                    format!(
                        "{prefix}/watch/namespaces/{{namespace}}/{}/{{name}}",
                        r.plural
                    ),
                )
            } else {
                (
                    format!("{prefix}/watch/{}", r.plural),
                    format!("{prefix}/watch/{}/{{name}}", r.plural),
                )
            };
            let op = watch(
                "watchlist",
                format!("watch{words}{scope}{kind}List"),
                list_watch.clone(),
            );
            self.insert(paths, &wcollection, ns, false, vec![op]);
            let op = watch(
                "watch",
                format!("watch{words}{scope}{kind}"),
                list_watch.clone(),
            );
            self.insert(paths, &witem, ns, true, vec![op]);
            if ns {
                let all = format!("{prefix}/watch/{}", r.plural);
                let op = watch(
                    "watchlist",
                    format!("watch{words}{kind}ListForAllNamespaces"),
                    list_watch,
                );
                self.insert(paths, &all, false, false, vec![op]);
            }
        }
        if ns && has("list") {
            let all = format!("{prefix}/{}", r.plural);
            let op = self.op(
                "get",
                "list",
                format!("list{words}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                LIST_PARAMS.to_vec(),
                None,
                &self.list_def,
                WATCH_TYPES,
                &gvk,
            );
            self.insert(paths, &all, false, false, vec![op]);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn op<'p>(
        &self,
        verb: &'static str,
        action: &'static str,
        id: String,
        description: String,
        params: Vec<(&'p str, &'p str, &'p str)>,
        body: Option<(Vec<&'static str>, String)>,
        response: &str,
        response_types: &'static [&'static str],
        gvk: &GroupVersionKind,
    ) -> Op<'p> {
        Op {
            verb,
            action,
            id,
            description,
            params,
            body,
            response: response.to_string(),
            response_types,
            gvk: gvk.clone(),
        }
    }

    fn insert(
        &self,
        paths: &mut Map<String, Value>,
        path: &str,
        namespaced: bool,
        named: bool,
        ops: Vec<Op<'_>>,
    ) {
        if ops.is_empty() {
            return;
        }
        let d = self.dialect;
        let mut item = Map::new();
        let mut params = Vec::new();
        if named {
            params.push(path_parameter(
                d,
                "name",
                &format!("name of the {}", self.info.kind),
            ));
        }
        if namespaced {
            params.push(path_parameter(
                d,
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        params.push(parameter(
            d,
            (
                "pretty",
                "string",
                "If 'true', then the output is pretty printed.",
            ),
            "query",
        ));
        item.insert("parameters".into(), Value::Array(params));
        for op in ops {
            item.insert(op.verb.into(), self.render_op(op));
        }
        paths.insert(path.to_string(), Value::Object(item));
    }

    fn render_op(&self, op: Op<'_>) -> Value {
        let d = self.dialect;
        let mut o = Map::new();
        o.insert(
            "tags".into(),
            json!([tag(&self.info.group, &self.info.version)]),
        );
        o.insert("description".into(), op.description.into());
        o.insert("operationId".into(), op.id.into());
        let mut params: Vec<Value> = op
            .params
            .iter()
            .map(|p| parameter(d, *p, "query"))
            .collect();
        match (d, &op.body) {
            (Dialect::V3, Some((types, schema))) => {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": d.ref_object(schema)})))
                    .collect();
                o.insert(
                    "requestBody".into(),
                    json!({"content": content, "required": op.verb != "delete"}),
                );
            }
            (Dialect::V2, Some((types, schema))) => {
                params.push(json!({"name": "body", "in": "body", "required": op.verb != "delete", "schema": d.ref_object(schema)}));
                o.insert("consumes".into(), json!(types));
            }
            _ => {}
        }
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        let response = |description: &str| match d {
            Dialect::V3 => {
                let content: Map<String, Value> = op
                    .response_types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": d.ref_object(&op.response)})))
                    .collect();
                json!({"description": description, "content": content})
            }
            Dialect::V2 => {
                json!({"description": description, "schema": d.ref_object(&op.response)})
            }
        };
        let mut responses = Map::new();
        responses.insert("200".into(), response("OK"));
        if op.verb == "post" || op.verb == "put" || op.action == "patch" {
            responses.insert("201".into(), response("Created"));
        }
        if op.verb == "post" || op.verb == "delete" {
            responses.insert("202".into(), response("Accepted"));
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        o.insert("responses".into(), Value::Object(responses));
        if d == Dialect::V2 {
            o.insert("produces".into(), json!(op.response_types));
            o.insert("schemes".into(), json!(["https"]));
        }
        o.insert("x-kubernetes-action".into(), op.action.into());
        o.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({"group": op.gvk.group, "kind": op.gvk.kind, "version": op.gvk.version}),
        );
        Value::Object(o)
    }
}
