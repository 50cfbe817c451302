//! The API in-process through `kube::Client`: what any client library sees.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Binding, ConfigMap, Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use rkube_apiserver::auth::UserInfo;
use rkube_apiserver::{ApiServer, Config};
use rkube_store::memory::MemoryStore;
use rkube_store::{
    KeyValue, ListOptions, ListResult, Result as StoreResult, Revision, Store, WatchStream,
};
use serde_json::json;

async fn server() -> (Arc<ApiServer>, kube::Client) {
    server_with(Config::default()).await
}

async fn server_with(config: Config) -> (Arc<ApiServer>, kube::Client) {
    server_over(config, Arc::new(MemoryStore::new())).await
}

async fn server_over(config: Config, store: Arc<dyn Store>) -> (Arc<ApiServer>, kube::Client) {
    let api = ApiServer::new(config, store).await.expect("api server");
    let svc = api.local_service(UserInfo::new("test-admin", &["system:masters"]));
    let client = kube::Client::new(svc, "default");
    (api, client)
}

/// The resourceVersion a list of ConfigMaps reports (where a watch starts).
async fn list_revision(api: &Api<ConfigMap>) -> String {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "data": data.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .unwrap()
}

fn status_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.reason.clone(),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn create_get_update_delete() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let created = api
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    let err = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        (status_code(&err), reason(&err).as_str()),
        (409, "AlreadyExists")
    );

    let mut got = api.get("a").await.unwrap();
    got.data = Some([("k".to_string(), "v2".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        got.metadata.resource_version
    );
    // A stale resourceVersion is a conflict and changes nothing.
    let err = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap_err();
    assert_eq!(
        (status_code(&err), reason(&err).as_str()),
        (409, "Conflict")
    );
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "v2");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert_eq!(status_code(&err), 404);
}

#[tokio::test]
async fn generate_name_dry_run_and_bad_names() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &g).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &cm("dry", &[])).await.unwrap();
    assert_eq!(status_code(&api.get("dry").await.unwrap_err()), 404);

    let err = api
        .create(&PostParams::default(), &cm("Bad_Name", &[]))
        .await
        .unwrap_err();
    assert_eq!((status_code(&err), reason(&err).as_str()), (422, "Invalid"));
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

#[tokio::test]
async fn missing_and_terminating_namespaces_refuse_creates() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 404);
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "going"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("going", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("going").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let api: Api<ConfigMap> = Api::namespaced(client, "going");
    let err = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 403);
}

