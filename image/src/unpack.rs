//! Streaming a layer (or an input tarball) onto disk, safely.
//!
//! One pass over the blob computes both digests (of the blob as stored, and of the uncompressed
//! tar, the diffID) and, when asked, creates the entries. Compression is detected from the magic
//! bytes, never from a media type or file name. Whiteouts become overlayfs whiteouts as they are
//! unpacked, so a layer directory can be used as an overlay lower directory as is.
//!
//! Entries are refused rather than sanitized when they would land outside the destination: a
//! `..` component, an absolute path, or a parent that is a symlink (the symlink could point
//! anywhere on the host). Each layer is unpacked into its own empty directory, so a symlink in an
//! earlier layer can never redirect this one.

use std::{
    ffi::{CString, OsStr},
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{OpenOptionsExt, PermissionsExt},
    },
    path::{Component, Path, PathBuf},
    time::{Duration, SystemTime},
};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::ImageError;

/// The prefix of an AUFS/OCI whiteout file name.
const WHITEOUT_PREFIX: &str = ".wh.";
/// Marks its directory opaque: lower layers' contents of it are hidden.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The overlayfs xattr for an opaque directory (Documentation/filesystems/overlayfs.rst).
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// PAX records carrying extended attributes, as GNU tar and Docker write them.
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Which stream is being read, for error messages: "layer sha256:…" or "the tarball", and the
/// input it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) what: String,
    pub(crate) archive: PathBuf,
}

/// What unpacking does besides creating entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An image layer: whiteouts converted, ownership and xattrs kept.
    Layer,
    /// The input tarball itself: plain files only matter, names taken literally.
    Archive,
}

/// The two digests of a stream, as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digests {
    /// Of the bytes as stored (compressed if they were).
    pub(crate) stored: String,
    /// Of the uncompressed tar: the layer's diffID.
    pub(crate) uncompressed: String,
}

/// Reads `blob` to its end, computing its digests, and unpacks it into `dest` if given (`dest`
/// must exist and be empty).
pub(crate) fn read_tar(
    blob: &Path,
    dest: Option<&Path>,
    kind: Kind,
    origin: &Origin,
) -> Result<Digests, ImageError> {
    let file = File::open(blob).map_err(ImageError::io("open", blob))?;
    read_tar_from(file, dest, kind, origin)
}

/// [`read_tar`] over any reader; unit tests feed it in-memory tars.
pub(crate) fn read_tar_from(
    input: impl Read,
    dest: Option<&Path>,
    kind: Kind,
    origin: &Origin,
) -> Result<Digests, ImageError> {
    let read_error = |source| ImageError::Read {
        what: origin.what.clone(),
        archive: origin.archive.clone(),
        source,
    };
    let mut stored = HashingReader::new(input);
    let uncompressed_digest = {
        let mut buffered = BufReader::new(&mut stored);
        let magic = buffered.fill_buf().map_err(read_error)?;
        let decoded: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(MultiGzDecoder::new(buffered))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(read_error(io::Error::new(
                io::ErrorKind::Unsupported,
                "zstd compression is not supported",
            )));
        } else {
            Box::new(buffered)
        };
        let mut uncompressed = HashingReader::new(decoded);
        if let Some(dest) = dest {
            unpack(&mut uncompressed, dest, kind, origin)?;
        }
        // The diffID covers the whole stream, including the end-of-archive blocks and any
        // padding after them; draining also makes the gzip decoder check its trailer.
        io::copy(&mut uncompressed, &mut io::sink()).map_err(read_error)?;
        uncompressed.finish()
    };
    io::copy(&mut stored, &mut io::sink()).map_err(read_error)?;
    Ok(Digests {
        stored: stored.finish(),
        uncompressed: uncompressed_digest,
    })
}

