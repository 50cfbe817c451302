//! The generic registry store: create, update and delete of any resource, with
//! metadata rules, strategies, admission, optimistic concurrency and finalizers.

use std::sync::Arc;

use bytes::Bytes;
use rkube_api::meta;
use rkube_store::{KeyValue, Revision, StoreError};
use serde_json::{Value, json};

use crate::admission;
use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::registry::Served;
use crate::server::ApiServer;
use crate::strategy::spec_changed;

/// Options every write carries.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// Who writes, for `managedFields`: `?fieldManager=`, else derived from the
    /// User-Agent. None: the write is not tracked (internal writers).
    pub field_manager: Option<String>,
    pub user: UserInfo,
    /// The subresource written through (`status`, `scale`, ...).
    pub subresource: Option<String>,
    /// A server-side apply: the apply itself computed `managedFields`.
    pub apply: bool,
}

/// Which part of an object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status` (for kinds with a status subresource).
    Main,
    /// `/status`: only `status`.
    Status,
    /// Internal writers (finalizers removal, namespace finalize): everything.
    All,
    /// A write below the resource's rules, as upstream's storage-level updates:
    /// no defaulting, validation, admission or field management (pod bindings,
    /// whose caller checks what it changes).
    Direct,
}

/// Deletion options (`metav1.DeleteOptions`).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (and the query's overrides).
    pub fn from_json(v: &Value) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: v.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation_policy: v
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_uid: v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: v
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All")),
        }
    }
}

/// What a delete did.
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// Deletion started (finalizers or a grace period); the object as it is now.
    Pending(Value),
}

/// The alphabet upstream uses for generated name suffixes.
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect()
}

/// Parses a stored value and sets its resourceVersion.
pub fn decode_kv(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    meta::set_meta_str(&mut v, "resourceVersion", kv.mod_revision.to_string());
    Ok(v)
}

fn set_rv(obj: &mut Value, rev: i64) {
    meta::set_meta_str(obj, "resourceVersion", rev.to_string());
}

/// Metadata fields a client may not set or change.
fn reset_system_meta_on_create(obj: &mut Value) {
    let m = meta::metadata_mut(obj);
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert(
        "creationTimestamp".into(),
        json!(crate::time::now_rfc3339()),
    );
    m.remove("generation");
    m.remove("selfLink");
    for key in ["labels", "annotations"] {
        if m.get(key)
            .is_some_and(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty()))
        {
            m.remove(key);
        }
    }
}

/// Checks name and namespace of an object against the request and the strategy.
fn validate_meta(served: &Served, obj: &Value, errs: &mut Vec<FieldError>) {
    let name = meta::name(obj).unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for e in served.strategy.validate_name(name) {
            errs.push(FieldError::invalid("metadata.name", name, e));
        }
    }
    crate::strategy::validation::object_meta(obj, errs);
}

impl ApiServer {
    fn invalid(&self, served: &Served, obj: &Value, errs: &[FieldError]) -> ApiError {
        let name = meta::name(obj)
            .or_else(|| meta::generate_name(obj))
            .unwrap_or_default();
        ApiError::invalid(&served.info.group, &served.info.kind, name, errs)
    }

