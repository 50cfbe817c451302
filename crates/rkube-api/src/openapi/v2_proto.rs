//! The Swagger 2.0 document in protobuf: gnostic's `openapi.v2.Document`, the form
//! client-go asks `/openapi/v2` for (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
//! kubectl reads it for client-side validation, whenever the v3 document of a
//! group-version does not settle the question (kinds nobody serves, `v1 List`).
//!
//! Written by hand from gnostic's OpenAPIv2.proto field numbers; no crate encodes
//! this message set. Values without a message of their own (defaults, enums, vendor
//! extensions) travel as `Any.yaml`, for which JSON text serves (JSON is YAML).

use serde_json::{Map, Value};

use crate::protobuf::wire::{FIXED64, VARINT, put_bytes, put_key, put_varint};

/// One message being written, fields in the order they are added.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn string(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            put_bytes(&mut self.0, tag, s.as_bytes());
        }
        self
    }

    fn strings(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        match v {
            Some(Value::Array(a)) => {
                for s in a.iter().filter_map(Value::as_str) {
                    put_bytes(&mut self.0, tag, s.as_bytes());
                }
            }
            Some(Value::String(s)) => put_bytes(&mut self.0, tag, s.as_bytes()),
            _ => {}
        }
        self
    }

    fn boolean(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        if v.and_then(Value::as_bool) == Some(true) {
            put_key(&mut self.0, tag, VARINT);
            put_varint(&mut self.0, 1);
        }
        self
    }

    fn int64(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n != 0) {
            put_key(&mut self.0, tag, VARINT);
            put_varint(&mut self.0, n as u64);
        }
        self
    }

    fn double(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        if let Some(f) = v.and_then(Value::as_f64).filter(|f| *f != 0.0) {
            put_key(&mut self.0, tag, FIXED64);
            self.0.extend_from_slice(&f.to_le_bytes());
        }
        self
    }

    /// A message field: present even when empty (oneofs rely on it).
    fn message(&mut self, tag: u32, m: Msg) -> &mut Self {
        put_bytes(&mut self.0, tag, &m.0);
        self
    }

    fn any(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        if let Some(v) = v {
            self.message(tag, any(v));
        }
        self
    }

    fn anys(&mut self, tag: u32, v: Option<&Value>) -> &mut Self {
        for x in v.and_then(Value::as_array).into_iter().flatten() {
            self.message(tag, any(x));
        }
        self
    }

    /// `x-...` keys of an object as repeated `NamedAny`.
    fn vendor(&mut self, tag: u32, obj: &Map<String, Value>) -> &mut Self {
        for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
            let mut named = Msg::default();
            named.string(1, Some(&Value::String(k.clone())));
            named.message(2, any(v));
            self.message(tag, named);
        }
        self
    }

    /// A JSON object as repeated `Named<T>` entries of `tag`.
    fn named(&mut self, tag: u32, v: Option<&Value>, value: impl Fn(&Value) -> Msg) -> &mut Self {
        for (k, x) in v.and_then(Value::as_object).into_iter().flatten() {
            let mut named = Msg::default();
            named.string(1, Some(&Value::String(k.clone())));
            named.message(2, value(x));
            self.message(tag, named);
        }
        self
    }
}

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// `Any`: the value as YAML text (field 2).
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    let text = format!("{}\n", serde_json::to_string(v).unwrap_or_default());
    put_bytes(&mut m.0, 2, text.as_bytes());
    m
}