#[tokio::test]
async fn selectors_and_paging() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..25 {
        let mut c = cm(&format!("c{i:02}"), &[]);
        c.metadata.labels = Some(
            [(
                "parity".to_string(),
                (if i % 2 == 0 { "even" } else { "odd" }).to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let even = api
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 13);
    let named = api
        .list(&ListParams::default().fields("metadata.name=c03"))
        .await
        .unwrap();
    assert_eq!(named.items.len(), 1);
    let err = api
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 400);

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(10);
    loop {
        let page = api.list(&lp).await.unwrap();
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

#[tokio::test]
async fn paging_with_a_selector_reads_on_past_many_non_matching_objects() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..700 {
        let mut c = cm(&format!("c{i:03}"), &[]);
        let every_hundredth = if i % 100 == 7 { "yes" } else { "no" };
        c.metadata.labels = Some([("pick".to_string(), every_hundredth.to_string())].into());
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    // Pages after the first come from the store; each must look past hundreds of
    // objects the selector leaves out.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut lp = ListParams::default().labels("pick=yes").limit(2);
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let want: Vec<String> = (0..7).map(|k| format!("c{:03}", k * 100 + 7)).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 4);
}

/// Pages through config maps c00..c09 with changes after the first page: the later
/// pages still show the state the first page was read at.
async fn continued_pages_keep_the_first_pages_revision(watch_cache_events: usize) {
    let (_s, client) = server_with(Config {
        watch_cache_events,
        watch_cache_window: std::time::Duration::ZERO,
        ..Config::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..10 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("c{i:02}"), &[("v", "1")]),
        )
        .await
        .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(4)).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    // After the first page: one deleted, one changed, one added, then more churn.
    cms.delete("c05", &DeleteParams::default()).await.unwrap();
    cms.patch(
        "c07",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    cms.create(&PostParams::default(), &cm("c06a", &[]))
        .await
        .unwrap();
    for i in 0..10 {
        cms.create(&PostParams::default(), &cm(&format!("z{i}"), &[]))
            .await
            .unwrap();
    }
    let mut names: Vec<String> = first
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    let mut token = first.metadata.continue_.unwrap();
    loop {
        let page = cms
            .list(&ListParams::default().limit(4).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv.as_str()));
        for c in page.items {
            let name = c.metadata.name.unwrap();
            if name == "c07" {
                assert_eq!(c.data.unwrap()["v"], "1", "c07 as at the first page");
            }
            names.push(name);
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => token = c,
            _ => break,
        }
    }
    let want: Vec<String> = (0..10).map(|i| format!("c{i:02}")).collect();
    assert_eq!(names, want);
}

#[tokio::test]
async fn continued_pages_from_the_cache_show_the_first_pages_revision() {
    continued_pages_keep_the_first_pages_revision(10_000).await;
}

#[tokio::test]
async fn continued_pages_from_the_store_show_the_first_pages_revision() {
    // A ring shorter than the changes: the pages come from the store.
    continued_pages_keep_the_first_pages_revision(5).await;
}

#[tokio::test]
async fn a_list_at_resource_version_0_is_served_whole_from_the_cache() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for i in 0..12 {
        api.create(&PostParams::default(), &cm(&format!("c{i:02}"), &[]))
            .await
            .unwrap();
    }
    // As upstream's watch cache: `limit` does not page a resourceVersion=0 list.
    // (kube-rs leaves resourceVersion=0 out when it sets a limit: a raw request.)
    let req = http::Request::get("/api/v1/namespaces/default/configmaps?limit=5&resourceVersion=0")
        .body(Vec::new())
        .unwrap();
    let any: k8s_openapi::List<ConfigMap> = client.request(req).await.unwrap();
    assert_eq!(any.items.len(), 12);
    assert!(any.metadata.continue_.as_deref().unwrap_or("").is_empty());
    // A consistent list still pages.
    let first = api.list(&ListParams::default().limit(5)).await.unwrap();
    assert_eq!(first.items.len(), 5);
    assert!(!first.metadata.continue_.unwrap_or_default().is_empty());
}

/// A watch cache that falls behind the store (here: 3,000 writes straight into a
/// store whose live watchers may lag 4 events) reads what it missed from the
/// store's history, and a watch behind its live feed catches up from the cache's
/// ring: the client's watch goes on with every event and no 410.
#[tokio::test(flavor = "current_thread")]
async fn a_cache_behind_the_store_catches_up_without_ending_watches() {
    let store = Arc::new(MemoryStore::with_watch_capacity(4));
    let (_api, client) = server_over(Config::default(), store.clone()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let rv = list_revision(&cms).await;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    // No await point between the writes: the cache cannot keep up with the store,
    // nor the watch with its live feed.
    for i in 0..3000 {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": "default",
                "uid": format!("uid-{i}"), "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let key = format!("/registry/core/configmaps/default/cm-{i}");
        let write = rkube_store::Store::create(
            store.as_ref(),
            &key,
            serde_json::to_vec(&obj).unwrap().into(),
        );
        futures::FutureExt::now_or_never(write)
            .expect("the memory store writes at once")
            .unwrap();
    }
    let mut names = Vec::new();
    while names.len() < 3000 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap_or_else(|_| panic!("no event after {}", names.len()))
            .unwrap()
        {
            Some(WatchEvent::Added(c)) => names.push(c.metadata.name.unwrap()),
            other => panic!("unexpected {other:?} after {} events", names.len()),
        }
    }
    assert_eq!(names.last().map(String::as_str), Some("cm-2999"));
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        3000
    );
}

/// A store whose watchers can be held back: while `open` is false, the watch
/// cache sees no change.
struct HeldStore {
    inner: MemoryStore,
    open: tokio::sync::watch::Sender<bool>,
}

