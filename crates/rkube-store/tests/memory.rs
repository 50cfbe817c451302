//! The conformance suite against the in-memory store.

use std::sync::Arc;

use rkube_store::conformance::TestStore;
use rkube_store::memory::MemoryStore;

async fn open() -> TestStore {
    TestStore::new(Arc::new(MemoryStore::new()))
}

rkube_store::conformance_tests!(open);
