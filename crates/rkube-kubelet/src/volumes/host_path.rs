//! hostPath volumes: a path of the node, checked (or created) according to its `type`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::{VolumeError, io};

/// Checks (or creates) the path as its type asks; the path to bind.
pub fn setup(src: &HostPathVolumeSource) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&src.path);
    let kind = src.type_.as_deref().unwrap_or("");
    let fail = |what: &str| {
        Err(VolumeError::Source(format!(
            "hostPath type check failed: {} is not a {what}",
            src.path
        )))
    };
    match kind {
        "" => Ok(path),
        "DirectoryOrCreate" => {
            if !path.exists() {
                fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("chmod {}", path.display())))?;
            }
            if !path.is_dir() {
                return fail("directory");
            }
            Ok(path)
        }
        "FileOrCreate" => {
            if !path.exists() {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(format!("creating {}", path.display())))?;
            }
            if !path.is_file() {
                return fail("file");
            }
            Ok(path)
        }
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {
            let Ok(m) = fs::metadata(&path) else {
                return Err(VolumeError::Source(format!(
                    "hostPath type check failed: {} does not exist",
                    src.path
                )));
            };
            let t = m.file_type();
            let ok = match kind {
                "Directory" => t.is_dir(),
                "File" => t.is_file(),
                "Socket" => t.is_socket(),
                "CharDevice" => t.is_char_device(),
                _ => t.is_block_device(),
            };
            let word = match kind {
                "Directory" => "directory",
                "File" => "file",
                "Socket" => "socket file",
                "CharDevice" => "character device",
                _ => "block device",
            };
            if ok { Ok(path) } else { fail(word) }
        }
        other => Err(VolumeError::Source(format!(
            "unknown hostPath type {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_created() {
        let base = std::env::temp_dir().join(format!("rkube-hp-{:x}", rand::random::<u64>()));
        let src = |p: &std::path::Path, t: &str| HostPathVolumeSource {
            path: p.display().to_string(),
            type_: Some(t.to_string()),
        };
        let d = base.join("made/here");
        assert_eq!(setup(&src(&d, "DirectoryOrCreate")).unwrap(), d);
        assert!(d.is_dir());
        let f = base.join("f");
        setup(&src(&f, "FileOrCreate")).unwrap();
        assert!(f.is_file());
        assert!(setup(&src(&f, "Directory")).is_err());
        assert!(setup(&src(&d, "File")).is_err());
        assert!(setup(&src(&base.join("missing"), "Directory")).is_err());
        setup(&src(&base.join("missing"), "")).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
