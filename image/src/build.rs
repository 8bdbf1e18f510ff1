//! Images built from Debian's static busybox, written as a docker-archive tarball or an OCI
//! image layout, entirely in Rust (no skopeo, no Docker, no registry). Local clusters import
//! them as their demo images (nodes have no registry), and tests build their fixtures with
//! them.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! # let dir = std::path::Path::new("/tmp");
//! let tarball = strait_image::build::busybox_archive(dir, "busybox:demo", &[("/etc/motd", b"hi\n", 0o644)])?;
//! # Ok(())
//! # }
//! ```

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};

/// Where Debian's `busybox-static` installs the binary.
const BUSYBOX_PATHS: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];
/// The PATH of the image config.
pub const PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
/// Applets linked in `/bin` (busybox picks the applet from `argv[0]`).
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "echo",
    "sleep",
    "httpd",
    "nc",
    "wget",
    "test",
    "[",
    "touch",
    "rm",
    "mkdir",
    "rmdir",
    "env",
    "id",
    "hostname",
    "head",
    "tail",
    "dd",
    "kill",
    "ps",
    "true",
    "false",
    "grep",
    "sed",
    "printf",
    "date",
    "ip",
    "nslookup",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "stat",
    "wc",
    "sort",
    "uniq",
    "tr",
    "cut",
    "find",
    "xargs",
    "mount",
    "umount",
    "ping",
    "pwd",
    "uname",
    "whoami",
    "yes",
    "seq",
    "basename",
    "dirname",
    "readlink",
    "realpath",
    "tee",
    "timeout",
    "nohup",
    "awk",
    "vi",
    "which",
    "ifconfig",
    "route",
    "netstat",
    "traceroute",
    "top",
    "free",
    "df",
    "du",
    "md5sum",
    "sha256sum",
    "base64",
    "expr",
    "usleep",
    "watch",
    "pidof",
    "killall",
    "udhcpc",
    "telnet",
    "arp",
    "arping",
    "hexdump",
    "od",
    "less",
    "more",
    "tar",
    "gzip",
    "gunzip",
];

/// One entry of a layer, paths absolute as they appear in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A hard link at `path` to the earlier entry `target`.
    HardLink {
        path: String,
        target: String,
    },
    /// Deletes `path` of the layers below (`.wh.NAME`).
    Whiteout {
        path: String,
    },
    /// Hides what the layers below have in the directory `path` (`.wh..wh..opq`).
    Opaque {
        path: String,
    },
}

impl Entry {
    pub fn file(path: &str, data: &[u8], mode: u32) -> Self {
        Self::File {
            path: path.to_owned(),
            data: data.to_vec(),
            mode,
        }
    }

    pub fn dir(path: &str, mode: u32) -> Self {
        Self::Dir {
            path: path.to_owned(),
            mode,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Self {
        Self::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        }
    }

    pub fn whiteout(path: &str) -> Self {
        Self::Whiteout {
            path: path.to_owned(),
        }
    }

    pub fn opaque(path: &str) -> Self {
        Self::Opaque {
            path: path.to_owned(),
        }
    }
}

/// An uncompressed layer tar of `entries`, in order. Parents are not added implicitly.
pub fn layer_tar(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header
    };
    let relative = |path: &str| path.trim_start_matches('/').to_owned();
    for entry in entries {
        let result = match entry {
            Entry::File { path, data, mode } => builder.append_data(
                &mut header(tar::EntryType::Regular, *mode, data.len() as u64),
                relative(path),
                data.as_slice(),
            ),
            Entry::Dir { path, mode } => builder.append_data(
                &mut header(tar::EntryType::Directory, *mode, 0),
                format!("{}/", relative(path)),
                io::empty(),
            ),
            Entry::Symlink { path, target } => builder.append_link(
                &mut header(tar::EntryType::Symlink, 0o777, 0),
                relative(path),
                target,
            ),
            Entry::HardLink { path, target } => builder.append_link(
                &mut header(tar::EntryType::Link, 0o644, 0),
                relative(path),
                relative(target),
            ),
            Entry::Whiteout { path } => {
                let path = Path::new(path);
                let parent = relative(&path.parent().unwrap_or(Path::new("/")).to_string_lossy());
                let Some(name) = path.file_name() else {
                    return Err(invalid(format!(
                        "a whiteout of {} names no file",
                        path.display()
                    )));
                };
                let whiteout = Path::new(&parent).join(format!(".wh.{}", name.to_string_lossy()));
                builder.append_data(
                    &mut header(tar::EntryType::Regular, 0o644, 0),
                    whiteout,
                    io::empty(),
                )
            }
            Entry::Opaque { path } => builder.append_data(
                &mut header(tar::EntryType::Regular, 0o644, 0),
                Path::new(&relative(path)).join(".wh..wh..opq"),
                io::empty(),
            ),
        };
        result
            .map_err(|e| io::Error::new(e.kind(), format!("add {entry:?} to a layer tar: {e}")))?;
    }
    builder.into_inner()
}