/// sha256 of everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> String {
        format!("sha256:{}", hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A directory whose mtime is set after its children are created (creating them changes it).
struct DirTime {
    path: PathBuf,
    mtime: SystemTime,
}

fn unpack(input: impl Read, dest: &Path, kind: Kind, origin: &Origin) -> Result<(), ImageError> {
    let read_error = |source| ImageError::Read {
        what: origin.what.clone(),
        archive: origin.archive.clone(),
        source,
    };
    let mut archive = tar::Archive::new(input);
    let mut dir_times = Vec::new();
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason| ImageError::UnsafeEntry {
            what: origin.what.clone(),
            archive: origin.archive.clone(),
            entry: name.clone(),
            reason,
        };
        let Some(relative) = relative_path(&raw).map_err(refuse)? else {
            // The archive's root ("./"): the layer directory itself.
            continue;
        };
        let failed = |source| ImageError::Unpack {
            what: origin.what.clone(),
            archive: origin.archive.clone(),
            entry: name.clone(),
            source,
        };
        let parent = ensure_parent(dest, &relative).map_err(|e| match e {
            ParentError::Refused(reason) => refuse(reason),
            ParentError::Io(source) => failed(source),
        })?;
        let file_name = relative
            .file_name()
            .ok_or_else(|| refuse("has no file name"))?;
        if kind == Kind::Layer
            && let Some(whiteout) = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(WHITEOUT_PREFIX))
        {
            apply_whiteout(&parent, file_name, whiteout).map_err(|e| match e {
                ParentError::Refused(reason) => refuse(reason),
                ParentError::Io(source) => failed(source),
            })?;
            continue;
        }
        let path = parent.join(file_name);
        let header = entry.header();
        let entry_type = header.entry_type();
        let mode = header.mode().map_err(read_error)? & 0o7777;
        // Ownership only matters in layers; writers of image tarballs leave it blank at times.
        let (uid, gid) = match kind {
            Kind::Layer => (
                header.uid().map_err(read_error)?,
                header.gid().map_err(read_error)?,
            ),
            Kind::Archive => (0, 0),
        };
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(header.mtime().unwrap_or(0));
        let owner = (
            u32::try_from(uid).map_err(|_| refuse("has a uid above 2^32"))?,
            u32::try_from(gid).map_err(|_| refuse("has a gid above 2^32"))?,
        );
        match entry_type {
            EntryType::Directory => {
                create_dir(&path).map_err(failed)?;
                set_owner_and_mode(&path, owner, mode, kind).map_err(failed)?;
                dir_times.push(DirTime {
                    path: path.clone(),
                    mtime,
                });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                replace(&path, false).map_err(failed)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(failed)?;
                io::copy(&mut entry, &mut file).map_err(read_error)?;
                if kind == Kind::Layer {
                    std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))
                        .map_err(failed)?;
                }
                // After the chown: chown clears the set-user-ID and set-group-ID bits.
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(failed)?;
                file.set_modified(mtime).map_err(failed)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("is a symlink without a target"))?
                    .into_owned();
                replace(&path, false).map_err(failed)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(failed)?;
                if kind == Kind::Layer {
                    std::os::unix::fs::lchown(&path, Some(owner.0), Some(owner.1))
                        .map_err(failed)?;
                }
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("is a hard link without a target"))?
                    .into_owned();
                let target = relative_path(&target)
                    .map_err(|_| refuse("is a hard link to outside the layer"))?
                    .ok_or_else(|| refuse("is a hard link to the layer's root"))?;
                let target_parent = ensure_parent(dest, &target).map_err(|e| match e {
                    ParentError::Refused(_) => refuse("is a hard link through a symlink"),
                    ParentError::Io(source) => failed(source),
                })?;
                let target = target_parent.join(target.file_name().unwrap_or_default());
                if target != path {
                    replace(&path, false).map_err(failed)?;
                    // linkat(2) without AT_SYMLINK_FOLLOW: a link to a symlink links the
                    // symlink itself, never what it points to.
                    fs::hard_link(&target, &path).map_err(failed)?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if kind == Kind::Archive {
                    return Err(refuse("is a device or fifo in an image tarball"));
                }
                let major = header.device_major().map_err(read_error)?.unwrap_or(0);
                let minor = header.device_minor().map_err(read_error)?.unwrap_or(0);
                let file_type = match entry_type {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                replace(&path, false).map_err(failed)?;
                mknod(
                    &path,
                    file_type,
                    Mode::from_bits_truncate(mode),
                    makedev(major.into(), minor.into()),
                )
                .map_err(|e| failed(e.into()))?;
                set_owner_and_mode(&path, owner, mode, kind).map_err(failed)?;
            }
            // Global PAX headers carry defaults we do not use (the per-entry ones are already
            // folded into `path_bytes`).
            EntryType::XGlobalHeader => continue,
            _ => return Err(refuse("has an unsupported type")),
        }
        if kind == Kind::Layer {
            apply_pax_xattrs(&mut entry, &path).map_err(failed)?;
        }
    }
    for DirTime { path, mtime } in dir_times.into_iter().rev() {
        // Best effort: a wrong directory mtime harms nothing, so it is not worth failing for.
        let _ = File::open(&path).and_then(|dir| dir.set_modified(mtime));
    }
    Ok(())
}

