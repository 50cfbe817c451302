//! The conformance suite against the SQLite store, each case on a fresh database file,
//! with and without the in-memory copy of the latest values.

use std::sync::Arc;

use rkube_store::conformance::{TempDir, TestStore};
use rkube_store::sqlite::{SqliteOptions, SqliteStore};

fn open_with(latest_in_memory: bool) -> TestStore {
    let dir = TempDir::new("sqlite-conformance");
    let options = SqliteOptions {
        latest_in_memory,
        ..Default::default()
    };
    let store =
        SqliteStore::open_with(dir.path().join("state.db"), options).expect("open sqlite store");
    TestStore::with_guard(Arc::new(store), Box::new(dir))
}

mod latest_in_memory {
    rkube_store::conformance_tests!(|| async { super::open_with(true) });
}

mod latest_from_disk {
    rkube_store::conformance_tests!(|| async { super::open_with(false) });
}