#[async_trait::async_trait]
impl Store for HeldStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListResult> {
        self.inner.list(prefix, opts).await
    }
    async fn count(&self, prefix: &str) -> StoreResult<i64> {
        self.inner.count(prefix).await
    }
    async fn create(&self, key: &str, value: Bytes) -> StoreResult<KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> StoreResult<KeyValue> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> StoreResult<KeyValue> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> StoreResult<WatchStream> {
        let events = self.inner.watch(prefix, after).await?;
        let open = self.open.subscribe();
        Ok(events
            .then(move |ev| {
                let mut open = open.clone();
                async move {
                    let _ = open.wait_for(|o| *o).await;
                    ev
                }
            })
            .boxed())
    }
    async fn current_revision(&self) -> StoreResult<Revision> {
        self.inner.current_revision().await
    }
    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.inner.compact(revision).await
    }
    async fn compacted_revision(&self) -> StoreResult<Revision> {
        self.inner.compacted_revision().await
    }
}

/// Changes a ConfigMap's data straight in the store. Returns the new revision.
async fn write_in_store(store: &HeldStore, current: &ConfigMap, x: &str) -> Revision {
    let mut obj = serde_json::to_value(current).unwrap();
    obj["data"] = json!({"x": x});
    let meta = obj["metadata"].as_object_mut().unwrap();
    let rev: Revision = meta
        .remove("resourceVersion")
        .and_then(|v| v.as_str()?.parse().ok())
        .unwrap();
    let key = format!(
        "/registry/core/configmaps/default/{}",
        meta["name"].as_str().unwrap()
    );
    let value = serde_json::to_vec(&obj).unwrap().into();
    store.update(&key, value, rev).await.unwrap().mod_revision
}

/// Writes start from the watch cache's copy, as upstream's; when that copy is
/// behind the store, a precondition on the newest resourceVersion still holds,
/// and a write that looks like no change against the old copy still lands.
#[tokio::test]
async fn writes_over_a_cache_behind_the_store_are_decided_by_the_store() {
    let (open, _) = tokio::sync::watch::channel(true);
    let store = Arc::new(HeldStore {
        inner: MemoryStore::new(),
        open,
    });
    let (api, client) = server_over(Config::default(), store.clone()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms
        .create(&PostParams::default(), &cm("s", &[("x", "1")]))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    api.cache.wait_for(rv.parse().unwrap()).await.unwrap();
    assert!(
        api.cache
            .get("/registry/core/configmaps/default/s")
            .is_some()
    );
    store.open.send_replace(false);

    // The cache holds "1"; the store gets "2".
    let newest = write_in_store(&store, &created, "2").await;
    let mut replace = created.clone();
    replace.metadata.resource_version = Some(newest.to_string());
    replace.data = Some([("x".to_string(), "3".to_string())].into());
    let replaced = cms.replace("s", &PostParams::default(), &replace).await;
    assert_eq!(replaced.unwrap().data.unwrap()["x"], "3");

    // The cache still holds "1", the store "5": a patch to "1" is a change.
    let current = cms.get("s").await.unwrap();
    write_in_store(&store, &current, "5").await;
    cms.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    assert_eq!(cms.get("s").await.unwrap().data.unwrap()["x"], "1");
    store.open.send_replace(true);
}

#[tokio::test]
async fn watch_from_a_resource_version_replays_changes() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let rv = list_revision(&api).await;
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("w", &[]))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(_)) => kinds.push("ADDED"),
            Some(WatchEvent::Modified(_)) => kinds.push("MODIFIED"),
            Some(WatchEvent::Deleted(_)) => kinds.push("DELETED"),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn watch_with_a_label_selector_sees_objects_leave_it() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("l", &[]))
        .await
        .unwrap();
    let rv = list_revision(&api).await;
    let mut stream = api
        .watch(&WatchParams::default().labels("app=web").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "l",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, Some(WatchEvent::Deleted(_))), "{ev:?}");
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let (_s, client) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        },
        "status": {"replicas": 99}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    // Status is not set through the main resource.
    assert!(created.status.as_ref().and_then(|s| s.replicas).is_none());
    // A status write changes the status alone: the spec and labels it carries
    // are not taken, and the writer is recorded against the status subresource.
    let written = api
        .patch_status(
            "web",
            &PatchParams {
                field_manager: Some("status-writer".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({
                "metadata": {"labels": {"taken": "no"}},
                "spec": {"replicas": 7},
                "status": {"replicas": 2}
            })),
        )
        .await
        .unwrap();
    let got = api.get("web").await.unwrap();
    assert_eq!(got, written);
    assert_eq!(got.metadata.labels, None);
    assert_eq!(got.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(got.status.as_ref().unwrap().replicas, Some(2));
    let managers: Vec<_> = got
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.subresource.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("status-writer".into(), "status".into())),
        "{managers:?}"
    );
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.as_ref().unwrap().replicas, 2);
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let got = api.get("web").await.unwrap();
    assert_eq!(got.spec.unwrap().replicas, Some(5));
    assert_eq!(got.metadata.generation, Some(2));
    assert_eq!(got.status.unwrap().replicas, Some(2));
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut c = cm("held", &[]);
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let got = api.get("held").await.unwrap();
    assert!(got.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(status_code(&api.get("held").await.unwrap_err()), 404);
}

