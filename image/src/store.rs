//! The store on disk: importing inputs, and reading image records back.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    ImageError, normalize_reference,
    source::{Layout, SourceImage, sha256},
    unpack::{self, Kind, Origin},
};

/// An image in the store, ready to be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The normalized reference (`docker.io/library/busybox:latest`); for an image imported
    /// without a name, its id.
    pub reference: String,
    /// `sha256:<hex>` of the image config, as the kubelet reports an image id.
    pub id: String,
    /// The manifest digest, for images imported from an OCI layout (a docker-archive has none).
    pub digest: Option<String>,
    /// What a container of this image runs, unless the pod overrides it.
    pub config: ImageConfig,
    /// The unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
}

/// The part of the image config a container runtime needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
}

/// What `images/<sha256 of reference>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    reference: String,
    id: String,
    #[serde(default)]
    digest: Option<String>,
    config: ImageConfig,
    /// diffID hex of each layer, lowest first.
    layers: Vec<String>,
}

/// A node's image store rooted at one directory (`strait_host::paths::IMAGE_DIR` in production).
///
/// Several stores may share a machine (tests, local clusters); several processes may import
/// into one store at once, since every write is a rename of complete content.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let store = Self { root: root.into() };
        for dir in [store.layers_dir(), store.images_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(ImageError::io("create", &dir))?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports every image in `path`: an OCI image layout directory, an OCI layout tarball, or a
    /// docker-archive tarball, either tarball optionally gzip-compressed (told by its magic
    /// bytes). Returns one [`Image`] per reference imported (an unnamed image is returned under
    /// its id).
    ///
    /// All-or-nothing: every blob is verified and every new layer unpacked into the staging
    /// area before anything is renamed into the store, so a failed import leaves it as it was.
    /// Layers already in the store are verified but not unpacked again.
    pub fn import(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let staging = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(self.tmp_dir())
            .map_err(ImageError::io(
                "create a staging directory in",
                self.tmp_dir(),
            ))?;
        let meta = fs::metadata(path).map_err(ImageError::io("read", path))?;
        let dir = if meta.is_dir() {
            path.to_path_buf()
        } else {
            if !looks_like_tarball(path)? {
                return Err(ImageError::UnknownFormat {
                    path: path.to_path_buf(),
                });
            }
            let dir = staging.path().join("input");
            fs::create_dir(&dir).map_err(ImageError::io("create", &dir))?;
            let origin = Origin {
                what: "the tarball".to_owned(),
                archive: path.to_path_buf(),
            };
            unpack::read_tar(path, Some(&dir), Kind::Archive, &origin)?;
            dir
        };
        let sources = Layout {
            dir: &dir,
            origin: path,
        }
        .images()?;

        // Phase 1: verify every layer, unpack the new ones into staging.
        let mut staged: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (n, layer) in sources.iter().flat_map(|s| &s.layers).enumerate() {
            let hex = diff_id_hex(&layer.diff_id);
            let known = staged.contains_key(hex) || self.layers_dir().join(hex).is_dir();
            let dest = staging.path().join(format!("layer-{n}"));
            if !known {
                fs::create_dir(&dest).map_err(ImageError::io("create", &dest))?;
            }
            let origin = Origin {
                what: format!("layer {}", layer.name),
                archive: path.to_path_buf(),
            };
            let digests = unpack::read_tar(
                &layer.path,
                (!known).then_some(dest.as_path()),
                Kind::Layer,
                &origin,
            )
            .map_err(|error| match &layer.digest {
                // A blob that does not decompress may simply be corrupt: say so when its digest
                // proves it, rather than reporting the gzip or tar symptom.
                Some(digest) => match sha256_file(&layer.path) {
                    Ok(actual) if actual != *digest => ImageError::DigestMismatch {
                        blob: digest.clone(),
                        archive: path.to_path_buf(),
                        actual,
                    },
                    _ => error,
                },
                None => error,
            })?;
            if let Some(digest) = &layer.digest
                && *digest != digests.stored
            {
                return Err(ImageError::DigestMismatch {
                    blob: digest.clone(),
                    archive: path.to_path_buf(),
                    actual: digests.stored,
                });
            }
            if digests.uncompressed != layer.diff_id {
                return Err(ImageError::DiffIdMismatch {
                    layer: layer.name.clone(),
                    archive: path.to_path_buf(),
                    expected: layer.diff_id.clone(),
                    actual: digests.uncompressed,
                });
            }
            if !known {
                staged.insert(hex.to_owned(), dest);
            }
        }

        // Phase 2: commit. Data first, so a renamed layer is complete on disk even after a crash.
        if !staged.is_empty() {
            let dir = File::open(staging.path()).map_err(ImageError::io("open", staging.path()))?;
            nix::unistd::syncfs(&dir)
                .map_err(|e| ImageError::io("sync", staging.path())(e.into()))?;
        }
        for (hex, staged_dir) in &staged {
            let target = self.layers_dir().join(hex);
            if let Err(e) = fs::rename(staged_dir, &target) {
                // Another import committed the same layer meanwhile: same content, keep theirs.
                if !target.is_dir() {
                    return Err(ImageError::io("commit layer", target)(e));
                }
            }
        }
        sync_dir(&self.layers_dir())?;
        let mut imported = Vec::new();
        for source in &sources {
            let references = if source.references.is_empty() {
                vec![source.id.clone()]
            } else {
                source.references.clone()
            };
            for reference in references {
                let record = record(source, reference);
                self.write_record(&record)?;
                imported.push(self.image(record));
            }
        }
        Ok(imported)
    }

    /// The image `reference` names, after normalization, or `None` if it is not in the store.
    /// An image id (`sha256:<hex>`) also resolves, as does `name@<manifest digest>`.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        if reference.starts_with("sha256:") && !reference.contains('/') {
            return Ok(self.list()?.into_iter().find(|i| i.id == reference));
        }
        let normalized = normalize_reference(reference)?;
        let path = self.record_path(&normalized);
        match fs::read(&path) {
            Ok(bytes) => {
                let record = self.parse_record(&path, &bytes)?;
                let image = self.image(record);
                for layer in &image.layers {
                    if !layer.is_dir() {
                        return Err(ImageError::CorruptRecord {
                            path,
                            reason: format!("layer {} is missing", layer.display()),
                        });
                    }
                }
                Ok(Some(image))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `name@digest` matches an image of that repository imported with that manifest.
                let Some((name, digest)) = normalized.split_once('@') else {
                    return Ok(None);
                };
                let wanted = repository(name);
                Ok(self.list()?.into_iter().find(|i| {
                    i.digest.as_deref() == Some(digest)
                        && repository(i.reference.split('@').next().unwrap_or_default()) == wanted
                }))
            }
            Err(e) => Err(ImageError::io("read", path)(e)),
        }
    }

    /// Every image in the store, sorted by reference.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let dir = self.images_dir();
        let mut images = Vec::new();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("list", &dir))? {
            let path = entry.map_err(ImageError::io("list", &dir))?.path();
            // Temporary files of a write in progress start with a dot.
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."));
            if !is_record {
                continue;
            }
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Replaced or removed since the listing: not an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io("read", path)(e)),
            };
            images.push(self.image(self.parse_record(&path, &bytes)?));
        }
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    fn write_record(&self, record: &Record) -> Result<(), ImageError> {
        let path = self.record_path(&record.reference);
        let dir = self.images_dir();
        let mut file = tempfile::Builder::new()
            .prefix(".record-")
            .tempfile_in(&dir)
            .map_err(ImageError::io("create a temporary record in", &dir))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| {
            ImageError::io("serialize", &path)(io::Error::new(io::ErrorKind::InvalidData, e))
        })?;
        file.write_all(&bytes)
            .and_then(|()| file.as_file().sync_all())
            .map_err(ImageError::io("write", file.path()))?;
        file.persist(&path)
            .map_err(|e| ImageError::io("write", &path)(e.error))?;
        sync_dir(&dir)
    }

    fn parse_record(&self, path: &Path, bytes: &[u8]) -> Result<Record, ImageError> {
        let record: Record =
            serde_json::from_slice(bytes).map_err(|e| ImageError::CorruptRecord {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if record
            .layers
            .iter()
            .any(|l| l.len() != 64 || !crate::reference::is_lower_hex(l))
        {
            return Err(ImageError::CorruptRecord {
                path: path.to_path_buf(),
                reason: "a layer is not a sha256 hex digest".to_owned(),
            });
        }
        Ok(record)
    }

    fn image(&self, record: Record) -> Image {
        Image {
            layers: record
                .layers
                .iter()
                .map(|hex| self.layers_dir().join(hex))
                .collect(),
            reference: record.reference,
            id: record.id,
            digest: record.digest,
            config: record.config,
        }
    }

    fn record_path(&self, reference: &str) -> PathBuf {
        let name = sha256(reference.as_bytes());
        self.images_dir()
            .join(format!("{}.json", name.trim_start_matches("sha256:")))
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

fn record(source: &SourceImage, reference: String) -> Record {
    Record {
        reference,
        id: source.id.clone(),
        digest: source.manifest_digest.clone(),
        config: source.config.clone(),
        layers: source
            .layers
            .iter()
            .map(|l| diff_id_hex(&l.diff_id).to_owned())
            .collect(),
    }
}

/// The hex part of a diffID (validated as `sha256:<64 hex>` when the config was read).
fn diff_id_hex(diff_id: &str) -> &str {
    diff_id.trim_start_matches("sha256:")
}

/// The repository of a normalized `name[:tag]`.
fn repository(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// gzip magic, or a ustar/GNU tar header: refuses other files with a clear error before the tar
/// reader quotes their bytes back.
fn looks_like_tarball(path: &Path) -> Result<bool, ImageError> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, 512), &mut head))
        .map_err(ImageError::io("read", path))?;
    Ok(head.starts_with(&[0x1f, 0x8b]) || head.get(257..262) == Some(b"ustar"))
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = sha2::Sha256::default();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(format!(
        "sha256:{}",
        unpack::hex(&sha2::Digest::finalize(hasher))
    ))
}

/// fsync(2) on a directory, so the renames in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io("sync", dir))
}
