//! The conformance suite against the in-memory store.

use std::sync::Arc;

use rkube_store::conformance::TestStore;
use rkube_store::memory::MemoryStore;

async fn open() -> TestStore {
    TestStore::new(Arc::new(MemoryStore::new()))
}

rkube_store::conformance_tests!(open);

#[tokio::test]
async fn a_watcher_that_falls_behind_gets_an_error_and_ends() {
    use futures::StreamExt;
    use rkube_store::{Store, StoreError};

    let store = MemoryStore::with_watch_capacity(4);
    let mut w = store.watch("/t/", 0).await.unwrap();
    for i in 0..20 {
        store
            .create(&format!("/t/{i:02}"), bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let mut delivered = 0;
    let err = loop {
        match w.next().await {
            Some(Ok(_)) => delivered += 1,
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    assert!(
        matches!(err, StoreError::WatchLagged { revision, .. } if revision == delivered),
        "{err:?}"
    );
    assert!(w.next().await.is_none(), "the stream ends after the error");
}
