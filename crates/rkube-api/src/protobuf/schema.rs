//! The protobuf schema table: every message's fields with their numbers, JSON names and
//! types, parsed once from `schema.txt` (written by `tools/protobuf_schema.py`).

use std::collections::HashMap;
use std::sync::OnceLock;

/// A scalar protobuf type as Kubernetes uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    String,
    Int32,
    Int64,
    Bool,
    Double,
    Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Scalar(Scalar),
    /// An index into [`Schema::messages`].
    Message(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Single,
    Repeated,
    /// `map<string, T>`, written as repeated entries `{1: key, 2: value}`.
    Map,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub tag: u32,
    /// The JSON name; unused for inlined fields.
    pub json: String,
    pub ty: Type,
    pub shape: Shape,
    /// A zero value means something: the field is required or a pointer in Go.
    pub keep_zero: bool,
    /// An embedded struct whose fields JSON writes into the parent (`json:",inline"`).
    pub inline: bool,
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `metav1.Time`: RFC 3339 with seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// Bytes holding JSON (`RawExtension`, `FieldsV1`, apiextensions `JSON`).
    RawJson,
    /// A named `[]string` (`ExtraValue`).
    StringList,
    /// `JSONSchemaPropsOrArray`: a schema or an array of schemas.
    PropsOrArray,
    /// `JSONSchemaPropsOrBool`: a schema or a boolean.
    PropsOrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema or an array of strings.
    PropsOrStringArray,
}

#[derive(Debug)]
pub(crate) struct Message {
    pub name: String,
    pub fields: Vec<Field>,
    pub special: Special,
}

#[derive(Debug)]
pub(crate) struct Schema {
    pub messages: Vec<Message>,
    /// `(apiVersion, kind)` to message.
    pub kinds: HashMap<(String, String), usize>,
}

const TABLE: &str = include_str!("schema.txt");

/// The schema, parsed on first use.
pub(crate) fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(TABLE))
}

fn special(name: &str) -> Special {
    match name {
        "meta.v1.Time" => Special::Time,
        "meta.v1.MicroTime" => Special::MicroTime,
        "resource.Quantity" => Special::Quantity,
        "intstr.IntOrString" => Special::IntOrString,
        "runtime.RawExtension" | "meta.v1.FieldsV1" | "apiextensions.v1.Json" => Special::RawJson,
        "apiextensions.v1.JsonSchemaPropsOrArray" => Special::PropsOrArray,
        "apiextensions.v1.JsonSchemaPropsOrBool" => Special::PropsOrBool,
        "apiextensions.v1.JsonSchemaPropsOrStringArray" => Special::PropsOrStringArray,
        n if n.ends_with(".ExtraValue") => Special::StringList,
        _ => Special::None,
    }
}

fn scalar(name: &str) -> Option<Scalar> {
    Some(match name {
        "string" => Scalar::String,
        "int32" => Scalar::Int32,
        "int64" => Scalar::Int64,
        "bool" => Scalar::Bool,
        "double" => Scalar::Double,
        "bytes" => Scalar::Bytes,
        _ => return None,
    })
}

/// Parses the table. It is generated and checked by the tests, so a malformed line is a
/// build defect and panics.
fn parse(table: &str) -> Schema {
    let lines: Vec<&str> = table
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut index = HashMap::new();
    for l in &lines {
        if let Some(name) = l.strip_prefix("M ") {
            index.insert(name.to_string(), index.len());
        }
    }
    let resolve = |t: &str| -> Type {
        match t.strip_prefix('.') {
            Some(m) => Type::Message(*index.get(m).unwrap_or_else(|| panic!("schema: no {m}"))),
            None => Type::Scalar(scalar(t).unwrap_or_else(|| panic!("schema: type {t}"))),
        }
    };
    let mut messages: Vec<Message> = Vec::with_capacity(index.len());
    let mut kinds = HashMap::new();
    for l in &lines {
        let parts: Vec<&str> = l.split(' ').collect();
        match parts[0] {
            "K" => {
                kinds.insert(
                    (parts[1].to_string(), parts[2].to_string()),
                    index[parts[3]],
                );
            }
            "M" => messages.push(Message {
                name: parts[1].to_string(),
                fields: Vec::new(),
                special: special(parts[1]),
            }),
            tag => {
                let (ty, shape) = if let Some(inner) =
                    parts[2].strip_prefix('{').and_then(|t| t.strip_suffix('}'))
                {
                    (resolve(inner), Shape::Map)
                } else if let Some(t) = parts[2].strip_suffix('*') {
                    (resolve(t), Shape::Repeated)
                } else {
                    (resolve(parts[2]), Shape::Single)
                };
                let flags = parts[3];
                let message = messages.last_mut().expect("schema: field before message");
                message.fields.push(Field {
                    tag: tag.parse().expect("schema: tag"),
                    json: parts[1].to_string(),
                    ty,
                    shape,
                    keep_zero: flags.contains('r') || flags.contains('p'),
                    inline: flags.contains('i'),
                });
            }
        }
    }
    Schema { messages, kinds }
}