#[tokio::test]
async fn services_get_addresses_from_the_range() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::default_namespaced(client);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &svc).await.unwrap();
    let spec = created.spec.unwrap();
    let ip: std::net::Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
    assert_eq!(ip.octets()[..2], [10, 43]);
    let port = spec.ports.unwrap()[0].node_port.unwrap();
    assert!((30000..=32767).contains(&port));
    let k8s = api.get("kubernetes").await.unwrap();
    assert_eq!(k8s.spec.unwrap().cluster_ip.as_deref(), Some("10.43.0.1"));
}

#[tokio::test]
async fn pods_get_admission_defaults_and_can_be_bound() {
    let (_s, client) = server().await;
    let api: Api<Pod> = Api::default_namespaced(client);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &pod).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(spec.tolerations.unwrap().len(), 2);
    assert_eq!(
        created.status.unwrap().qos_class.as_deref(),
        Some("BestEffort")
    );
    // An unscheduled pod is deleted at once, without a grace period.
    api.delete("p", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_code(&api.get("p").await.unwrap_err()), 404);

    // A binding sets the node and PodScheduled, and copies its annotations.
    api.create(&PostParams::default(), &pod).await.unwrap();
    let bind = |node: &str| {
        serde_json::from_value::<Binding>(json!({
            "metadata": {"name": "p", "annotations": {"bound-by": "test"}},
            "target": {"kind": "Node", "name": node}
        }))
        .unwrap()
    };
    let post = |b: Binding| {
        let api = api.clone();
        async move {
            api.create_subresource::<Binding, serde_json::Value>(
                "binding",
                "p",
                &PostParams::default(),
                &b,
            )
            .await
        }
    };
    let err = post(bind("")).await.unwrap_err();
    assert_eq!(status_code(&err), 422);
    post(bind("n1")).await.unwrap();
    let bound = api.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(bound.metadata.annotations.unwrap()["bound-by"], "test");
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let err = post(bind("n2")).await.unwrap_err();
    assert_eq!(status_code(&err), 409);
    assert!(
        err.to_string().contains("already assigned to node \"n1\""),
        "{err}"
    );
}