/// The static busybox binary; the error says how to install it when only a dynamic one is.
pub fn busybox_binary() -> io::Result<Vec<u8>> {
    let Some(path) = BUSYBOX_PATHS.iter().find(|p| Path::new(p).is_file()) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no busybox: apt-get install busybox-static",
        ));
    };
    let binary =
        fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("read {path}: {e}")))?;
    if !is_static_elf(&binary) {
        return Err(invalid(format!(
            "{path} is dynamically linked: apt-get install busybox-static"
        )));
    }
    Ok(binary)
}

/// An ELF64 with no PT_INTERP program header runs without a dynamic loader in the image.
fn is_static_elf(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        binary
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        binary
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if !binary.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        binary
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| u32::from_le_bytes(b) != PT_INTERP)
    })
}

/// The base layer: busybox with its applet links, /etc/passwd and /etc/group (root and nobody),
/// /tmp, /root, then `extra` files (parents created 0755 as needed).
pub fn busybox_entries(extra: &[(&str, &[u8], u32)]) -> io::Result<Vec<Entry>> {
    let mut entries = vec![
        Entry::dir("/bin", 0o755),
        Entry::dir("/sbin", 0o755),
        Entry::dir("/usr", 0o755),
        Entry::dir("/usr/bin", 0o755),
        Entry::dir("/usr/sbin", 0o755),
        Entry::dir("/etc", 0o755),
        Entry::dir("/root", 0o700),
        Entry::dir("/tmp", 0o1777),
        Entry::dir("/proc", 0o555),
        Entry::dir("/sys", 0o555),
        Entry::dir("/dev", 0o755),
        Entry::dir("/var", 0o755),
        Entry::file("/bin/busybox", &busybox_binary()?, 0o755),
        Entry::file(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        Entry::file("/etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644),
    ];
    entries.extend(
        APPLETS
            .iter()
            .map(|applet| Entry::symlink(&format!("/bin/{applet}"), "busybox")),
    );
    let mut dirs: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Dir { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    for (path, data, mode) in extra {
        let mut parent = Path::new(path).parent();
        let mut missing = Vec::new();
        while let Some(dir) = parent.filter(|d| *d != Path::new("/") && !d.as_os_str().is_empty()) {
            let dir_name = dir.to_string_lossy().into_owned();
            if !dirs.contains(&dir_name) {
                missing.push(dir_name);
            }
            parent = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            entries.push(Entry::dir(&dir, 0o755));
            dirs.push(dir);
        }
        entries.push(Entry::file(path, data, *mode));
    }
    Ok(entries)
}

/// An image under construction: layers (uncompressed tars, lowest first) and its config.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    pub reference: String,
    pub layers: Vec<Vec<u8>>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageBuilder {
    /// Busybox with `extra` files in its one layer, Cmd `["sh"]`, Env PATH.
    pub fn busybox(reference: &str, extra: &[(&str, &[u8], u32)]) -> io::Result<Self> {
        Ok(Self {
            reference: reference.to_owned(),
            layers: vec![layer_tar(&busybox_entries(extra)?)?],
            cmd: vec!["sh".to_owned()],
            entrypoint: Vec::new(),
            env: vec![PATH_ENV.to_owned()],
            working_dir: None,
            user: None,
        })
    }

    /// Adds a layer on top.
    pub fn with_layer(mut self, entries: &[Entry]) -> io::Result<Self> {
        self.layers.push(layer_tar(entries)?);
        Ok(self)
    }

    /// The image config JSON.
    pub fn config(&self) -> Vec<u8> {
        // Serializing a `Value` of strings and arrays cannot fail.
        let diff_ids: Vec<String> = self.layers.iter().map(|l| sha256(l)).collect();
        let mut config = serde_json::json!({
            "Cmd": self.cmd,
            "Env": self.env,
        });
        if !self.entrypoint.is_empty() {
            config["Entrypoint"] = serde_json::json!(self.entrypoint);
        }
        if let Some(dir) = &self.working_dir {
            config["WorkingDir"] = serde_json::json!(dir);
        }
        if let Some(user) = &self.user {
            config["User"] = serde_json::json!(user);
        }
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .unwrap_or_default()
    }

    /// The image id: `sha256:` of the config.
    pub fn id(&self) -> String {
        sha256(&self.config())
    }

    /// Writes a `docker save` tarball (legacy layout: `<config hex>.json`, `<diffID hex>/layer.tar`,
    /// manifest.json), gzip-compressed if `gzip`.
    pub fn write_docker_archive(&self, path: &Path, gzip: bool) -> io::Result<PathBuf> {
        let config = self.config();
        let config_name = format!("{}.json", hex_of(&sha256(&config)));
        let mut files: Vec<(String, Vec<u8>)> = vec![(config_name.clone(), config)];
        let mut layer_names = Vec::new();
        for layer in &self.layers {
            let name = format!("{}/layer.tar", hex_of(&sha256(layer)));
            files.push((name.clone(), layer.clone()));
            layer_names.push(name);
        }
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": [self.reference],
            "Layers": layer_names,
        }]);
        files.push((
            "manifest.json".to_owned(),
            serde_json::to_vec(&manifest).unwrap_or_default(),
        ));
        let tar = tar_of(&files)?;
        let bytes = if gzip { gzip_bytes(&tar)? } else { tar };
        write(path, &bytes)?;
        Ok(path.to_path_buf())
    }

    /// Writes an OCI image layout directory at `dir` (gzip layers, `index.json` naming the image
    /// with `org.opencontainers.image.ref.name`).
    pub fn write_oci_layout(&self, dir: &Path) -> io::Result<PathBuf> {
        for (name, data) in self.oci_files()? {
            write(&dir.join(name), &data)?;
        }
        Ok(dir.to_path_buf())
    }

    /// Writes an OCI layout tarball (`oci-archive`) at `path`, gzip-compressed if `gzip`.
    pub fn write_oci_archive(&self, path: &Path, gzip: bool) -> io::Result<PathBuf> {
        let tar = tar_of(&self.oci_files()?)?;
        let bytes = if gzip { gzip_bytes(&tar)? } else { tar };
        write(path, &bytes)?;
        Ok(path.to_path_buf())
    }

    /// The files of the OCI layout, relative to its root.
    pub fn oci_files(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut files = Vec::new();
        let mut blob = |data: Vec<u8>| {
            let digest = sha256(&data);
            let size = data.len();
            files.push((format!("blobs/sha256/{}", hex_of(&digest)), data));
            (digest, size)
        };
        let mut layers = Vec::new();
        for layer in &self.layers {
            let (digest, size) = blob(gzip_bytes(layer)?);
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": size,
            }));
        }
        let (config_digest, config_size) = blob(self.config());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        });
        let (manifest_digest, manifest_size) =
            blob(serde_json::to_vec(&manifest).unwrap_or_default());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": { "org.opencontainers.image.ref.name": self.reference },
            }],
        });
        files.push((
            "index.json".to_owned(),
            serde_json::to_vec(&index).unwrap_or_default(),
        ));
        files.push((
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        Ok(files)
    }
}