    /// Creates an object. `namespace` is the request's (for namespaced resources).
    pub async fn create_object(
        &self,
        served: &Arc<Served>,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        // apiVersion and kind: fill in, or refuse a different kind.
        obj["apiVersion"] = json!(served.info.api_version());
        obj["kind"] = json!(served.info.kind);
        if let Some(ns) = namespace.filter(|_| served.info.namespaced()) {
            match meta::namespace(&obj) {
                Some(body_ns) if body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => meta::set_meta_str(&mut obj, "namespace", ns),
            }
        } else if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("namespace");
        }
        if meta::resource_version(&obj).is_some() {
            return Err(ApiError::invalid(
                &served.info.group,
                &served.info.kind,
                meta::name(&obj).unwrap_or_default(),
                &[FieldError::invalid(
                    "metadata.resourceVersion",
                    meta::resource_version(&obj).unwrap_or_default(),
                    "must be empty",
                )],
            ));
        }
        let generate = meta::name(&obj).is_none() && meta::generate_name(&obj).is_some();
        reset_system_meta_on_create(&mut obj);
        if served.strategy.tracks_generation() {
            meta::metadata_mut(&mut obj).insert("generation".into(), json!(1));
        }
        if served.info.subresource("status").is_some()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        served.strategy.default(&mut obj);
        crate::apply::record_update(served, opts, None, &mut obj);
        served.strategy.prepare_for_create(&mut obj);
        served.strategy.record_requester(&mut obj, &opts.user);
        admission::admit_create(self, served, &mut obj, opts).await?;