#[tokio::test]
async fn custom_resources_are_served_after_their_crd() {
    let (_s, client) = server().await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            }]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))
    .unwrap();
    let mut made = None;
    for _ in 0..50 {
        match widgets.create(&PostParams::default(), &w).await {
            Ok(o) => {
                made = Some(o);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(made.unwrap().data["spec"]["size"], 3);
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": "big"}
    }))
    .unwrap();
    let err = widgets
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 422);
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn unknown_fields_are_dropped_or_refused_by_field_validation() {
    let (_s, client) = server().await;
    let body = serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "spex": 1
    }))
    .unwrap();
    let post = |q: &str| {
        http::Request::post(format!("/api/v1/namespaces/default/configmaps{q}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .unwrap()
    };
    let err = client
        .request::<serde_json::Value>(post("?fieldValidation=Strict"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 400);
    match &err {
        kube::Error::Api(s) => assert!(
            s.message.contains(r#"unknown field "spex""#),
            "{}",
            s.message
        ),
        _ => unreachable!(),
    }
    let made: serde_json::Value = client.request(post("")).await.unwrap();
    assert!(made.get("spex").is_none());
}

/// A server keeping five changes always, and those younger than `window`; eleven
/// ConfigMaps created; the first one's revision and a watch of ConfigMaps from it.
async fn watch_after_eleven_changes(
    window: Duration,
) -> (
    Arc<ApiServer>,
    Api<ConfigMap>,
    String,
    futures::stream::BoxStream<'static, Result<WatchEvent<ConfigMap>, kube::Error>>,
) {
    let config = Config {
        watch_cache_events: 5,
        watch_cache_window: window,
        ..Config::default()
    };
    let (api, client) = server_with(config).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let first = cms
        .create(&PostParams::default(), &cm("old", &[]))
        .await
        .unwrap();
    for i in 0..10 {
        cms.create(&PostParams::default(), &cm(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    let rv = first.metadata.resource_version.unwrap();
    let stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    (api, cms, rv, stream)
}

#[tokio::test]
async fn a_watch_within_the_cache_time_window_resumes_past_the_event_count() {
    // Younger than a minute: a watch from the first of eleven changes sees them all.
    let (_api, _cms, _rv, mut stream) = watch_after_eleven_changes(Duration::from_secs(60)).await;
    for i in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(c)))) => {
                assert_eq!(c.metadata.name, Some(format!("n{i}")))
            }
            other => panic!("expected n{i} added, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_watch_older_than_the_cache_window_is_gone() {
    let (_api, cms, rv, mut stream) = watch_after_eleven_changes(Duration::ZERO).await;
    match stream.try_next().await {
        Ok(Some(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }

    // The window is per resource: no Secret changed since, so a watch of Secrets
    // resumes from the same revision and sees the next one.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::default_namespaced(cms.into_client());
    let mut stream = secrets
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let s: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "later"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
        Ok(Ok(Some(WatchEvent::Added(s)))) => {
            assert_eq!(s.metadata.name.as_deref(), Some("later"))
        }
        other => panic!("expected the Secret, got {other:?}"),
    }
}

#[tokio::test]
async fn protobuf_is_answered_when_it_is_all_a_client_takes() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("pb", &[("k", "v")]))
        .await
        .unwrap();
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/pb")
        .header("accept", "application/vnd.kubernetes.protobuf")
        .body(Vec::new())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.kubernetes.protobuf"
    );
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&bytes[..4], b"k8s\0");
    let back = rkube_api::protobuf::decode(&bytes).unwrap();
    assert_eq!(back["metadata"]["name"], "pb");
    assert_eq!(back["data"]["k"], "v");
}

#[tokio::test]
async fn patches_are_checked_where_they_change_the_object() {
    let (_s, client) = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..PatchParams::default()
    };

    // A status patch: its wrong type and unknown field are found.
    let err = pods
        .patch_status("p", &strict, &Patch::Merge(json!({"status": {"phase": 5}})))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 400, "{err:?}");
    assert!(format!("{err:?}").contains("phase"), "{err:?}");
    let err = pods
        .patch_status(
            "p",
            &strict,
            &Patch::Merge(json!({"status": {"phaze": "Running"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 400, "{err:?}");
    // So is one in the spec of a main-resource patch.
    let err = pods
        .patch(
            "p",
            &strict,
            &Patch::Merge(json!({"spec": {"activeDeadlineSecondz": 5}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 400, "{err:?}");

    // A good status patch keeps every field where it was.
    pods.patch_status(
        "p",
        &strict,
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let req = http::Request::get("/api/v1/namespaces/default/pods/p")
        .body(Vec::new())
        .unwrap();
    let got: serde_json::Value = client.request(req).await.unwrap();
    let keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
    assert_eq!(got["status"]["phase"], "Running");
    assert_eq!(got["spec"]["containers"][0]["image"], "i");
}
