//! `metadata.managedFields`: who manages which fields, read from and written to objects.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldset::{FieldSet, FieldsV1Error, PathElement};

/// Upstream's cap on `Update` entries; older ones merge into `ancient-changes`.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager older `Update` entries are merged into beyond the cap.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// How a manager wrote its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or a non-apply patch.
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What tells two entries apart (upstream's manager identifier): the name, the
/// operation, the subresource and, for updates only, the API version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for `Apply`: an applier keeps one entry across versions.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        ManagerId {
            manager: manager.to_string(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_string(),
            },
            subresource: subresource.to_string(),
        }
    }

    /// How upstream names a manager in conflict messages:
    /// `"kubectl" with subresource "scale" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The fields of one manager.
#[derive(Clone, Debug)]
pub struct ManagedEntry {
    /// Decoded from `read_as` when first needed: most writes leave most managers
    /// alone, and a stored entry need not be read to be written back.
    set: OnceCell<FieldSet>,
    /// The version the set is expressed in.
    pub api_version: String,
    /// When the manager last changed the object.
    pub time: Option<jiff::Timestamp>,
    /// `set` as it was read (`fieldsV1`), while `set` is unchanged: written back
    /// as it is, most managers of an object being untouched by a write. Whoever
    /// changes `set` clears it (see [`ManagedEntry::changed`]).
    read_as: Option<Value>,
}

impl ManagedEntry {
    /// A manager's entry for `set`, not read from an object.
    pub fn new(set: FieldSet, api_version: &str, time: Option<jiff::Timestamp>) -> Self {
        ManagedEntry {
            set: OnceCell::from(set),
            api_version: api_version.to_string(),
            time,
            read_as: None,
        }
    }

    /// The fields the manager owns.
    pub fn set(&self) -> &FieldSet {
        self.set.get_or_init(|| {
            // Only entries read from a stored object are decoded late, and the
            // server wrote (or checked) those: unreadable ones own nothing.
            self.read_as
                .as_ref()
                .and_then(|v| FieldSet::from_fields_v1(v).ok())
                .unwrap_or_default()
        })
    }

    /// The set, to change: its `fieldsV1` must be made anew.
    pub fn changed(&mut self) -> &mut FieldSet {
        self.set();
        self.read_as = None;
        self.set.get_mut().expect("decoded above")
    }

    /// Whether the manager owns nothing.
    pub fn is_empty(&self) -> bool {
        match (self.set.get(), &self.read_as) {
            (Some(set), _) => set.is_empty(),
            // Every key but "." of a fieldsV1 document is a path of the set.
            (None, Some(Value::Object(m))) => m.keys().all(|k| k == "."),
            (None, _) => self.set().is_empty(),
        }
    }

    /// The fields of `other` the manager owns. An entry not decoded yet is
    /// decoded only when its top level shares an element with `other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        if other.is_empty() {
            return FieldSet::new();
        }
        if self.set.get().is_none()
            && let Some(Value::Object(m)) = &self.read_as
            && !m
                .keys()
                .any(|k| PathElement::from_fields_v1_key(k).is_ok_and(|pe| other.has_node(&pe)))
        {
            return FieldSet::new();
        }
        self.set().intersection(other)
    }

    fn into_fields_v1(self) -> Value {
        match self.read_as {
            Some(v) => v,
            None => self.set().to_fields_v1(),
        }
    }
}

/// Entries are equal when they say the same, however they were made.
impl PartialEq for ManagedEntry {
    fn eq(&self, other: &Self) -> bool {
        self.set() == other.set()
            && self.api_version == other.api_version
            && self.time == other.time
    }
}

