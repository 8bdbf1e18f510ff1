//! A container's rootfs: the image's layers as overlayfs lower directories under a private,
//! writable upper directory.

use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags, mount, umount2},
};

use crate::{Image, ImageError};

/// mount(2) copies its data argument into one page; longer option strings are refused.
const MOUNT_DATA_MAX: usize = 4095;

/// The overlayfs mount data for `layers` (lowest first) under `upper`, with `work` as overlayfs's
/// work directory: `lowerdir=TOP:…:BOTTOM,upperdir=…,workdir=…`.
///
/// overlayfs lists the topmost lower directory first. `:`, `,` and `\` in paths are escaped
/// with a backslash, which overlayfs's option parser understands.
pub fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = layers.iter().rev().map(|l| escape(l)).collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        escape(upper),
        escape(work)
    )
}

fn escape(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ':' | ',' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Mounts `image`'s rootfs at `target` (created if missing). The writable layer lives in
/// `scratch`: `scratch/upper` and `scratch/work`, which must be on one filesystem that can hold
/// an overlayfs upper directory (not overlayfs itself, for instance).
pub fn mount_rootfs(image: &Image, scratch: &Path, target: &Path) -> Result<(), ImageError> {
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for dir in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(dir).map_err(ImageError::io("create", dir))?;
    }
    // overlayfs needs at least one lower directory; an image without layers gets an empty one.
    let layers = if image.layers.is_empty() {
        let empty = scratch.join("empty");
        fs::create_dir_all(&empty).map_err(ImageError::io("create", &empty))?;
        vec![empty]
    } else {
        image.layers.clone()
    };
    let data = overlay_options(&layers, &upper, &work);
    if data.len() > MOUNT_DATA_MAX {
        return Err(ImageError::MountDataTooLong {
            target: target.to_path_buf(),
            len: data.len(),
            max: MOUNT_DATA_MAX,
        });
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| ImageError::Mount {
        action: "mount",
        target: target.to_path_buf(),
        source,
    })
}

/// Detaches the rootfs mounted at `target` (lazily: processes still inside keep it alive until
/// they leave). Not being mounted, or `target` not existing, is success, so teardown can retry.
pub fn unmount_rootfs(target: &Path) -> Result<(), ImageError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
        Err(source) => Err(ImageError::Mount {
            action: "unmount",
            target: target.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_topmost_layer_first() {
        let layers = [
            PathBuf::from("/s/layers/base"),
            PathBuf::from("/s/layers/top"),
        ];
        assert_eq!(
            overlay_options(&layers, Path::new("/c/upper"), Path::new("/c/work")),
            "lowerdir=/s/layers/top:/s/layers/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn escapes_separators_in_paths() {
        let layers = [PathBuf::from("/a:b,c\\d")];
        assert_eq!(
            overlay_options(&layers, Path::new("/u,p"), Path::new("/w:k")),
            "lowerdir=/a\\:b\\,c\\\\d,upperdir=/u\\,p,workdir=/w\\:k"
        );
    }
}
