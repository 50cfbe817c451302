//! The files of configMap, secret, downwardAPI and projected volumes: which keys
//! become which paths with which modes, as upstream's volume plugins decide.

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod};

use super::VolumeError;
use super::atomic_writer::{FileProjection, Payload};
use super::token::TokenManager;
use crate::fieldpath::{self, PodFacts};
use crate::objects::ClusterObjects;

/// The mode files get when neither the volume nor the item says (0644).
pub const DEFAULT_MODE: i32 = 0o644;

fn mode(m: Option<i32>, default: i32) -> u32 {
    (m.unwrap_or(default) & 0o7777) as u32
}

/// Picks `items` (or every key) out of `data`.
fn select(
    data: Vec<(String, Vec<u8>)>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k,
                    FileProjection {
                        data: v,
                        mode: mode(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                match data.iter().find(|(k, _)| *k == it.key) {
                    Some((_, v)) => {
                        out.insert(
                            it.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: mode(it.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing_key(&it.key)),
                }
            }
        }
    }
    Ok(out)
}

/// The files of a ConfigMap (`data` and `binaryData`).
pub async fn configmap(
    objects: &ClusterObjects,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
) -> Result<Payload, String> {
    let cm = objects
        .configmap(ns, name)
        .await
        .map_err(|e| e.to_string())?;
    let Some(cm) = cm else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("configmap \"{name}\" not found"))
        };
    };
    let mut data: Vec<(String, Vec<u8>)> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    select(data, items, optional, default_mode, |k| {
        format!("configmap references non-existent config key: {k}")
    })
}

/// The files of a Secret.
pub async fn secret(
    objects: &ClusterObjects,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
) -> Result<Payload, String> {
    let s = objects.secret(ns, name).await.map_err(|e| e.to_string())?;
    let Some(s) = s else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("secret \"{name}\" not found"))
        };
    };
    let data: Vec<(String, Vec<u8>)> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    select(data, items, optional, default_mode, |k| {
        format!("references non-existent secret key: {k}")
    })
}

/// The files of downward API items.
pub fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    facts: &PodFacts,
    default_mode: i32,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            fieldpath::field_value(pod, &f.field_path, facts).map_err(|e| e.to_string())?
        } else if let Some(r) = &it.resource_field_ref {
            let c = fieldpath::container_named(pod, r.container_name.as_deref().unwrap_or(""))
                .map_err(|e| e.to_string())?;
            fieldpath::resource_value(
                c,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                facts,
            )
            .map_err(|e| e.to_string())?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode(it.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// The files of a projected volume: every source merged (later ones win).
pub async fn projected(
    pod: &Pod,
    src: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    objects: &ClusterObjects,
    facts: &PodFacts,
    tokens: &TokenManager,
) -> Result<Payload, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let default_mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    for s in src.sources.iter().flatten() {
        let part = if let Some(cm) = &s.config_map {
            configmap(
                objects,
                ns,
                &cm.name,
                cm.items.as_ref(),
                cm.optional.unwrap_or(false),
                default_mode,
            )
            .await
            .map_err(VolumeError::Source)?
        } else if let Some(sec) = &s.secret {
            secret(
                objects,
                ns,
                &sec.name,
                sec.items.as_ref(),
                sec.optional.unwrap_or(false),
                default_mode,
            )
            .await
            .map_err(VolumeError::Source)?
        } else if let Some(d) = &s.downward_api {
            downward_api(
                pod,
                d.items.as_deref().unwrap_or_default(),
                facts,
                default_mode,
            )
            .map_err(VolumeError::Source)?
        } else if let Some(t) = &s.service_account_token {
            let token = tokens.token(pod, t).await?;
            Payload::from([(
                t.path.clone(),
                FileProjection {
                    data: token.into_bytes(),
                    mode: mode(None, default_mode),
                },
            )])
        } else {
            Payload::new()
        };
        out.extend(part);
    }
    Ok(out)
}