/// Why `metadata.managedFields` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManagedFieldsError {
    /// `managedFields` is not a list, or an entry not an object.
    #[error("managedFields must be a list of objects")]
    NotAList,
    /// An entry's `operation` is neither `Apply` nor `Update`.
    #[error("operation must be `Apply` or `Update`")]
    Operation,
    /// An entry without `apiVersion`.
    #[error("apiVersion must not be empty")]
    ApiVersion,
    /// An entry without `fieldsType`.
    #[error("missing fieldsType in managed fields entry {0}")]
    MissingFieldsType(usize),
    /// A `fieldsType` other than `FieldsV1`.
    #[error("invalid fieldsType {1:?} in managed fields entry {0}")]
    FieldsType(usize, String),
    /// A string field of an entry holds something else, or `time` is no timestamp.
    #[error("invalid {1} in managed fields entry {0}")]
    Field(usize, &'static str),
    /// `fieldsV1` is not a field set.
    #[error("error decoding versioned set from entry {0}: {1}")]
    FieldsV1(usize, FieldsV1Error),
}

/// All managers of an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManagedFields {
    pub entries: BTreeMap<ManagerId, ManagedEntry>,
}

impl ManagedFields {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads `metadata.managedFields` (absent or null: no managers), every
    /// `fieldsV1` checked: for lists a client sent.
    pub fn decode(v: Option<&Value>) -> Result<ManagedFields, ManagedFieldsError> {
        Self::read(v.cloned(), false)
    }

    /// Reads the `managedFields` of a stored object, taking the list: each
    /// entry's `fieldsV1` is decoded only if a write needs its set.
    pub fn decode_stored(v: Option<Value>) -> Result<ManagedFields, ManagedFieldsError> {
        Self::read(v, true)
    }

