//! Imports real busybox images (docker-archive, OCI layout, OCI archive), mounts them with
//! overlayfs and runs a shell inside with chroot. Needs root (mount, mknod, chown, xattrs).
//!
//! Every test works in its own temporary directory; a mounted rootfs is unmounted on drop,
//! panics included, so tests run in parallel and leave nothing mounted.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use strait_image::build::{Entry, ImageBuilder};
use strait_image::{Image, ImageError, ImageStore, mount_rootfs, unmount_rootfs};
use strait_tests::image::{busybox_archive, busybox_oci_layout};
use tempfile::TempDir;

/// A mounted rootfs, unmounted on drop.
struct Rootfs {
    target: PathBuf,
}

impl Rootfs {
    fn mount(image: &Image, dir: &Path) -> Self {
        let target = dir.join("rootfs");
        mount_rootfs(image, &dir.join("scratch"), &target).expect("mount the rootfs");
        Self { target }
    }

    /// Runs `script` with the image's busybox sh, chrooted into the rootfs.
    fn sh(&self, script: &str) -> String {
        let output = Command::new("chroot")
            .arg(&self.target)
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("run chroot");
        assert!(
            output.status.success(),
            "`{script}` in {}: {}{}",
            self.target.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if let Err(e) = unmount_rootfs(&self.target) {
            eprintln!("{e}");
        }
    }
}

fn store(dir: &TempDir) -> ImageStore {
    ImageStore::open(dir.path().join("store")).expect("open the store")
}

/// Every path under the store, with file sizes: what "the store is unchanged" compares.
fn snapshot(root: &Path) -> BTreeSet<(PathBuf, u64)> {
    let mut paths = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            }
            let size = if meta.is_file() { meta.len() } else { 0 };
            paths.insert((entry.path().strip_prefix(root).unwrap().to_path_buf(), size));
        }
    }
    paths
}

