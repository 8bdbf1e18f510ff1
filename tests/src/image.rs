//! Test images: [`strait_image::build`]'s busybox images, for fixtures that only need one
//! written somewhere (a failure to build one fails the test, with the reason).

use std::path::{Path, PathBuf};

/// A `docker save` tarball of busybox (plus `extra` files) at `dir/<name>.tar`.
pub fn busybox_archive(dir: &Path, reference: &str, extra: &[(&str, &[u8], u32)]) -> PathBuf {
    strait_image::build::busybox_archive(dir, reference, extra)
        .unwrap_or_else(|e| panic!("build the busybox image {reference}: {e}"))
}

/// An OCI image layout directory of busybox (plus `extra` files) at `dir/<name>-oci/`.
pub fn busybox_oci_layout(dir: &Path, reference: &str, extra: &[(&str, &[u8], u32)]) -> PathBuf {
    strait_image::build::busybox_oci_layout(dir, reference, extra)
        .unwrap_or_else(|e| panic!("build the busybox image {reference}: {e}"))
}
