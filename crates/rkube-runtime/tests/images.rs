//! Image service against the local test registries (`scripts/test-images`):
//! 127.0.0.1:5000 anonymous, 127.0.0.1:5001 basic auth (rkube / rkube-test).

use rkube_runtime::image::registries::RegistriesConfig;
use rkube_runtime::image::{ImageError, ImageStore, PullAuth};
use std::collections::BTreeSet;
use std::path::PathBuf;

const ANON: &str = "127.0.0.1:5000/rkube-test";
const AUTH: &str = "127.0.0.1:5001/rkube-test";

mod support;

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("rkube-img-{}", support::unique()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store(d: &TempDir) -> ImageStore {
    ImageStore::open(d.0.join("runtime"), RegistriesConfig::default()).unwrap()
}

fn count(dir: PathBuf) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
#[ignore = "needs root and the local test registries (scripts/test-images)"]
async fn pulls_multi_layer_image_and_applies_whiteouts() {
    let d = TempDir::new();
    let s = store(&d);
    let img = s
        .pull(&format!("{ANON}/multi:1"), None, None)
        .await
        .unwrap();
    assert_eq!(img.repo_tags, vec![format!("{ANON}/multi:1")]);
    assert_eq!(img.layers.len(), 3);
    assert!(img.repo_digests[0].starts_with(&format!("{ANON}/multi@sha256:")));
    let dirs = s.prepare_snapshots(&img).unwrap();
    // Top layer first: it deleted data/gone (a whiteout) and holds data/keep/two.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let top = &dirs[0];
    let wh = std::fs::symlink_metadata(top.join("data/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        std::fs::read_to_string(top.join("data/keep/two")).unwrap(),
        "two\n"
    );
    let mid = &dirs[1];
    let a = std::fs::metadata(mid.join("data/original")).unwrap();
    let b = std::fs::metadata(mid.join("data/hardlink")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert!(dirs[2].join("bin/busybox").is_file());
    assert_eq!(s.get(&format!("{ANON}/multi:1")).unwrap().id, img.id);
    assert_eq!(s.get(&img.id.hex()[..12]).unwrap().id, img.id);
}

#[tokio::test]
#[ignore = "needs root and the local test registries (scripts/test-images)"]
async fn shared_base_layer_is_stored_once() {
    let d = TempDir::new();
    let s = store(&d);
    let httpd = s
        .pull(&format!("{ANON}/httpd:1"), None, None)
        .await
        .unwrap();
    let multi = s
        .pull(&format!("{ANON}/multi:1"), None, None)
        .await
        .unwrap();
    assert_eq!(
        httpd.layers[0].digest, multi.layers[0].digest,
        "same base layer"
    );
    let layer_blobs: BTreeSet<_> = httpd
        .layers
        .iter()
        .chain(&multi.layers)
        .map(|l| l.digest.clone())
        .collect();
    assert_eq!(layer_blobs.len(), 4);
    // 4 layers + 2 configs + 2 manifests, nothing twice.
    assert_eq!(count(d.0.join("runtime/blobs/sha256")), 8);
    assert_eq!(count(d.0.join("runtime/snapshots")), 4);
    // Pulling again downloads nothing.
    let again = s
        .pull(&format!("{ANON}/httpd:1"), None, None)
        .await
        .unwrap();
    assert_eq!(again.id, httpd.id);
    assert_eq!(count(d.0.join("runtime/blobs/sha256")), 8);

    // Removing one image frees only what it alone used.
    s.remove(&format!("{ANON}/httpd:1")).unwrap();
    let stats = s.gc(&BTreeSet::new()).unwrap();
    assert_eq!((stats.blobs, stats.snapshots), (3, 1));
    assert!(
        s.prepare_snapshots(&multi)
            .unwrap()
            .iter()
            .all(|p| p.is_dir())
    );
    assert!(matches!(
        s.get(&format!("{ANON}/httpd:1")),
        Err(ImageError::NotFound(_))
    ));
}

#[tokio::test]
#[ignore = "needs root and the local test registries (scripts/test-images)"]
async fn pulls_docker_media_types_zstd_layers_and_picks_amd64() {
    let d = TempDir::new();
    let s = store(&d);
    let docker = s
        .pull(&format!("{ANON}/busybox:1"), None, None)
        .await
        .unwrap();
    assert_eq!(
        docker.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let zstd = s
        .pull(&format!("{ANON}/busybox-zstd:1"), None, None)
        .await
        .unwrap();
    assert!(
        zstd.layers[0].media_type.ends_with("+zstd"),
        "{}",
        zstd.layers[0].media_type
    );
    assert_eq!(
        zstd.layers[0].diff_id, docker.layers[0].diff_id,
        "same content, other compression"
    );
    let multi = s
        .pull(&format!("{ANON}/multiarch:1"), None, None)
        .await
        .unwrap();
    // The amd64 entry is busybox (cmd /bin/sh); arm64 would have been httpd.
    assert_eq!(multi.config.cmd, vec!["/bin/sh"]);
    assert!(multi.config.entrypoint.is_empty());
    assert!(multi.index.is_some());
}

#[tokio::test]
#[ignore = "needs root and the local test registries (scripts/test-images)"]
async fn pulls_with_basic_auth_only_with_credentials() {
    let d = TempDir::new();
    let s = store(&d);
    let r = format!("{AUTH}/busybox:1");
    let err = s.pull(&r, None, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    let bad = PullAuth::Basic {
        username: "rkube".into(),
        password: "wrong".into(),
    };
    assert!(s.pull(&r, Some(&bad), None).await.is_err());
    assert!(s.list().unwrap().is_empty(), "failed pulls record nothing");
    let good = PullAuth::Basic {
        username: "rkube".into(),
        password: "rkube-test".into(),
    };
    let img = s.pull(&r, Some(&good), None).await.unwrap();
    assert_eq!(img.repo_tags, vec![r.clone()]);

    // Credentials from registries.yaml.
    let d2 = TempDir::new();
    let yaml = "configs:\n  \"127.0.0.1:5001\":\n    auth:\n      username: rkube\n      password: rkube-test\n";
    let s2 = ImageStore::open(d2.0.join("runtime"), serde_yaml::from_str(yaml).unwrap()).unwrap();
    s2.pull(&r, None, None).await.unwrap();
}

#[tokio::test]
#[ignore = "needs root and the local test registries (scripts/test-images)"]
async fn pulls_through_a_mirror() {
    let d = TempDir::new();
    let yaml = "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n";
    let s = ImageStore::open(d.0.join("runtime"), serde_yaml::from_str(yaml).unwrap()).unwrap();
    // `rkube-test/busybox:1` means docker.io/rkube-test/busybox:1, served by the mirror.
    let img = s.pull("rkube-test/busybox:1", None, None).await.unwrap();
    assert_eq!(
        img.repo_tags,
        vec!["docker.io/rkube-test/busybox:1".to_string()]
    );
}

#[test]
#[ignore = "needs root and the archives of scripts/test-images"]
fn imports_docker_save_and_oci_archives() {
    let d = TempDir::new();
    let s = store(&d);
    let dir = PathBuf::from("/var/lib/rkube-test/archives");
    let docker = s.import(&dir.join("busybox-docker.tar"), None).unwrap();
    assert_eq!(
        docker[0].repo_tags,
        vec!["docker.io/rkube-test/imported-docker:1".to_string()]
    );
    let oci = s.import(&dir.join("busybox-oci.tar"), None).unwrap();
    // Same config, so the same image: it now carries both names.
    assert_eq!(oci[0].id, docker[0].id);
    assert!(
        oci[0]
            .repo_tags
            .contains(&"docker.io/rkube-test/imported-oci:1".to_string())
    );
    assert_eq!(s.list().unwrap().len(), 1);
    assert_eq!(
        count(d.0.join("runtime/snapshots")),
        1,
        "one layer, unpacked once"
    );
    let bad = d.0.join("bad.tar");
    std::fs::write(&bad, b"not a tar at all, nothing like one").unwrap();
    assert!(s.import(&bad, None).is_err());
}
