//! Pod volumes on the node: emptyDir, configMap, secret, downwardAPI, projected and hostPath.
//!
//! Files from objects are written the way the kubelet's atomic writer does: into a fresh
//! timestamped directory, then the `..data` symlink is swapped to it in one rename, and each
//! key is a symlink through `..data`. A container reading a volume never sees half an update,
//! and an update reaches running containers (the bind mount is of the directory).

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use super::spec::{Lookup, field_value};

/// A volume ready to mount.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub name: String,
    pub path: PathBuf,
    /// Whether the agent refreshes it from API objects.
    pub refreshed: bool,
}

/// Why a volume could not be prepared; the message goes into the pod's status.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {why}")]
    Invalid { volume: String, why: String },
    #[error("volume {volume}: failed to write {path}: {source}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Prepares (or refreshes) every volume of `pod` under `dir`.
pub fn prepare(pod: &Pod, dir: &Path, lookup: &dyn Lookup) -> Result<Vec<Prepared>, VolumeError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    volumes
        .iter()
        .map(|v| prepare_one(pod, v, dir, lookup))
        .collect()
}

fn prepare_one(
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
    lookup: &dyn Lookup,
) -> Result<Prepared, VolumeError> {
    let name = volume.name.clone();
    let path = dir.join(&name);
    let invalid = |why: String| VolumeError::Invalid {
        volume: name.clone(),
        why,
    };
    let io = |path: &Path| {
        let volume = name.clone();
        let path = path.to_owned();
        move |source| VolumeError::Io {
            volume,
            path,
            source,
        }
    };
    if let Some(host) = &volume.host_path {
        let host_path = PathBuf::from(&host.path);
        match host.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => fs::create_dir_all(&host_path).map_err(io(&host_path))?,
            "" => {}
            kind @ ("Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice") => {
                if !host_path.exists() {
                    return Err(invalid(format!(
                        "hostPath type check failed: {} is not a {kind}",
                        host.path
                    )));
                }
            }
            "FileOrCreate" => {
                if !host_path.exists() {
                    fs::write(&host_path, b"").map_err(io(&host_path))?;
                }
            }
            other => return Err(invalid(format!("unsupported hostPath type {other}"))),
        }
        return Ok(Prepared {
            name,
            path: host_path,
            refreshed: false,
        });
    }
    fs::create_dir_all(&path).map_err(io(&path))?;
    let files: Option<BTreeMap<String, (Vec<u8>, u32)>> = if volume.empty_dir.is_some() {
        None
    } else if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.map_or(0o644, |m| m.unsigned_abs());
        match lookup.config_map(&cm.name) {
            Some(data) => Some(select(&data, cm.items.as_deref(), mode).map_err(invalid)?),
            None if cm.optional == Some(true) => Some(BTreeMap::new()),
            None => return Err(invalid(format!("configmap \"{}\" not found", cm.name))),
        }
    } else if let Some(secret) = &volume.secret {
        let secret_name = secret.secret_name.clone().unwrap_or_default();
        let mode = secret.default_mode.map_or(0o644, |m| m.unsigned_abs());
        match lookup.secret(&secret_name) {
            Some(data) => Some(select(&data, secret.items.as_deref(), mode).map_err(invalid)?),
            None if secret.optional == Some(true) => Some(BTreeMap::new()),
            None => return Err(invalid(format!("secret \"{secret_name}\" not found"))),
        }
    } else if let Some(downward) = &volume.downward_api {
        let mode = downward.default_mode.map_or(0o644, |m| m.unsigned_abs());
        let mut files = BTreeMap::new();
        for item in downward.items.iter().flatten() {
            if let Some(field) = &item.field_ref {
                let value = field_value(pod, &field.field_path)
                    .ok_or_else(|| invalid(format!("unsupported fieldRef {}", field.field_path)))?;
                files.insert(
                    item.path.clone(),
                    (
                        value.into_bytes(),
                        item.mode.map_or(mode, |m| m.unsigned_abs()),
                    ),
                );
            }
        }
        Some(files)
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.map_or(0o644, |m| m.unsigned_abs());
        let mut files = BTreeMap::new();
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                if let Some(data) = lookup.config_map(&cm.name) {
                    files.extend(select(&data, cm.items.as_deref(), mode).map_err(invalid)?);
                } else if cm.optional != Some(true) {
                    return Err(invalid(format!("configmap \"{}\" not found", cm.name)));
                }
            } else if let Some(secret) = &source.secret {
                if let Some(data) = lookup.secret(&secret.name) {
                    files.extend(select(&data, secret.items.as_deref(), mode).map_err(invalid)?);
                } else if secret.optional != Some(true) {
                    return Err(invalid(format!("secret \"{}\" not found", secret.name)));
                }
            } else if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if let Some(field) = &item.field_ref {
                        let value = field_value(pod, &field.field_path).unwrap_or_default();
                        files.insert(item.path.clone(), (value.into_bytes(), mode));
                    }
                }
            }
            // serviceAccountToken sources need the TokenRequest API, which is not served yet:
            // they are left out rather than failing the pod.
        }
        Some(files)
    } else {
        return Err(invalid(
            "unsupported volume source (supported: emptyDir, configMap, secret, downwardAPI, projected, hostPath)".to_owned(),
        ));
    };
    let refreshed = files.is_some();
    if let Some(files) = files {
        write_atomically(&path, &files).map_err(io(&path))?;
    }
    Ok(Prepared {
        name,
        path,
        refreshed,
    })
}

