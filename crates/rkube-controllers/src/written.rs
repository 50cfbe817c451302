//! The last version of each object a controller wrote itself, so that a sync
//! starting before the informer has caught up with that write works from it rather
//! than from the older cached copy (whose status would undo the write, and whose
//! resourceVersion would only conflict).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Resource;

/// Objects by controller key, as last written.
pub struct LastWritten<K> {
    objects: Mutex<HashMap<String, Arc<K>>>,
}

impl<K> Default for LastWritten<K> {
    fn default() -> Self {
        LastWritten {
            objects: Mutex::new(HashMap::new()),
        }
    }
}

/// A resourceVersion as a number (the store's revision), if it is one.
fn revision<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: Resource> LastWritten<K> {
    /// The cached object, or the one written last if it is newer (same uid).
    pub fn newest(&self, key: &str, cached: Arc<K>) -> Arc<K> {
        let written = self.lock().get(key).cloned();
        match written {
            Some(w)
                if w.meta().uid == cached.meta().uid
                    && revision(w.as_ref())
                        .zip(revision(cached.as_ref()))
                        .is_some_and(|(a, b)| a > b) =>
            {
                w
            }
            _ => cached,
        }
    }

    pub fn record(&self, key: &str, obj: Arc<K>) {
        self.lock().insert(key.to_string(), obj);
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<K>>> {
        self.objects.lock().expect("last-written lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn cm(uid: &str, rv: &str) -> Arc<ConfigMap> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "a", "uid": uid, "resourceVersion": rv}}),
            )
            .unwrap(),
        )
    }

    fn rv(w: &LastWritten<ConfigMap>, uid: &str, cached: &str) -> String {
        w.newest("k", cm(uid, cached))
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default()
    }

    #[test]
    fn the_newer_of_cache_and_last_write_wins() {
        let w = LastWritten::default();
        assert_eq!(rv(&w, "u", "5"), "5");
        w.record("k", cm("u", "7"));
        assert_eq!(rv(&w, "u", "5"), "7");
        assert_eq!(rv(&w, "u", "9"), "9");
        // Another object of the same name: the cache.
        assert_eq!(rv(&w, "v", "3"), "3");
        w.forget("k");
        assert_eq!(rv(&w, "u", "5"), "5");
    }
}
