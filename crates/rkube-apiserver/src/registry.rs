//! The resources this server serves: the built-in table plus custom resources from
//! CRDs, each with the strategy that holds its per-resource rules.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rkube_api::ResourceInfo;
use rkube_api::schema::{self, CustomSchema, Schema};
use serde_json::Value;

use crate::strategy::{self, Strategy};

/// A served resource: its discovery data and its strategy.
pub struct Served {
    pub info: ResourceInfo,
    pub strategy: Arc<dyn Strategy>,
    /// For custom resources: the CRD's version entry (schema, printer columns, ...).
    pub crd_version: Option<Value>,
    /// For custom resources: the version's structural schema.
    pub custom_schema: Option<CustomSchema>,
}

impl Served {
    pub fn is_custom(&self) -> bool {
        self.crd_version.is_some()
    }

    /// The schema objects of this resource are checked and patched with.
    pub fn schema(&self) -> Option<&Schema> {
        match &self.custom_schema {
            Some(c) => Some(&c.root),
            None => schema::builtin().kind_schema(&self.info.gvk()),
        }
    }
}

#[derive(Default)]
struct Tables {
    all: Vec<Arc<Served>>,
    /// (group, version, plural) -> resource.
    by_gvr: HashMap<(String, String, String), Arc<Served>>,
    /// Storage prefix `/registry/<group>/<plural>/` -> preferred resource.
    by_prefix: HashMap<String, Arc<Served>>,
}

/// All served resources. Reads are cheap; CRD changes swap the tables.
pub struct Registry {
    tables: RwLock<Arc<Tables>>,
    builtins: Vec<Arc<Served>>,
    /// Bumped whenever the set of custom resources changes (OpenAPI caches key on it).
    generation: std::sync::atomic::AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let builtins: Vec<Arc<Served>> = rkube_api::resource::builtin_resources()
            .into_iter()
            .map(|info| {
                let strategy = strategy::for_builtin(&info);
                Arc::new(Served {
                    info,
                    strategy,
                    crd_version: None,
                    custom_schema: None,
                })
            })
            .collect();
        let registry = Registry {
            tables: RwLock::new(Arc::new(Tables::default())),
            builtins,
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        registry.set_custom(Vec::new());
        registry
    }

    /// Replaces the set of custom resources (called when CRDs change).
    pub fn set_custom(&self, custom: Vec<Arc<Served>>) {
        let mut t = Tables::default();
        for s in self.builtins.iter().chain(custom.iter()) {
            t.all.push(s.clone());
            t.by_gvr.insert(
                (
                    s.info.group.clone(),
                    s.info.version.clone(),
                    s.info.plural.clone(),
                ),
                s.clone(),
            );
            let prefix = s.info.key_prefix();
            // The preferred (first listed) version answers for the storage prefix.
            t.by_prefix.entry(prefix).or_insert_with(|| s.clone());
        }
        *self.tables.write().expect("registry lock") = Arc::new(t);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Changes whenever custom resources are added, changed or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The built-in resources.
    pub fn builtins(&self) -> &[Arc<Served>] {
        &self.builtins
    }

    fn tables(&self) -> Arc<Tables> {
        self.tables.read().expect("registry lock").clone()
    }

    pub fn all(&self) -> Vec<Arc<Served>> {
        self.tables().all.clone()
    }

    pub fn custom(&self) -> Vec<Arc<Served>> {
        self.tables()
            .all
            .iter()
            .filter(|s| s.is_custom())
            .cloned()
            .collect()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Served>> {
        self.tables()
            .by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The resource a storage key belongs to.
    pub fn for_key(&self, key: &str) -> Option<Arc<Served>> {
        let rest = key.strip_prefix("/registry/")?;
        let mut parts = rest.splitn(3, '/');
        let group = parts.next()?;
        let plural = parts.next()?;
        self.tables()
            .by_prefix
            .get(&format!("/registry/{group}/{plural}/"))
            .cloned()
    }

    /// A resource by group and kind (any version; the preferred one first).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<Served>> {
        self.tables()
            .all
            .iter()
            .find(|s| s.info.group == group && s.info.kind == kind)
            .cloned()
    }

    /// The versions served for a group, preferred first.
    pub fn versions(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.tables().all.iter().filter(|s| s.info.group == group) {
            if !out.contains(&s.info.version) {
                out.push(s.info.version.clone());
            }
        }
        if let Some(pref) = rkube_api::resource::preferred_version(group)
            && let Some(i) = out.iter().position(|v| v == pref)
        {
            let v = out.remove(i);
            out.insert(0, v);
        }
        out
    }

    /// Groups in discovery order: built-in order first, then custom groups by name.
    pub fn groups(&self) -> Vec<String> {
        let tables = self.tables();
        let mut groups: Vec<String> = Vec::new();
        for g in rkube_api::resource::GROUP_ORDER {
            if tables.all.iter().any(|s| s.info.group == *g) {
                groups.push(g.to_string());
            }
        }
        let mut custom: Vec<String> = tables
            .all
            .iter()
            .map(|s| s.info.group.clone())
            .filter(|g| !groups.contains(g))
            .collect();
        custom.sort();
        custom.dedup();
        groups.extend(custom);
        groups
    }
}