/// The entry's path relative to the destination: `.` components dropped, `None` for the root.
/// Refuses `..` anywhere and absolute paths.
pub(crate) fn relative_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("escapes the layer directory with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

enum ParentError {
    Refused(&'static str),
    Io(io::Error),
}

/// Creates the missing parents of `relative` under `dest` and returns the absolute parent.
/// Refuses a parent that exists as a symlink or a non-directory.
fn ensure_parent(dest: &Path, relative: &Path) -> Result<PathBuf, ParentError> {
    let mut current = dest.to_path_buf();
    let Some(parent) = relative.parent() else {
        return Ok(current);
    };
    for part in parent.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ParentError::Refused("passes through a symlink"));
            }
            Ok(_) => return Err(ParentError::Refused("has a parent that is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(ParentError::Io)?;
            }
            Err(e) => return Err(ParentError::Io(e)),
        }
    }
    Ok(current)
}

/// A whiteout in overlayfs form: `.wh..wh..opq` marks `parent` opaque; `.wh.NAME` becomes the
/// character device 0:0 `NAME`. Other `.wh..wh.` names are AUFS bookkeeping and are dropped.
fn apply_whiteout(parent: &Path, file_name: &OsStr, hidden: &str) -> Result<(), ParentError> {
    if file_name == OPAQUE_WHITEOUT {
        return set_xattr(parent, OPAQUE_XATTR, b"y").map_err(ParentError::Io);
    }
    if hidden.starts_with(WHITEOUT_PREFIX) {
        return Ok(());
    }
    if hidden.is_empty() || hidden == "." || hidden == ".." {
        return Err(ParentError::Refused("is a whiteout of nothing"));
    }
    let path = parent.join(hidden);
    replace(&path, false).map_err(ParentError::Io)?;
    mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(|e| ParentError::Io(e.into()))
}