/// A `docker save` tarball of busybox (plus `extra` files) at `dir/<name>.tar`.
pub fn busybox_archive(
    dir: &Path,
    reference: &str,
    extra: &[(&str, &[u8], u32)],
) -> io::Result<PathBuf> {
    ImageBuilder::busybox(reference, extra)?
        .write_docker_archive(&dir.join(format!("{}.tar", file_stem(reference))), false)
}

/// An OCI image layout directory of busybox (plus `extra` files) at `dir/<name>-oci/`.
pub fn busybox_oci_layout(
    dir: &Path,
    reference: &str,
    extra: &[(&str, &[u8], u32)],
) -> io::Result<PathBuf> {
    ImageBuilder::busybox(reference, extra)?
        .write_oci_layout(&dir.join(format!("{}-oci", file_stem(reference))))
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn file_stem(reference: &str) -> String {
    reference
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A tar of plain files (parents implied), as an image tarball holds.
fn tar_of(files: &[(String, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, name, data.as_slice())?;
    }
    builder.into_inner()
}

/// gzip of `data`.
pub fn gzip_bytes(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}

fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    let named = |e: io::Error, what: &Path| {
        io::Error::new(e.kind(), format!("write {}: {e}", what.display()))
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| named(e, parent))?;
    }
    fs::write(path, data).map_err(|e| named(e, path))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_busybox_is_static() {
        assert!(is_static_elf(
            &busybox_binary().expect("busybox-static is installed")
        ));
        assert!(!is_static_elf(&fs::read("/bin/ls").expect("read /bin/ls")));
    }

    #[test]
    fn a_file_that_is_not_elf_is_not_static() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b"\x7fELF\x02\x01"));
    }
}
