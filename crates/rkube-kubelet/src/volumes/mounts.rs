//! A container's `volumeMounts` as bind mounts: volume, `subPath` (or `subPathExpr`
//! expanded from the container's environment) kept inside its volume, read-only-ness.

use std::collections::HashMap;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::Container;
use rkube_runtime::Mount;

use super::MountedVolume;
use crate::env::{ConfigError, expand};

fn valid_sub_path(p: &str) -> bool {
    let path = Path::new(p);
    !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The bind mounts of container `c`.
pub fn container_mounts(
    c: &Container,
    volumes: &HashMap<String, MountedVolume>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, ConfigError> {
    let env_map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes.get(&m.name).ok_or_else(|| {
            ConfigError(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, c.name
            ))
        })?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => {
                Some(expand(e, &|n| env_map.get(n).map(|v| v.to_string())))
            }
            _ => None,
        };
        let host_path = match sub {
            None => v.host_path.clone(),
            Some(sub) => {
                if !valid_sub_path(&sub) {
                    return Err(ConfigError(format!(
                        "failed to prepare subPath for volumeMount \"{}\" of container \"{}\": {sub:?} must be a relative path without '..'",
                        m.name, c.name
                    )));
                }
                let p = v.host_path.join(&sub);
                if std::fs::symlink_metadata(&p).is_err() {
                    std::fs::create_dir_all(&p).map_err(|e| {
                        ConfigError(format!(
                            "failed to create subPath directory {}: {e}",
                            p.display()
                        ))
                    })?;
                }
                // A link inside the volume must not lead out of it.
                let base = v.host_path.canonicalize().unwrap_or(v.host_path.clone());
                let real = p.canonicalize().map_err(|e| {
                    ConfigError(format!("failed to resolve subPath {}: {e}", p.display()))
                })?;
                if !real.starts_with(&base) {
                    return Err(ConfigError(format!(
                        "subPath {sub:?} of volumeMount \"{}\" leads outside its volume",
                        m.name
                    )));
                }
                real
            }
        };
        out.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || v.read_only,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let base = std::env::temp_dir().join(format!("rkube-mnt-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&base).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("escape")).unwrap();
        let vols = HashMap::from([(
            "data".to_string(),
            MountedVolume {
                host_path: base.clone(),
                read_only: false,
                projected: false,
            },
        )]);
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/a", "subPath": "one/two"},
            {"name": "data", "mountPath": "/b", "subPathExpr": "$(POD)", "readOnly": true}]}))
        .unwrap();
        let m = container_mounts(&c, &vols, &[("POD".into(), "p1".into())]).unwrap();
        let real = base.canonicalize().unwrap();
        assert_eq!(m[0].host_path, real.join("one/two"));
        assert_eq!(m[1].host_path, real.join("p1"));
        assert!(m[1].read_only);
        assert!(real.join("p1").is_dir());
        for bad in ["../x", "/etc", "escape"] {
            let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
                {"name": "data", "mountPath": "/a", "subPath": bad}]}))
            .unwrap();
            assert!(container_mounts(&c, &vols, &[]).is_err(), "{bad}");
        }
        let c: Container = serde_json::from_value(
            json!({"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/a"}]}),
        )
        .unwrap();
        assert!(container_mounts(&c, &vols, &[]).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