/// Makes room for a new entry at `path`: an existing directory is kept when the new entry is a
/// directory too, anything else already there is removed (a later entry wins, as with tar).
fn replace(path: &Path, keep_dir: bool) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if keep_dir {
                Ok(())
            } else {
                fs::remove_dir_all(path)
            }
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn create_dir(path: &Path) -> io::Result<()> {
    replace(path, true)?;
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn set_owner_and_mode(path: &Path, owner: (u32, u32), mode: u32, kind: Kind) -> io::Result<()> {
    if kind == Kind::Layer {
        std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn apply_pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> io::Result<()> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(());
    };
    for extension in extensions {
        let extension = extension?;
        if let Ok(key) = extension.key()
            && let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
        {
            set_xattr(path, name, extension.value_bytes())?;
        }
    }
    Ok(())
}

/// lsetxattr(2): never follows a symlink at `path`.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains a NUL"))?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` points to
    // `value.len()` readable bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    /// A tar entry with a raw name: `tar::Builder` refuses `..` and absolute paths, and these
    /// tests need exactly those.
    fn raw_entry(
        builder: &mut tar::Builder<Vec<u8>>,
        kind: EntryType,
        name: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
        owner: (u64, u64),
    ) {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    /// Type, name, link target, data.
    type RawEntry<'a> = (EntryType, &'a str, Option<&'a str>, &'a [u8]);

    fn tar_of(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (kind, name, link, data) in entries {
            let mode = if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            };
            raw_entry(&mut builder, *kind, name, *link, data, mode, (0, 0));
        }
        builder.into_inner().unwrap()
    }

    fn origin() -> Origin {
        Origin {
            what: "layer sha256:test".to_owned(),
            archive: PathBuf::from("/in/memory"),
        }
    }

    fn unpack_layer(tar: &[u8]) -> (tempfile::TempDir, Result<Digests, ImageError>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let result = read_tar_from(tar, Some(&dest), Kind::Layer, &origin());
        (dir, result)
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let c_name = CString::new(name).unwrap();
        let mut value = [0u8; 64];
        // SAFETY: NUL-terminated strings and a buffer of the length passed, all live across
        // the call.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        usize::try_from(n).ok().map(|n| value[..n].to_vec())
    }

    #[test]
    fn converts_whiteouts_to_overlayfs_form() {
        let tar = tar_of(&[
            (EntryType::Directory, "etc/", None, b""),
            (EntryType::Regular, "etc/.wh.motd", None, b""),
            (EntryType::Directory, "var/cache/", None, b""),
            (EntryType::Regular, "var/cache/.wh..wh..opq", None, b""),
            (EntryType::Regular, "var/cache/new", None, b"kept"),
            (EntryType::Regular, "usr/.wh..wh.plnk", None, b""),
        ]);
        let (dir, result) = unpack_layer(&tar);
        result.unwrap();
        let layer = dir.path().join("layer");
        let whiteout = fs::symlink_metadata(layer.join("etc/motd")).unwrap();
        assert!(
            whiteout.file_type().is_char_device(),
            "etc/motd is a char device"
        );
        assert_eq!(whiteout.rdev(), 0, "the whiteout is device 0:0");
        assert!(!layer.join("etc/.wh.motd").exists());
        assert_eq!(
            xattr(&layer.join("var/cache"), OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
        assert!(!layer.join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(layer.join("var/cache/new")).unwrap(), b"kept");
        assert_eq!(fs::read_dir(layer.join("usr")).unwrap().count(), 0);
    }

    #[test]
    fn refuses_entries_escaping_the_layer() {
        let cases: [(&[RawEntry<'_>], &str); 6] = [
            (&[(EntryType::Regular, "../evil", None, b"x")], "`..`"),
            (&[(EntryType::Regular, "a/../../evil", None, b"x")], "`..`"),
            (&[(EntryType::Regular, "/evil", None, b"x")], "absolute"),
            (
                &[
                    (EntryType::Symlink, "out", Some(".."), b""),
                    (EntryType::Regular, "out/evil", None, b"x"),
                ],
                "symlink",
            ),
            (
                &[(EntryType::Link, "evil", Some("../../etc/passwd"), b"")],
                "outside",
            ),
            (
                &[
                    (EntryType::Symlink, "etc", Some("/etc"), b""),
                    (EntryType::Link, "evil", Some("etc/passwd"), b""),
                ],
                "symlink",
            ),
        ];
        for (entries, reason) in cases {
            let (dir, result) = unpack_layer(&tar_of(entries));
            let error = result.expect_err("an escaping entry is refused");
            assert!(
                matches!(error, ImageError::UnsafeEntry { .. }),
                "{entries:?}: {error}"
            );
            let message = error.to_string();
            assert!(
                message.contains(reason) && message.contains("layer sha256:test"),
                "{message}"
            );
            assert!(!dir.path().join("evil").exists(), "nothing written outside");
        }
    }

    #[test]
    fn keeps_modes_owners_symlinks_and_hardlinks() {
        let mut builder = tar::Builder::new(Vec::new());
        raw_entry(
            &mut builder,
            EntryType::Directory,
            "bin/",
            None,
            b"",
            0o750,
            (0, 10),
        );
        raw_entry(
            &mut builder,
            EntryType::Regular,
            "bin/su",
            None,
            b"su",
            0o4755,
            (1000, 1001),
        );
        raw_entry(
            &mut builder,
            EntryType::Symlink,
            "bin/sh",
            Some("/bin/busybox"),
            b"",
            0o777,
            (0, 0),
        );
        raw_entry(
            &mut builder,
            EntryType::Link,
            "bin/su2",
            Some("bin/su"),
            b"",
            0o644,
            (0, 0),
        );
        raw_entry(
            &mut builder,
            EntryType::Fifo,
            "bin/fifo",
            None,
            b"",
            0o600,
            (0, 0),
        );
        let (dir, result) = unpack_layer(&builder.into_inner().unwrap());
        result.unwrap();
        let layer = dir.path().join("layer");
        let bin = fs::metadata(layer.join("bin")).unwrap();
        assert_eq!((bin.mode() & 0o7777, bin.gid()), (0o750, 10));
        let su = fs::metadata(layer.join("bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755, "setuid survives the chown");
        assert_eq!((su.uid(), su.gid()), (1000, 1001));
        assert_eq!(
            fs::read_link(layer.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let su2 = fs::metadata(layer.join("bin/su2")).unwrap();
        assert_eq!((su2.ino(), su2.nlink()), (su.ino(), 2));
        assert!(
            fs::symlink_metadata(layer.join("bin/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn digests_cover_the_stored_and_the_uncompressed_stream() {
        let tar = tar_of(&[(EntryType::Regular, "a", None, b"hello")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let plain = read_tar_from(tar.as_slice(), None, Kind::Layer, &origin()).unwrap();
        let compressed = read_tar_from(gz.as_slice(), None, Kind::Layer, &origin()).unwrap();
        let expected = format!("sha256:{}", hex(&Sha256::digest(&tar)));
        assert_eq!(plain.stored, expected);
        assert_eq!(plain.uncompressed, expected);
        assert_eq!(compressed.uncompressed, expected);
        assert_eq!(
            compressed.stored,
            format!("sha256:{}", hex(&Sha256::digest(&gz)))
        );

        let truncated = &gz[..gz.len() / 2];
        let error = read_tar_from(truncated, None, Kind::Layer, &origin()).unwrap_err();
        assert!(matches!(error, ImageError::Read { .. }), "{error}");
    }
}
