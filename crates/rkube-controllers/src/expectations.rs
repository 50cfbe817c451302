//! Expectations: what a controller has asked the API for and not yet seen in its
//! informer, so a sync against a stale cache never creates or deletes twice
//! (upstream's UIDTrackingControllerExpectations).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// After this long, unmet expectations are given up (a watch event was lost).
const TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Record {
    adds: i64,
    deletes: HashSet<String>,
    at: Instant,
}

/// Expectations per controller key.
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().expect("expectations lock")
    }

    /// Whether the cache has caught up with what `key` asked for.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(r) => (r.adds <= 0 && r.deletes.is_empty()) || r.at.elapsed() > TTL,
        }
    }

    /// `key` is about to create `n` objects.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.lock().insert(
            key.to_string(),
            Record {
                adds: n as i64,
                deletes: HashSet::new(),
                at: Instant::now(),
            },
        );
    }

    /// `key` is about to create `adds` objects and delete `deletes` (by
    /// `namespace/name`) in one go.
    pub fn expect(&self, key: &str, adds: usize, deletes: impl IntoIterator<Item = String>) {
        self.lock().insert(
            key.to_string(),
            Record {
                adds: adds as i64,
                deletes: deletes.into_iter().collect(),
                at: Instant::now(),
            },
        );
    }

    /// `key` is about to delete these objects (by `namespace/name`).
    pub fn expect_deletions(&self, key: &str, objects: impl IntoIterator<Item = String>) {
        self.lock().insert(
            key.to_string(),
            Record {
                adds: 0,
                deletes: objects.into_iter().collect(),
                at: Instant::now(),
            },
        );
    }

    /// A creation was seen (or will never happen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(r) = self.lock().get_mut(key) {
            r.adds -= 1;
        }
    }

    /// A deletion of `object` was seen (or will never happen).
    pub fn deletion_observed(&self, key: &str, object: &str) {
        if let Some(r) = self.lock().get_mut(key) {
            r.deletes.remove(object);
        }
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions_are_counted_down() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rs", "ns/a");
        // The same deletion seen twice counts once.
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
    }
}
