use super::*;
use crate::testutil::TempDir;

/// A tar entry with a raw name, bypassing the tar crate's own path checks (which
/// would refuse the hostile names these tests need).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

#[test]
fn refuses_parent_paths() {
    let d = TempDir::new();
    let target = d.0.join("layer");
    fs::create_dir(&target).unwrap();
    let tar = tar_of(|b| raw_entry(b, "../escaped", tar::EntryType::Regular, "", b"x"));
    let err = unpack_layer(&tar[..], &target, None).unwrap_err();
    assert!(matches!(err, UnpackError::PathEscapes(_)), "{err}");
    assert!(!d.0.join("escaped").exists());

    let tar = tar_of(|b| raw_entry(b, "a/../../escaped2", tar::EntryType::Regular, "", b"x"));
    assert!(unpack_layer(&tar[..], &target, None).is_err());
    assert!(!d.0.join("escaped2").exists());
}

#[test]
fn refuses_writes_through_symlinks() {
    let d = TempDir::new();
    let target = d.0.join("layer");
    let outside = d.0.join("outside");
    fs::create_dir(&target).unwrap();
    fs::create_dir(&outside).unwrap();
    let tar = tar_of(|b| {
        raw_entry(
            b,
            "link",
            tar::EntryType::Symlink,
            outside.to_str().unwrap(),
            b"",
        );
        raw_entry(b, "link/owned", tar::EntryType::Regular, "", b"x");
    });
    let err = unpack_layer(&tar[..], &target, None).unwrap_err();
    assert!(matches!(err, UnpackError::ThroughSymlink(_)), "{err}");
    assert!(!outside.join("owned").exists());

    // A symlink then a regular file of the same name must replace the link, not
    // write through it.
    let victim = outside.join("victim");
    fs::write(&victim, "safe").unwrap();
    let tar = tar_of(|b| {
        raw_entry(
            b,
            "f",
            tar::EntryType::Symlink,
            victim.to_str().unwrap(),
            b"",
        );
        raw_entry(b, "f", tar::EntryType::Regular, "", b"evil");
    });
    let target2 = d.0.join("layer2");
    fs::create_dir(&target2).unwrap();
    unpack_layer(&tar[..], &target2, None).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "safe");
    assert_eq!(fs::read_to_string(target2.join("f")).unwrap(), "evil");

    // A hard link may not point outside either.
    let tar = tar_of(|b| raw_entry(b, "h", tar::EntryType::Link, "../outside/victim", b""));
    let target3 = d.0.join("layer3");
    fs::create_dir(&target3).unwrap();
    assert!(matches!(
        unpack_layer(&tar[..], &target3, None),
        Err(UnpackError::PathEscapes(_))
    ));
}

#[test]
fn whiteouts_hardlinks_devices_and_digest() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: whiteouts need root (mknod, trusted.* xattrs)");
        return;
    }
    let d = TempDir::new();
    let target = d.0.join("layer");
    fs::create_dir(&target).unwrap();
    let tar = tar_of(|b| {
        raw_entry(b, "dir/", tar::EntryType::Directory, "", b"");
        raw_entry(b, "dir/.wh..wh..opq", tar::EntryType::Regular, "", b"");
        raw_entry(b, "dir/file", tar::EntryType::Regular, "", b"content");
        raw_entry(b, "dir/hard", tar::EntryType::Link, "dir/file", b"");
        raw_entry(b, ".wh.deleted", tar::EntryType::Regular, "", b"");
        raw_entry(b, "dev/null", tar::EntryType::Char, "", b"");
    });
    let (digest, stats) = unpack_layer(&tar[..], &target, Some(&Digest::of(&tar))).unwrap();
    assert_eq!(digest, Digest::of(&tar));
    assert_eq!(stats.skipped_devices, 1);
    assert_eq!(
        fs::read_to_string(target.join("dir/hard")).unwrap(),
        "content"
    );
    let opq =
        rustix::fs::lgetxattr(target.join("dir"), "trusted.overlay.opaque", &mut [0u8; 4]).unwrap();
    assert_eq!(opq, 1);
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = fs::symlink_metadata(target.join("deleted")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!target.join("dev/null").exists());

    let err = unpack_layer(&tar[..], &d.0, Some(&Digest::of(b"other"))).unwrap_err();
    assert!(matches!(err, UnpackError::DiffIdMismatch { .. }));
}

#[test]
fn gzip_and_zstd_are_detected() {
    let tar = tar_of(|b| raw_entry(b, "hello", tar::EntryType::Regular, "", b"hi"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let d = TempDir::new();
    let (digest, _) = unpack_layer(&gz[..], &d.0, None).unwrap();
    assert_eq!(digest, Digest::of(&tar));
    assert_eq!(fs::read_to_string(d.0.join("hello")).unwrap(), "hi");
}
