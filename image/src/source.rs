//! Reading an import's input: which images it holds, their configs, and where each layer's blob is.
//!
//! Both formats end up as a directory (a tarball is extracted to the store's staging area first):
//! an OCI layout (`index.json` → manifest → config and layers, all blobs addressed by digest) or
//! a docker-archive (`manifest.json` listing config and layer files by path). When a directory has
//! both, as `docker save` writes since Docker 25, `manifest.json` wins: its `RepoTags` carry full
//! names where the OCI index carries only tags.

use std::{
    collections::{BTreeMap, VecDeque},
    ffi::OsString,
    fs, io,
    path::{Component, Path, PathBuf},
};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{ImageConfig, ImageError, normalize_reference, reference::check_digest, unpack::hex};

const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// The annotation containerd writes with the full image name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming an image in a layout (a full reference, as skopeo writes it).
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Symlinks followed while resolving a member path, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// An image found in the input, not yet verified beyond its manifest and config.
#[derive(Debug)]
pub(crate) struct SourceImage {
    /// Normalized references; empty for an unnamed image.
    pub(crate) references: Vec<String>,
    /// `sha256:<hex>` of the config blob: the image id.
    pub(crate) id: String,
    /// The manifest's digest (OCI inputs only).
    pub(crate) manifest_digest: Option<String>,
    pub(crate) config: ImageConfig,
    /// Lowest first.
    pub(crate) layers: Vec<SourceLayer>,
}

#[derive(Debug)]
pub(crate) struct SourceLayer {
    /// The blob file.
    pub(crate) path: PathBuf,
    /// How errors name the layer: its digest, or its path in a docker-archive.
    pub(crate) name: String,
    /// The digest the blob must hash to, when the input gives one.
    pub(crate) digest: Option<String>,
    /// The diffID from the image config.
    pub(crate) diff_id: String,
}

/// The input directory, and the path the user gave (what errors name).
pub(crate) struct Layout<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) origin: &'a Path,
}