/// The files of a ConfigMap or Secret: every key, or only `items` under their paths.
fn select(
    data: &BTreeMap<String, String>,
    items: Option<&[KeyToPath]>,
    mode: u32,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, String> {
    let mut files = BTreeMap::new();
    match items {
        None => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone().into_bytes(), mode));
            }
        }
        Some(items) => {
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| {
                    format!("configmap references non-existent config key: {}", item.key)
                })?;
                files.insert(
                    item.path.clone(),
                    (
                        value.clone().into_bytes(),
                        item.mode.map_or(mode, |m| m.unsigned_abs()),
                    ),
                );
            }
        }
    }
    for path in files.keys() {
        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(format!(
                "invalid path {path:?}: must be relative and may not contain '..'"
            ));
        }
    }
    Ok(files)
}

/// Writes `files` into `dir` through a `..data` symlink swap; unchanged content is left
/// alone (no needless swaps).
pub fn write_atomically(
    dir: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
) -> std::io::Result<()> {
    let data_link = dir.join("..data");
    let current = fs::read_link(&data_link).ok().map(|t| dir.join(t));
    if let Some(current) = &current
        && files
            .iter()
            .all(|(k, (v, _))| fs::read(current.join(k)).ok().as_ref() == Some(v))
        && count_files(current) == files.len()
    {
        return Ok(());
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let fresh = dir.join(&stamp);
    fs::create_dir_all(&fresh)?;
    for (path, (content, mode)) in files {
        let file = fresh.join(path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&file, content)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(*mode & 0o777))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;
    // Top-level names point through ..data; stale ones go.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_owned))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{top}"), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = current {
        let _ = fs::remove_dir_all(old);
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Data(BTreeMap<String, String>);
    impl Lookup for Data {
        fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "cfg").then(|| self.0.clone())
        }
        fn secret(&self, _: &str) -> Option<BTreeMap<String, String>> {
            None
        }
    }

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns",
            "labels": {"a": "b"}}, "spec": {"containers": [], "volumes": volumes}}))
        .unwrap()
    }

    #[test]
    fn config_maps_are_written_and_updated_through_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(json!([{"name": "conf", "configMap": {"name": "cfg"}},
                           {"name": "scratch", "emptyDir": {}},
                           {"name": "info", "downwardAPI": {"items": [
                               {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]));
        let first = Data([("mode".to_owned(), "fast".to_owned())].into());
        let prepared = prepare(&p, dir.path(), &first).unwrap();
        assert_eq!(prepared.len(), 3);
        let conf = dir.path().join("conf");
        assert_eq!(fs::read_to_string(conf.join("mode")).unwrap(), "fast");
        assert!(
            fs::symlink_metadata(conf.join("mode"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("info/labels")).unwrap(),
            "a=\"b\"\n"
        );

        let second = Data([("level".to_owned(), "9".to_owned())].into());
        prepare(&p, dir.path(), &second).unwrap();
        assert_eq!(fs::read_to_string(conf.join("level")).unwrap(), "9");
        assert!(!conf.join("mode").exists(), "a removed key's file goes");
        let stamped = fs::read_dir(&conf)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..1"))
            .count();
        assert_eq!(stamped, 1, "the old generation is removed");
    }

    #[test]
    fn missing_objects_and_unknown_sources_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = pod(json!([{"name": "conf", "configMap": {"name": "nope"}}]));
        let err = prepare(&missing, dir.path(), &Data(BTreeMap::new()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configmap \"nope\" not found"), "{err}");
        let unknown = pod(json!([{"name": "disk", "gcePersistentDisk": {"pdName": "x"}}]));
        let err = prepare(&unknown, dir.path(), &Data(BTreeMap::new()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("volume disk: unsupported volume source"),
            "{err}"
        );
    }
}
