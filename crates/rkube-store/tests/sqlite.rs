//! The conformance suite against the SQLite store, each case on a fresh database file.

use std::sync::Arc;

use rkube_store::conformance::{TempDir, TestStore};
use rkube_store::sqlite::SqliteStore;

async fn open() -> TestStore {
    let dir = TempDir::new("sqlite-conformance");
    let store = SqliteStore::open(dir.path().join("state.db")).expect("open sqlite store");
    TestStore::with_guard(Arc::new(store), Box::new(dir))
}

rkube_store::conformance_tests!(open);
