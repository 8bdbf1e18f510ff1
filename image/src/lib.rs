//! The node's image store.
//!
//! Images arrive as files (there is no registry on our nodes): an OCI image layout directory,
//! an OCI layout tarball, or a `docker save` tarball, optionally gzip-compressed. [`ImageStore::import`]
//! verifies every blob it is given a digest for, unpacks each layer once under the sha256 of its
//! uncompressed tar (its diffID), and records `reference -> config + layers`. A container's rootfs is
//! then an overlayfs mount of those layers with a private upper directory ([`mount_rootfs`]).
//!
//! On-disk layout under the store root:
//!
//! ```text
//! layers/<diffID hex>/      one unpacked layer, whiteouts already in overlayfs form
//! images/<sha256 of reference>.json   one record per normalized reference
//! tmp/                      staging for imports; renamed into place only when complete
//! ```
//!
//! Invariants: a directory under `layers/` is always complete (it is unpacked in `tmp/` and renamed),
//! and a record only names layers that exist (layers are committed before records).

pub mod build;
mod error;
mod mount;
mod reference;
mod source;
mod store;
mod unpack;

pub use error::ImageError;
pub use mount::{mount_rootfs, overlay_options, unmount_rootfs};
pub use reference::normalize_reference;
pub use store::{Image, ImageConfig, ImageStore};