/// Encodes a Swagger 2.0 document (as rendered by `ApiSurface::v2_document`).
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let o = obj(doc);
    let mut m = Msg::default();
    m.string(1, o.get("swagger"));
    if let Some(info) = o.get("info") {
        let i = obj(info);
        let mut im = Msg::default();
        im.string(1, i.get("title"))
            .string(2, i.get("version"))
            .string(3, i.get("description"))
            .string(4, i.get("termsOfService"))
            .vendor(7, &i);
        m.message(2, im);
    }
    m.string(3, o.get("host"))
        .string(4, o.get("basePath"))
        .strings(5, o.get("schemes"))
        .strings(6, o.get("consumes"))
        .strings(7, o.get("produces"));
    if let Some(paths) = o.get("paths") {
        let p = obj(paths);
        let mut pm = Msg::default();
        pm.vendor(1, &p);
        for (k, item) in p.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let mut named = Msg::default();
            named.string(1, Some(&Value::String(k.clone())));
            named.message(2, path_item(item));
            pm.message(2, named);
        }
        m.message(8, pm);
    }
    if let Some(defs) = o.get("definitions") {
        let mut dm = Msg::default();
        dm.named(1, Some(defs), schema);
        m.message(9, dm);
    }
    if let Some(params) = o.get("parameters") {
        let mut pm = Msg::default();
        pm.named(1, Some(params), parameter);
        m.message(10, pm);
    }
    if let Some(responses) = o.get("responses") {
        let mut rm = Msg::default();
        rm.named(1, Some(responses), response);
        m.message(11, rm);
    }
    for req in o
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut sm = Msg::default();
        sm.named(1, Some(req), |scopes| {
            let mut a = Msg::default();
            a.strings(1, Some(scopes));
            a
        });
        m.message(12, sm);
    }
    if let Some(defs) = o.get("securityDefinitions") {
        let mut sm = Msg::default();
        sm.named(1, Some(defs), security_definition);
        m.message(13, sm);
    }
    for tag in o
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = obj(tag);
        let mut tm = Msg::default();
        tm.string(1, t.get("name"))
            .string(2, t.get("description"))
            .vendor(4, &t);
        m.message(14, tm);
    }
    m.vendor(16, &o);
    m.0
}

fn security_definition(v: &Value) -> Msg {
    let o = obj(v);
    let mut inner = Msg::default();
    let mut item = Msg::default();
    match o.get("type").and_then(Value::as_str) {
        Some("basic") => {
            inner
                .string(1, o.get("type"))
                .string(2, o.get("description"))
                .vendor(3, &o);
            item.message(1, inner);
        }
        Some("apiKey") => {
            inner
                .string(1, o.get("type"))
                .string(2, o.get("name"))
                .string(3, o.get("in"))
                .string(4, o.get("description"))
                .vendor(5, &o);
            item.message(2, inner);
        }
        // OAuth2 flows are never served by rkube.
        _ => {}
    }
    item
}

fn path_item(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    m.string(1, o.get("$ref"));
    for (tag, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = o.get(verb) {
            m.message(tag, operation(op));
        }
    }
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameters_item(p));
    }
    m.vendor(10, &o);
    m
}

fn operation(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    m.strings(1, o.get("tags"))
        .string(2, o.get("summary"))
        .string(3, o.get("description"))
        .string(5, o.get("operationId"))
        .strings(6, o.get("produces"))
        .strings(7, o.get("consumes"));
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameters_item(p));
    }
    if let Some(r) = o.get("responses") {
        let mut rm = Msg::default();
        rm.named(1, Some(r), |resp| {
            let mut value = Msg::default();
            match resp.get("$ref") {
                Some(_) => value.message(2, json_reference(resp)),
                None => value.message(1, response(resp)),
            };
            value
        });
        rm.vendor(2, &obj(r));
        m.message(9, rm);
    }
    m.strings(10, o.get("schemes"))
        .boolean(11, o.get("deprecated"))
        .vendor(13, &o);
    m
}

fn json_reference(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(1, v.get("$ref")).string(2, v.get("description"));
    m
}

fn parameters_item(v: &Value) -> Msg {
    let mut m = Msg::default();
    match v.get("$ref") {
        Some(_) => m.message(2, json_reference(v)),
        None => m.message(1, parameter(v)),
    };
    m
}