impl Layout<'_> {
    pub(crate) fn images(&self) -> Result<Vec<SourceImage>, ImageError> {
        if self.dir.join("manifest.json").is_file() {
            self.docker_images()
        } else if self.dir.join("index.json").is_file() {
            self.oci_images()
        } else {
            Err(ImageError::UnknownFormat {
                path: self.origin.to_path_buf(),
            })
        }
    }

    fn docker_images(&self) -> Result<Vec<SourceImage>, ImageError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> =
            self.parse("manifest.json", &self.read_member("manifest.json")?)?;
        let mut images = Vec::with_capacity(entries.len());
        for entry in entries {
            let config_bytes = self.read_member(&entry.config)?;
            let id = sha256(&config_bytes);
            // The config's file name is its digest ("<hex>.json", or "blobs/sha256/<hex>" since
            // Docker 25): verify it when it looks like one.
            let stem = Path::new(&entry.config)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if stem.len() == 64
                && check_digest(&format!("sha256:{stem}")).is_ok()
                && id != format!("sha256:{stem}")
            {
                return Err(ImageError::DigestMismatch {
                    blob: entry.config.clone(),
                    archive: self.origin.to_path_buf(),
                    actual: id,
                });
            }
            let (config, diff_ids) = self.parse_config(&entry.config, &config_bytes)?;
            if diff_ids.len() != entry.layers.len() {
                return Err(self.malformed(
                    &entry.config,
                    format!(
                        "lists {} diffIDs for the {} layers of manifest.json",
                        diff_ids.len(),
                        entry.layers.len()
                    ),
                ));
            }
            let layers = entry
                .layers
                .iter()
                .zip(diff_ids)
                .map(|(layer, diff_id)| {
                    Ok(SourceLayer {
                        path: self.member(layer)?,
                        name: layer.clone(),
                        digest: None,
                        diff_id,
                    })
                })
                .collect::<Result<_, ImageError>>()?;
            let references = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|tag| normalize_reference(tag))
                .collect::<Result<_, _>>()?;
            images.push(SourceImage {
                references,
                id,
                manifest_digest: None,
                config,
                layers,
            });
        }
        Ok(images)
    }

    fn oci_images(&self) -> Result<Vec<SourceImage>, ImageError> {
        let index: Index = self.parse("index.json", &self.read_member("index.json")?)?;
        let mut images = Vec::new();
        for descriptor in index.manifests {
            let mut names = Vec::new();
            if let Some(name) = descriptor
                .annotations
                .get(CONTAINERD_NAME)
                .or_else(|| descriptor.annotations.get(OCI_REF_NAME))
            {
                names.push(normalize_reference(name)?);
            }
            let manifest = if INDEX_MEDIA_TYPES.contains(&descriptor.media_type.as_str()) {
                self.pick_platform(&descriptor)?
            } else {
                descriptor
            };
            // Several index entries may name the same manifest (one per tag): merge them.
            if let Some(existing) = images
                .iter_mut()
                .find(|i: &&mut SourceImage| i.manifest_digest.as_deref() == Some(&manifest.digest))
            {
                existing.references.extend(names);
                continue;
            }
            let mut image = self.oci_image(&manifest)?;
            image.references = names;
            images.push(image);
        }
        Ok(images)
    }

    /// From a nested index (a multi-platform image), the manifest for this machine.
    fn pick_platform(&self, descriptor: &Descriptor) -> Result<Descriptor, ImageError> {
        let index: Index = self.parse(&descriptor.digest, &self.read_blob(&descriptor.digest)?)?;
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        index
            .manifests
            .into_iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.os == "linux" && p.architecture == arch)
                    && !INDEX_MEDIA_TYPES.contains(&m.media_type.as_str())
            })
            .ok_or_else(|| {
                self.malformed(
                    &descriptor.digest,
                    format!("has no manifest for linux/{arch}"),
                )
            })
    }

    fn oci_image(&self, descriptor: &Descriptor) -> Result<SourceImage, ImageError> {
        #[derive(Deserialize)]
        struct Manifest {
            config: Descriptor,
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let manifest: Manifest =
            self.parse(&descriptor.digest, &self.read_blob(&descriptor.digest)?)?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let (config, diff_ids) = self.parse_config(&manifest.config.digest, &config_bytes)?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(self.malformed(
                &manifest.config.digest,
                format!(
                    "lists {} diffIDs for the {} layers of manifest {}",
                    diff_ids.len(),
                    manifest.layers.len(),
                    descriptor.digest
                ),
            ));
        }
        let layers = manifest
            .layers
            .into_iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                Ok(SourceLayer {
                    path: self.blob_path(&layer.digest)?,
                    name: layer.digest.clone(),
                    digest: Some(layer.digest),
                    diff_id,
                })
            })
            .collect::<Result<_, ImageError>>()?;
        Ok(SourceImage {
            references: Vec::new(),
            id: manifest.config.digest,
            manifest_digest: Some(descriptor.digest.clone()),
            config,
            layers,
        })
    }

    fn parse_config(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(ImageConfig, Vec<String>), ImageError> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            config: Option<RunConfig>,
            rootfs: Option<RootFs>,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct RunConfig {
            entrypoint: Option<Vec<String>>,
            cmd: Option<Vec<String>>,
            env: Option<Vec<String>>,
            working_dir: Option<String>,
            user: Option<String>,
        }
        #[derive(Deserialize)]
        struct RootFs {
            diff_ids: Vec<String>,
        }
        let parsed: Config = self.parse(name, bytes)?;
        let rootfs = parsed
            .rootfs
            .ok_or_else(|| self.malformed(name, "has no rootfs".to_owned()))?;
        for diff_id in &rootfs.diff_ids {
            if check_digest(diff_id).is_err() || !diff_id.starts_with("sha256:") {
                return Err(ImageError::UnsupportedDigest {
                    digest: diff_id.clone(),
                    archive: self.origin.to_path_buf(),
                });
            }
        }
        let run = parsed.config.unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok((
            ImageConfig {
                entrypoint: run.entrypoint.unwrap_or_default(),
                cmd: run.cmd.unwrap_or_default(),
                env: run.env.unwrap_or_default(),
                working_dir: non_empty(run.working_dir),
                user: non_empty(run.user),
            },
            rootfs.diff_ids,
        ))
    }

    /// Reads a blob and checks it hashes to `digest`. Manifests and configs are small; layers
    /// are streamed by the caller instead.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(|e| self.missing_or(digest, &path, e))?;
        let actual = if digest.starts_with("sha512:") {
            format!("sha512:{}", hex(&sha2::Sha512::digest(&bytes)))
        } else {
            sha256(&bytes)
        };
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                blob: digest.to_owned(),
                archive: self.origin.to_path_buf(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// `blobs/<algorithm>/<hex>`; the digest is validated first so it cannot name another path.
    /// Layers must be sha256: that is what we stream-verify.
    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        check_digest(digest).map_err(|_| ImageError::UnsupportedDigest {
            digest: digest.to_owned(),
            archive: self.origin.to_path_buf(),
        })?;
        let (algorithm, hex) = digest.split_once(':').unwrap_or_default();
        let path = self.dir.join("blobs").join(algorithm).join(hex);
        if !path.is_file() {
            return Err(ImageError::MissingBlob {
                blob: digest.to_owned(),
                archive: self.origin.to_path_buf(),
            });
        }
        Ok(path)
    }

    fn read_member(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.member(name)?;
        fs::read(&path).map_err(|e| self.missing_or(name, &path, e))
    }

    /// A file of a docker-archive, named by a path from its manifest. Symlinks are resolved as if
    /// the input were the root directory (old `docker save` links duplicate layers to each
    /// other), so no name reaches outside it.
    fn member(&self, name: &str) -> Result<PathBuf, ImageError> {
        let path = resolve_in_root(self.dir, Path::new(name)).map_err(|e| ImageError::Io {
            action: "resolve",
            path: self.origin.join(name),
            source: e,
        })?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(ImageError::MissingBlob {
                blob: name.to_owned(),
                archive: self.origin.to_path_buf(),
            })
        }
    }

    fn missing_or(&self, blob: &str, path: &Path, e: io::Error) -> ImageError {
        if e.kind() == io::ErrorKind::NotFound {
            ImageError::MissingBlob {
                blob: blob.to_owned(),
                archive: self.origin.to_path_buf(),
            }
        } else {
            ImageError::Io {
                action: "read",
                path: path.to_path_buf(),
                source: e,
            }
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        document: &str,
        bytes: &[u8],
    ) -> Result<T, ImageError> {
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
            document: document.to_owned(),
            archive: self.origin.to_path_buf(),
            source,
        })
    }

    fn malformed(&self, document: &str, reason: String) -> ImageError {
        ImageError::Malformed {
            document: document.to_owned(),
            archive: self.origin.to_path_buf(),
            reason,
        }
    }
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    architecture: String,
    os: String,
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Resolves `name` under `root` as if `root` were `/`: `..` stops at the root and absolute
/// symlink targets restart from it.
pub(crate) fn resolve_in_root(root: &Path, name: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(name);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut followed = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = std::iter::once(root.as_os_str())
            .chain(resolved.iter().map(|p| p.as_os_str()))
            .chain(std::iter::once(part.as_os_str()))
            .collect();
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "too many levels of symbolic links",
                    ));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for part in components(&target).into_iter().rev() {
                    pending.push_front(part);
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(std::iter::once(root.as_os_str())
        .chain(resolved.iter().map(|p| p.as_os_str()))
        .collect())
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("a")).unwrap();
        fs::write(root.join("a/layer.tar"), b"x").unwrap();
        std::os::unix::fs::symlink("../a", root.join("b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("b/layer.tar")).unwrap(),
            root.join("a/layer.tar")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("../../../etc/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("abs")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("up/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert!(resolve_in_root(root, Path::new("loop")).is_err());
    }
}