    fn read(v: Option<Value>, lazy: bool) -> Result<ManagedFields, ManagedFieldsError> {
        let mut out = ManagedFields::default();
        let list = match v {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(ManagedFieldsError::NotAList),
        };
        for (i, e) in list.into_iter().enumerate() {
            let Value::Object(mut e) = e else {
                return Err(ManagedFieldsError::NotAList);
            };
            let fields_v1 = e.shift_remove("fieldsV1");
            let text = |key: &'static str| -> Result<&str, ManagedFieldsError> {
                match e.get(key) {
                    None | Some(Value::Null) => Ok(""),
                    Some(Value::String(s)) => Ok(s),
                    Some(_) => Err(ManagedFieldsError::Field(i, key)),
                }
            };
            let operation = match text("operation")? {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err(ManagedFieldsError::Operation),
            };
            let api_version = text("apiVersion")?;
            if api_version.is_empty() {
                return Err(ManagedFieldsError::ApiVersion);
            }
            match text("fieldsType")? {
                "FieldsV1" => {}
                "" => return Err(ManagedFieldsError::MissingFieldsType(i)),
                other => return Err(ManagedFieldsError::FieldsType(i, other.to_string())),
            }
            let set = match &fields_v1 {
                None | Some(Value::Null) => OnceCell::from(FieldSet::new()),
                Some(Value::Object(_)) if lazy => OnceCell::new(),
                Some(f) => OnceCell::from(
                    FieldSet::from_fields_v1(f)
                        .map_err(|err| ManagedFieldsError::FieldsV1(i, err))?,
                ),
            };
            let read_as = fields_v1.filter(|f| !f.is_null());
            let time = match text("time")? {
                "" => None,
                t => Some(
                    t.parse::<jiff::Timestamp>()
                        .map_err(|_| ManagedFieldsError::Field(i, "time"))?,
                ),
            };
            let id = ManagerId::new(
                text("manager")?,
                operation,
                api_version,
                text("subresource")?,
            );
            out.entries.insert(
                id,
                ManagedEntry {
                    set,
                    api_version: api_version.to_string(),
                    time,
                    read_as,
                },
            );
        }
        Ok(out)
    }

    /// The `managedFields` list, sorted as upstream sorts it (operation, time,
    /// manager, apiVersion, subresource); None when there are no managers.
    pub fn encode(self) -> Option<Value> {
        let mut entries: Vec<(ManagerId, ManagedEntry)> = self
            .entries
            .into_iter()
            .filter(|(_, e)| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return None;
        }
        let seconds = |e: &ManagedEntry| e.time.map_or(0, |t| t.as_second());
        entries.sort_by(|(ia, ea), (ib, eb)| {
            ia.operation
                .cmp(&ib.operation)
                .then_with(|| seconds(ea).cmp(&seconds(eb)))
                .then_with(|| ia.manager.cmp(&ib.manager))
                .then_with(|| ea.api_version.cmp(&eb.api_version))
                .then_with(|| ia.subresource.cmp(&ib.subresource))
        });
        let list = entries
            .into_iter()
            .map(|(id, e)| {
                let mut m = Map::new();
                if !id.manager.is_empty() {
                    m.insert("manager".into(), json!(id.manager));
                }
                m.insert("operation".into(), json!(id.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = e.time {
                    m.insert("time".into(), json!(format_time(t)));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.into_fields_v1());
                if !id.subresource.is_empty() {
                    m.insert("subresource".into(), json!(id.subresource));
                }
                Value::Object(m)
            })
            .collect();
        Some(Value::Array(list))
    }

    /// Makes every entry's `fieldsV1` anew when written, as for managers a client
    /// sent (only what the server wrote is known to be in its own form).
    pub fn rewrite_all(mut self) -> Self {
        for e in self.entries.values_mut() {
            e.read_as = None;
        }
        self
    }

    /// Writes the managers into an object's metadata (removing the list when empty).
    pub fn write_to(self, obj: &mut Value) {
        match self.encode() {
            Some(list) => {
                if let Some(o) = obj.as_object_mut() {
                    let meta = o.entry("metadata").or_insert_with(|| json!({}));
                    if let Some(m) = meta.as_object_mut() {
                        m.insert("managedFields".into(), list);
                    }
                }
            }
            None => remove_managed_fields(obj),
        }
    }

    /// Merges the oldest `Update` entries into one `ancient-changes` entry per
    /// API version until at most `max` `Update` entries are left.
    pub fn cap_updates(&mut self, max: usize) {
        let mut updaters: Vec<ManagerId> = self
            .entries
            .keys()
            .filter(|id| id.operation == Operation::Update)
            .cloned()
            .collect();
        if updaters.len() <= max {
            return;
        }
        let seconds = |id: &ManagerId| {
            self.entries[id]
                .time
                .map_or(0, |t: jiff::Timestamp| t.as_second())
        };
        updaters.sort_by(|a, b| seconds(a).cmp(&seconds(b)).then_with(|| a.cmp(b)));
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        let mut length = updaters.len();
        for id in updaters {
            if length <= max {
                break;
            }
            let Some(entry) = self.entries.get(&id).cloned() else {
                continue;
            };
            let version = entry.api_version.clone();
            let bucket = ManagerId::new(ANCIENT_CHANGES, Operation::Update, &version, "");
            match first_of_version.get(&version) {
                Some(first) => {
                    if !self.entries.contains_key(&bucket)
                        && let Some(f) = self.entries.remove(first)
                    {
                        self.entries.insert(bucket.clone(), f);
                    }
                    if let Some(b) = self.entries.get_mut(&bucket) {
                        *b.changed() = entry.set().union(b.set());
                        b.time = entry.time;
                    }
                    if id != bucket {
                        self.entries.remove(&id);
                    }
                    length -= 1;
                }
                None => {
                    first_of_version.insert(version, id);
                }
            }
        }
    }
}

/// `metav1.Time`: RFC 3339 in UTC, whole seconds.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Takes `metadata.managedFields` out of an object.
pub fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.shift_remove("managedFields"))
}

/// Drops `metadata.managedFields` from an object.
pub fn remove_managed_fields(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.shift_remove("managedFields");
    }
}

/// Whether a request's `managedFields` asks to clear them: an empty list, or a
/// list of one empty entry.
pub fn is_reset(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Array(list)) => match list.as_slice() {
            [] => true,
            [Value::Object(e)] => e.values().all(Value::is_null),
            _ => false,
        },
        _ => false,
    }
}

/// The manager name upstream derives from a User-Agent when a request names
/// none: what precedes the first `/`, printable characters only, at most 128 bytes
/// (`kubectl/v1.33.1 (linux/amd64) ...` gives `kubectl`).
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let head = user_agent.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in head.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}