fn parameter(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    let location = o.get("in").and_then(Value::as_str).unwrap_or("");
    if location == "body" {
        let mut b = Msg::default();
        b.string(1, o.get("description"))
            .string(2, o.get("name"))
            .string(3, o.get("in"))
            .boolean(4, o.get("required"));
        if let Some(s) = o.get("schema") {
            b.message(5, schema(s));
        }
        b.vendor(6, &o);
        m.message(1, b);
        return m;
    }
    // Query and formData parameters carry allowEmptyValue (field 5), which shifts
    // the rest by one against path and header parameters.
    let (oneof, shift) = match location {
        "header" => (1, 4),
        "formData" => (2, 5),
        "query" => (3, 5),
        _ => (4, 4),
    };
    let mut sub = Msg::default();
    sub.boolean(1, o.get("required"))
        .string(2, o.get("in"))
        .string(3, o.get("description"))
        .string(4, o.get("name"));
    if shift == 5 {
        sub.boolean(5, o.get("allowEmptyValue"));
    }
    primitive_fields(&mut sub, &o, shift);
    let mut non_body = Msg::default();
    non_body.message(oneof, sub);
    m.message(2, non_body);
    m
}

/// The fields `PrimitivesItems` numbers 1 (`type`) to 18 (vendor extensions), which
/// parameter messages repeat at `1 + shift` onwards.
fn primitive_fields(m: &mut Msg, o: &Map<String, Value>, shift: u32) {
    m.string(1 + shift, o.get("type"))
        .string(2 + shift, o.get("format"));
    if let Some(items) = o.get("items") {
        m.message(3 + shift, primitives_items(items));
    }
    m.string(4 + shift, o.get("collectionFormat"))
        .any(5 + shift, o.get("default"))
        .double(6 + shift, o.get("maximum"))
        .boolean(7 + shift, o.get("exclusiveMaximum"))
        .double(8 + shift, o.get("minimum"))
        .boolean(9 + shift, o.get("exclusiveMinimum"))
        .int64(10 + shift, o.get("maxLength"))
        .int64(11 + shift, o.get("minLength"))
        .string(12 + shift, o.get("pattern"))
        .int64(13 + shift, o.get("maxItems"))
        .int64(14 + shift, o.get("minItems"))
        .boolean(15 + shift, o.get("uniqueItems"))
        .anys(16 + shift, o.get("enum"))
        .double(17 + shift, o.get("multipleOf"))
        .vendor(18 + shift, o);
}

fn primitives_items(v: &Value) -> Msg {
    let mut m = Msg::default();
    primitive_fields(&mut m, &obj(v), 0);
    m
}

fn response(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    m.string(1, o.get("description"));
    if let Some(s) = o.get("schema") {
        let mut item = Msg::default();
        item.message(1, schema(s));
        m.message(2, item);
    }
    m.vendor(5, &o);
    m
}