        // Up to a few attempts when a generated name collides.
        for attempt in 0..8 {
            if generate {
                let prefix = meta::generate_name(&obj).unwrap_or_default().to_string();
                let trimmed: String = prefix.chars().take(63 - 5).collect();
                meta::set_meta_str(&mut obj, "name", format!("{trimmed}{}", random_suffix(5)));
            }
            let mut errs = Vec::new();
            validate_meta(served, &obj, &mut errs);
            errs.extend(served.strategy.validate(&obj));
            if !errs.is_empty() {
                admission::release_on_failure(self, served, &obj).await;
                return Err(self.invalid(served, &obj, &errs));
            }
            let name = meta::name(&obj).unwrap_or_default().to_string();
            let key = served.info.key(meta::namespace(&obj), &name);
            if opts.dry_run {
                if self.store.get(&key).await?.is_some() {
                    return Err(ApiError::already_exists(
                        &served.info.group,
                        &served.info.plural,
                        &name,
                    ));
                }
                admission::release_on_failure(self, served, &obj).await;
                return Ok(obj);
            }
            match self.put(&key, &mut obj, None).await {
                Ok(()) => {
                    self.metrics.count_write(&served.info.plural, "create");
                    return Ok(obj);
                }
                Err(StoreError::AlreadyExists(_)) if generate && attempt < 7 => continue,
                Err(StoreError::AlreadyExists(_)) => {
                    admission::release_on_failure(self, served, &obj).await;
                    return Err(ApiError::already_exists(
                        &served.info.group,
                        &served.info.plural,
                        &name,
                    ));
                }
                Err(e) => {
                    admission::release_on_failure(self, served, &obj).await;
                    return Err(e.into());
                }
            }
        }
        Err(ApiError::internal("could not generate a unique name"))
    }

    /// Reads an object from the store (not the cache), for read-modify-write.
    pub async fn read_current(
        &self,
        served: &Served,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<(Value, i64)>> {
        let key = served.info.key(namespace, name);
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some((decode_kv(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Stores `obj` at `key`: created (`expected` None) or replacing revision
    /// `expected`. It is stored without `metadata.resourceVersion` (the store's
    /// revision supplies it on the way out); on success `obj` gets its new one.
    /// The watch cache is primed with it before the write: the store's event
    /// may come back before the write's answer does.
    async fn put(
        &self,
        key: &str,
        obj: &mut Value,
        expected: Option<Revision>,
    ) -> Result<(), StoreError> {
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.shift_remove("resourceVersion");
        }
        let stored = Bytes::from(serde_json::to_vec(obj).unwrap_or_default());
        self.cache.prime(key, obj, &stored);
        let kv = match expected {
            None => self.store.create(key, stored.clone()).await?,
            Some(rev) => self.store.update(key, stored.clone(), rev).await?,
        };
        self.cache.settle(key, &stored, kv.mod_revision);
        set_rv(obj, kv.mod_revision);
        Ok(())
    }

    /// Read-modify-write with optimistic concurrency (upstream's GuaranteedUpdate).
    ///
    /// `mutate` gets the current object (None when missing) and returns the desired
    /// one; it runs again when another writer got in between. A resourceVersion in
    /// the desired object is a precondition: a stale one gives 409.
    ///
    /// As upstream, the first try starts from the watch cache's copy, which may be
    /// behind: only a write to the store settles on it. Any other outcome (an
    /// error, no change, a dry run) is decided again from the store. Services
    /// start from the store: their admission allocates addresses and ports.
    pub async fn update_object<F>(
        &self,
        served: &Arc<Served>,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        mut mutate: F,
    ) -> ApiResult<(Value, bool)>
    where
        F: FnMut(Option<&Value>) -> ApiResult<Value>,
    {
        let key = served.info.key(namespace, name);
        let gr = (served.info.group.as_str(), served.info.plural.as_str());
        // Writes whose admission allocates start from the store.
        let mut from_cache = !admission::allocates(served);
        // Ends the attempt with `$out`, unless it started from the cache: then
        // the store is read and the attempt made again.
        macro_rules! settle {
            ($out:expr) => {{
                if from_cache {
                    from_cache = false;
                    continue;
                }
                return $out;
            }};
        }
        for _ in 0..32 {
            let cached = match from_cache {
                true => self.cache.get(&key),
                false => None,
            };
            let current = match cached {
                Some(c) => Some((c.value(), c.rv)),
                None => {
                    from_cache = false;
                    self.read_current(served, namespace, name).await?
                }
            };
            let Some((old, old_rev)) = current else {
                if !served.strategy.allow_create_on_update() || part != Part::Main {
                    return Err(ApiError::not_found(gr.0, gr.1, name));
                }
                let mut obj = mutate(None)?;
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                meta::set_meta_str(&mut obj, "name", name);
                let created = self.create_object(served, namespace, obj, opts).await?;
                return Ok((created, true));
            };
            let mut new = match mutate(Some(&old)) {
                Ok(new) => new,
                Err(e) => settle!(Err(e)),
            };
            if !new.is_object() {
                return Err(ApiError::bad_request(
                    "the body of the request must be an object",
                ));
            }
            if let Some(body_name) = meta::name(&new)
                && body_name != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            if let Some(rv) = meta::resource_version(&new)
                && rv != old_rev.to_string()
            {
                settle!(Err(ApiError::stale(gr.0, gr.1, name)));
            }
            if let Some(ns) = namespace.filter(|_| served.info.namespaced())
                && let Some(body_ns) = meta::namespace(&new)
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            new["apiVersion"] = json!(served.info.api_version());
            new["kind"] = json!(served.info.kind);
            if part != Part::Direct
                && let Err(e) = self
                    .prepare_update(served, &mut new, &old, part, opts)
                    .await
            {
                settle!(Err(e));
            }
            if new == old {
                settle!(Ok((old, false)));
            }
            if opts.dry_run {
                settle!(Ok((new, false)));
            }
            // An object being deleted whose last finalizer went away is deleted now.
            if delete_during_update(served, &new) {
                match self.store.delete(&key, Some(old_rev)).await {
                    Ok(kv) => {
                        set_rv(&mut new, kv.mod_revision);
                        return Ok((new, false));
                    }
                    Err(StoreError::Conflict { .. }) => {
                        from_cache = false;
                        continue;
                    }
                    Err(StoreError::NotFound(_)) => {
                        settle!(Err(ApiError::not_found(gr.0, gr.1, name)))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match self.put(&key, &mut new, Some(old_rev)).await {
                Ok(()) => {
                    self.metrics.count_write(&served.info.plural, "update");
                    return Ok((new, false));
                }
                Err(StoreError::Conflict { .. }) => {
                    from_cache = false;
                    continue;
                }
                Err(StoreError::NotFound(_)) => {
                    settle!(Err(ApiError::not_found(gr.0, gr.1, name)))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            gr.0,
            gr.1,
            name,
            "too many concurrent updates, please retry",
        ))
    }

    /// Applies the update rules to a desired object, given the current one.
    async fn prepare_update(
        &self,
        served: &Arc<Served>,
        new: &mut Value,
        old: &Value,
        part: Part,
        opts: &WriteOptions,
    ) -> ApiResult<()> {
        // System metadata is kept from the stored object.
        {
            let empty = serde_json::Map::new();
            let old_meta = meta::metadata(old).unwrap_or(&empty);
            let m = meta::metadata_mut(new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        m.insert(k.to_string(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.remove("selfLink");
            m.insert(
                "resourceVersion".into(),
                old_meta
                    .get("resourceVersion")
                    .cloned()
                    .unwrap_or(json!("")),
            );
            for key in ["labels", "annotations"] {
                if m.get(key).is_some_and(|v| v.is_null()) {
                    m.remove(key);
                }
            }
        }
        let has_status = served.info.subresource("status").is_some();
        match part {
            Part::Main if has_status => match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            Part::Status => keep_all_but_status(new, old),
            _ => {}
        }
        if part != Part::Status {
            served.strategy.default(new);
        }
        if part == Part::Main {
            served.strategy.prepare_for_update(new, old);
        }
        // Deleting objects may only lose finalizers, not gain them.
        if meta::deletion_timestamp(old).is_some() {
            let old_f = meta::finalizers(old);
            let added: Vec<String> = meta::finalizers(new)
                .into_iter()
                .filter(|f| !old_f.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &served.info.group,
                    &served.info.kind,
                    meta::name(old).unwrap_or_default(),
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        if served.strategy.tracks_generation() && part != Part::Status && spec_changed(new, old) {
            let g = meta::generation(old).max(1) + 1;
            meta::metadata_mut(new).insert("generation".into(), json!(g));
        }
        crate::apply::record_update(served, opts, Some(old), new);
        let mut errs = Vec::new();
        crate::strategy::validation::object_meta(new, &mut errs);
        match part {
            Part::Status => errs.extend(served.strategy.validate_status_update(new, old)),
            _ => errs.extend(served.strategy.validate_update(new, old)),
        }
        if !errs.is_empty() {
            return Err(self.invalid(served, new, &errs));
        }
        admission::admit_update(self, served, new, old, opts).await?;
        Ok(())
    }

    /// Deletes an object, honouring preconditions, grace periods and finalizers.
    pub async fn delete_object(
        &self,
        served: &Arc<Served>,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = served.info.key(namespace, name);
        let gr = (served.info.group.as_str(), served.info.plural.as_str());
        for _ in 0..32 {
            let Some((mut obj, rev)) = self.read_current(served, namespace, name).await? else {
                return Err(ApiError::not_found(gr.0, gr.1, name));
            };
            if let Some(uid) = &opts.precondition_uid
                && meta::uid(&obj) != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    gr.0,
                    gr.1,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&obj).unwrap_or_default()
                    ),
                ));
            }
            if let Some(prv) = &opts.precondition_rv
                && *prv != rev.to_string()
            {
                return Err(ApiError::conflict(
                    gr.0,
                    gr.1,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {prv}, ResourceVersion in object meta: {rev}"
                    ),
                ));
            }
            let grace = admission::grace_period(served, &obj, opts);
            let mut finalizers = meta::finalizers(&obj);
            let orphan_policy = opts.propagation_policy.as_deref() == Some("Orphan");
            let foreground = opts.propagation_policy.as_deref() == Some("Foreground");
            let already_deleting = meta::deletion_timestamp(&obj).is_some();
            if orphan_policy && !finalizers.iter().any(|f| f == "orphan") {
                finalizers.push("orphan".into());
            }
            if foreground && !finalizers.iter().any(|f| f == "foregroundDeletion") {
                finalizers.retain(|f| f != "orphan");
                finalizers.push("foregroundDeletion".into());
            }
            let spec_finalizers =
                served.info.plural == "namespaces" && served.info.group.is_empty();
            let pending = !finalizers.is_empty()
                || grace.is_some_and(|g| g > 0)
                || (spec_finalizers && !no_finalizers_left(served, &obj));
            if !pending {
                if opts.dry_run {
                    return Ok(Deleted::Gone(obj));
                }
                match self.store.delete(&key, Some(rev)).await {
                    Ok(kv) => {
                        set_rv(&mut obj, kv.mod_revision);
                        admission::release_on_delete(self, served, &obj).await;
                        self.metrics.count_write(&served.info.plural, "delete");
                        return Ok(Deleted::Gone(obj));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound(_)) => {
                        return Err(ApiError::not_found(gr.0, gr.1, name));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Graceful or finalizer-held deletion: mark the object.
            let mut new = obj.clone();
            {
                let m = meta::metadata_mut(&mut new);
                let g = grace.unwrap_or(0);
                let shorter = m
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_none_or(|cur| g < cur);
                if !already_deleting || shorter {
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(crate::time::rfc3339_in(g)),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(g));
                }
                if !finalizers.is_empty() {
                    m.insert("finalizers".into(), json!(finalizers));
                }
            }
            if spec_finalizers {
                new["status"]["phase"] = json!("Terminating");
            }
            if new == obj {
                return Ok(Deleted::Pending(obj));
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(new));
            }
            match self.put(&key, &mut new, Some(rev)).await {
                Ok(()) => {
                    return Ok(Deleted::Pending(new));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound(_)) => return Err(ApiError::not_found(gr.0, gr.1, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            gr.0,
            gr.1,
            name,
            "too many concurrent updates, please retry",
        ))
    }
}

/// Whether an update leaves a deleting object with nothing holding it (no finalizers
/// and no grace period still running), so the update deletes it.
/// A status write changes `status` only (and `metadata.managedFields`: those a
/// status apply recorded, else the stored ones): every other field of `new`
/// becomes the stored one's.
fn keep_all_but_status(new: &mut Value, old: &Value) {
    let (Some(fields), Some(old_fields)) = (new.as_object_mut(), old.as_object()) else {
        *new = old.clone();
        return;
    };
    adopt_fields(fields, old_fields, &["status", "metadata"]);
    match (
        fields.get_mut("metadata").and_then(Value::as_object_mut),
        old_fields.get("metadata").and_then(Value::as_object),
    ) {
        (Some(meta), Some(old_meta)) => {
            adopt_fields(meta, old_meta, &["managedFields"]);
            if !meta.contains_key("managedFields")
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        _ => match old_fields.get("metadata") {
            Some(m) => {
                fields.insert("metadata".into(), m.clone());
            }
            None => {
                fields.shift_remove("metadata");
            }
        },
    }
}

/// Makes `fields` hold the fields of `old`, but for those named in `except`,
/// which stay as they are. Fields already equal are left in place rather than
/// copied again.
fn adopt_fields(
    fields: &mut serde_json::Map<String, Value>,
    old: &serde_json::Map<String, Value>,
    except: &[&str],
) {
    fields.retain(|k, _| except.contains(&k.as_str()) || old.contains_key(k));
    for (k, v) in old {
        if !except.contains(&k.as_str()) && fields.get(k) != Some(v) {
            fields.insert(k.clone(), v.clone());
        }
    }
}

fn delete_during_update(served: &Served, obj: &Value) -> bool {
    let grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    meta::deletion_timestamp(obj).is_some() && grace == 0 && no_finalizers_left(served, obj)
}

/// Whether nothing holds a deleting object any more.
fn no_finalizers_left(served: &Served, obj: &Value) -> bool {
    if !meta::finalizers(obj).is_empty() {
        return false;
    }
    if served.info.group.is_empty() && served.info.plural == "namespaces" {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    }
    true
}