#[test]
fn docker_archive_imports_mounts_and_runs() {
    let dir = TempDir::new().unwrap();
    let archive = busybox_archive(
        dir.path(),
        "busybox:test",
        &[("/etc/motd", b"hello\n", 0o644)],
    );
    let store = store(&dir);

    let imported = store.import(&archive).expect("import the docker-archive");
    assert_eq!(imported.len(), 1);
    let image = &imported[0];
    assert_eq!(image.reference, "docker.io/library/busybox:test");
    assert_eq!(image.config.cmd, ["sh"]);
    assert_eq!(image.config.env, ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    assert!(image.id.starts_with("sha256:"));
    assert_eq!(image.layers.len(), 1);
    assert_eq!(store.resolve("busybox:test").unwrap().as_ref(), Some(image));
    assert_eq!(store.resolve(&image.id).unwrap().as_ref(), Some(image));
    assert_eq!(store.resolve("busybox:other").unwrap(), None);
    assert_eq!(store.list().unwrap(), imported);

    let rootfs = Rootfs::mount(image, dir.path());
    assert_eq!(rootfs.sh("echo hi"), "hi\n");
    assert_eq!(rootfs.sh("cat /etc/motd; id -u"), "hello\n0\n");
    // Writes land in the container's upper directory, never in the shared layer.
    rootfs.sh("echo scratch > /tmp/written");
    assert!(dir.path().join("scratch/upper/tmp/written").is_file());
    assert!(!image.layers[0].join("tmp/written").exists());
}

#[test]
fn oci_layout_whiteouts_hide_lower_files() {
    let dir = TempDir::new().unwrap();
    let layout = ImageBuilder::busybox(
        "registry.local:5000/team/app:v1",
        &[
            ("/etc/motd", b"gone\n", 0o644),
            ("/data/old", b"old\n", 0o644),
            ("/data/sub/older", b"older\n", 0o644),
        ],
    )
    .unwrap()
    .with_layer(&[
        Entry::whiteout("/etc/motd"),
        Entry::dir("/data", 0o755),
        Entry::opaque("/data"),
        Entry::file("/data/new", b"new\n", 0o600),
    ])
    .unwrap()
    .write_oci_layout(&dir.path().join("layout"))
    .unwrap();
    let store = store(&dir);

    let imported = store.import(&layout).expect("import the OCI layout");
    let image = &imported[0];
    assert_eq!(image.reference, "registry.local:5000/team/app:v1");
    assert!(
        image
            .digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_eq!(image.layers.len(), 2);

    let rootfs = Rootfs::mount(image, dir.path());
    assert!(
        !rootfs.target.join("etc/motd").exists(),
        "the whiteout hides /etc/motd"
    );
    assert!(rootfs.target.join("etc/passwd").exists());
    assert_eq!(
        rootfs.sh("ls -A /data"),
        "new\n",
        "the opaque /data hides the lower files"
    );
    assert_eq!(rootfs.sh("echo hi"), "hi\n");
    // By digest, as the kubelet reports image ids.
    let by_digest = format!(
        "registry.local:5000/team/app@{}",
        image.digest.as_deref().unwrap()
    );
    assert_eq!(store.resolve(&by_digest).unwrap().as_ref(), Some(image));
}

#[test]
fn gzip_oci_archive_imports() {
    let dir = TempDir::new().unwrap();
    let archive = ImageBuilder::busybox("app", &[])
        .unwrap()
        .write_oci_archive(&dir.path().join("app.oci.tar.gz.bin"), true)
        .unwrap();
    let store = store(&dir);
    let imported = store.import(&archive).expect("import the gzip oci-archive");
    assert_eq!(imported[0].reference, "docker.io/library/app:latest");
    let rootfs = Rootfs::mount(&imported[0], dir.path());
    assert_eq!(rootfs.sh("echo hi"), "hi\n");
}

#[test]
fn reimports_and_second_tags_share_layers() {
    let dir = TempDir::new().unwrap();
    let image = ImageBuilder::busybox("busybox:one", &[]).unwrap();
    let one = image
        .write_docker_archive(&dir.path().join("one.tar.gz"), true)
        .unwrap();
    let two = ImageBuilder {
        reference: "example.com/busybox:two".to_owned(),
        ..image.clone()
    }
    .write_oci_layout(&dir.path().join("two"))
    .unwrap();
    let store = store(&dir);

    let first = store.import(&one).unwrap();
    let layer = &first[0].layers[0];
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let before = inode(layer);
    let again = store.import(&one).unwrap();
    assert_eq!(again, first, "re-importing is idempotent");
    assert_eq!(inode(layer), before, "the layer is not unpacked again");

    let second = store.import(&two).unwrap();
    assert_eq!(
        second[0].layers, first[0].layers,
        "a second tag shares the layers"
    );
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(
        fs::read_dir(dir.path().join("store/layers"))
            .unwrap()
            .count(),
        1
    );
    let references: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(
        references,
        ["docker.io/library/busybox:one", "example.com/busybox:two"]
    );
}

#[test]
fn corrupt_blob_is_refused_and_store_unchanged() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    store
        .import(&busybox_archive(dir.path(), "busybox:base", &[]))
        .unwrap();
    let before = snapshot(store.root());

    let layout = ImageBuilder::busybox("busybox:bad", &[])
        .unwrap()
        .with_layer(&[Entry::file("/extra", b"extra", 0o644)])
        .unwrap()
        .write_oci_layout(&dir.path().join("bad"))
        .unwrap();
    // Corrupt the top layer's blob: same size, one byte changed.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let layer_digest = manifest["layers"][1]["digest"].as_str().unwrap().to_owned();
    let mut bytes = fs::read(blob(&layer_digest)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(blob(&layer_digest), bytes).unwrap();

    let error = store
        .import(&layout)
        .expect_err("a corrupt blob is refused");
    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&layer_digest) && message.contains("digest mismatch"),
        "{message}"
    );
    assert_eq!(snapshot(store.root()), before, "the store is unchanged");
    assert_eq!(store.resolve("busybox:bad").unwrap(), None);
}

#[test]
fn truncated_tarballs_are_refused_and_store_unchanged() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let before = snapshot(store.root());
    let image = ImageBuilder::busybox("busybox:cut", &[]).unwrap();
    for gzip in [false, true] {
        let path = image
            .write_docker_archive(&dir.path().join(format!("cut-{gzip}.tar")), gzip)
            .unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();

        let error = store
            .import(&path)
            .expect_err("a truncated tarball is refused");
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "the error names the tarball: {message}"
        );
        assert_eq!(
            snapshot(store.root()),
            before,
            "the store is unchanged ({message})"
        );
    }
    let garbage = dir.path().join("garbage");
    fs::write(&garbage, b"not an image at all").unwrap();
    let error = store
        .import(&garbage)
        .expect_err("a file that is no image is refused");
    assert!(matches!(error, ImageError::UnknownFormat { .. }), "{error}");
    assert_eq!(snapshot(store.root()), before);
}

#[test]
fn oci_layout_helper_names_the_image() {
    let dir = TempDir::new().unwrap();
    let layout = busybox_oci_layout(dir.path(), "busybox:helper", &[]);
    let imported = store(&dir).import(&layout).unwrap();
    assert_eq!(imported[0].reference, "docker.io/library/busybox:helper");
}