/// A JSON schema (`Schema`).
fn schema(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    m.string(1, o.get("$ref"))
        .string(2, o.get("format"))
        .string(3, o.get("title"))
        .string(4, o.get("description"))
        .any(5, o.get("default"))
        .double(6, o.get("multipleOf"))
        .double(7, o.get("maximum"))
        .boolean(8, o.get("exclusiveMaximum"))
        .double(9, o.get("minimum"))
        .boolean(10, o.get("exclusiveMinimum"))
        .int64(11, o.get("maxLength"))
        .int64(12, o.get("minLength"))
        .string(13, o.get("pattern"))
        .int64(14, o.get("maxItems"))
        .int64(15, o.get("minItems"))
        .boolean(16, o.get("uniqueItems"))
        .int64(17, o.get("maxProperties"))
        .int64(18, o.get("minProperties"))
        .strings(19, o.get("required"))
        .anys(20, o.get("enum"));
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Msg::default();
            put_key(&mut item.0, 2, VARINT);
            put_varint(&mut item.0, u64::from(*b));
            m.message(21, item);
        }
        Some(s @ Value::Object(_)) => {
            let mut item = Msg::default();
            item.message(1, schema(s));
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(t) = o.get("type") {
        let mut tm = Msg::default();
        tm.strings(1, Some(t));
        m.message(22, tm);
    }
    match o.get("items") {
        Some(Value::Array(list)) => {
            let mut im = Msg::default();
            for s in list {
                im.message(1, schema(s));
            }
            m.message(23, im);
        }
        Some(s @ Value::Object(_)) => {
            let mut im = Msg::default();
            im.message(1, schema(s));
            m.message(23, im);
        }
        _ => {}
    }
    for s in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(s));
    }
    if let Some(props) = o.get("properties") {
        let mut pm = Msg::default();
        pm.named(1, Some(props), schema);
        m.message(25, pm);
    }
    m.string(26, o.get("discriminator"))
        .boolean(27, o.get("readOnly"));
    if let Some(docs) = o.get("externalDocs") {
        let mut dm = Msg::default();
        dm.string(1, docs.get("description"))
            .string(2, docs.get("url"));
        m.message(29, dm);
    }
    m.any(30, o.get("example")).vendor(31, &o);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::wire::{Reader, WireValue};
    use serde_json::json;

    /// The length-delimited fields of a message, by field number.
    fn fields(buf: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while let Some((tag, v)) = r.field().expect("well-formed") {
            if let WireValue::Bytes(b) = v {
                out.push((tag, b.to_vec()));
            } else if let WireValue::Varint(n) = v {
                out.push((tag, n.to_le_bytes()[..1].to_vec()));
            }
        }
        out
    }

    fn field(buf: &[u8], tag: u32) -> Vec<u8> {
        fields(buf)
            .into_iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no field {tag}"))
    }

    fn text(buf: &[u8], tag: u32) -> String {
        String::from_utf8(field(buf, tag)).unwrap()
    }

    #[test]
    fn documents_follow_gnostic_numbering() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {
                "patch": {
                    "operationId": "patchCoreV1NamespacedPod",
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
                        {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/x"}}
                    ],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/x"}}},
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}
                },
                "parameters": [{"name": "name", "in": "path", "required": true, "type": "string"}]
            }},
            "definitions": {"io.k8s.api.core.v1.Pod": {
                "type": "object",
                "properties": {"metadata": {"$ref": "#/definitions/m"}, "n": {"type": "integer", "format": "int32"}},
                "additionalProperties": false,
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]
            }},
        });
        let bytes = encode_document(&doc);
        assert_eq!(text(&bytes, 1), "2.0");
        assert_eq!(text(&field(&bytes, 2), 2), "v1.33.0");
        // paths → NamedPathItem → PathItem.patch → Operation
        let named = field(&field(&bytes, 8), 2);
        assert_eq!(
            text(&named, 1),
            "/api/v1/namespaces/{namespace}/pods/{name}"
        );
        let item = field(&named, 2);
        let op = field(&item, 8);
        assert_eq!(text(&op, 5), "patchCoreV1NamespacedPod");
        // The query parameter: ParametersItem.parameter → Parameter.non_body →
        // NonBodyParameter.query → name (4).
        let params: Vec<Vec<u8>> = fields(&op)
            .into_iter()
            .filter(|(t, _)| *t == 8)
            .map(|(_, b)| b)
            .collect();
        let query = field(&field(&field(&params[0], 1), 2), 3);
        assert_eq!(text(&query, 4), "fieldValidation");
        assert_eq!(text(&query, 6), "string");
        let body = field(&field(&params[1], 1), 1);
        assert_eq!(text(&body, 3), "body");
        assert_eq!(text(&field(&body, 5), 1), "#/definitions/x");
        // The path-level parameter is a PathParameterSubSchema (type at 5).
        let path_param = field(&field(&field(&field(&item, 9), 1), 2), 4);
        assert_eq!(text(&path_param, 5), "string");
        // The operation's GVK extension, as YAML that Go reads back into a map.
        let ext = field(&op, 13);
        assert_eq!(text(&ext, 1), "x-kubernetes-group-version-kind");
        assert_eq!(
            text(&field(&ext, 2), 2),
            "{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"}\n"
        );
        // definitions → NamedSchema → Schema: type (22), properties (25).
        let def = field(&field(&bytes, 9), 1);
        assert_eq!(text(&def, 1), "io.k8s.api.core.v1.Pod");
        let schema = field(&def, 2);
        assert_eq!(text(&field(&schema, 22), 1), "object");
        let props: Vec<Vec<u8>> = fields(&field(&schema, 25))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert_eq!(text(&props[0], 1), "metadata");
        assert_eq!(text(&field(&props[0], 2), 1), "#/definitions/m");
        assert_eq!(text(&field(&props[1], 2), 2), "int32");
        // additionalProperties: false is the `boolean` arm (2) holding 0.
        assert_eq!(field(&schema, 21), vec![2 << 3, 0]);
    }
}
