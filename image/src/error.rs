//! The crate's one error type. Every variant names the file, blob or reference at fault.

use std::{io, path::PathBuf};

/// What can go wrong importing, resolving or mounting an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation on the store, an input or a mount point failed.
    #[error("failed to {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The reference does not follow the Docker reference grammar.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The input is neither an OCI layout nor a docker-archive.
    #[error("{} is neither an OCI image layout nor a docker-archive tarball", path.display())]
    UnknownFormat { path: PathBuf },
    /// A JSON document of the input (index, manifest, config) could not be parsed.
    #[error("failed to parse {document} in {}", archive.display())]
    Json {
        document: String,
        archive: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The input is well-formed JSON but does not describe an image we can import.
    #[error("{document} in {}: {reason}", archive.display())]
    Malformed {
        document: String,
        archive: PathBuf,
        reason: String,
    },
    /// A blob the input refers to is not in it.
    #[error("blob {blob} is missing from {}", archive.display())]
    MissingBlob { blob: String, archive: PathBuf },
    /// A blob's content does not hash to the digest it is referred to by.
    #[error("blob {blob} in {}: digest mismatch (content is {actual})", archive.display())]
    DigestMismatch {
        blob: String,
        archive: PathBuf,
        actual: String,
    },
    /// A layer's uncompressed content does not hash to the diffID the image config lists.
    #[error("layer {layer} in {}: diffID mismatch (config says {expected}, content is {actual})", archive.display())]
    DiffIdMismatch {
        layer: String,
        archive: PathBuf,
        expected: String,
        actual: String,
    },
    /// A digest we cannot verify (not sha256 or sha512 hex) or that is malformed.
    #[error("unsupported digest `{digest}` in {}", archive.display())]
    UnsupportedDigest { digest: String, archive: PathBuf },
    /// Reading or decompressing a tar stream (a layer or the input tarball) failed: truncated,
    /// corrupt gzip, or a broken tar header.
    #[error("failed to read {what} in {}", archive.display())]
    Read {
        what: String,
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A tar entry that would land outside its layer directory, or that we refuse to create.
    #[error("{what} in {}: entry `{entry}` {reason}", archive.display())]
    UnsafeEntry {
        what: String,
        archive: PathBuf,
        entry: String,
        reason: &'static str,
    },
    /// Creating an entry of a layer on disk failed.
    #[error("failed to unpack entry `{entry}` of {what} in {}", archive.display())]
    Unpack {
        what: String,
        archive: PathBuf,
        entry: String,
        #[source]
        source: io::Error,
    },
    /// An image record in the store cannot be read back.
    #[error("corrupt image record {}: {reason}", path.display())]
    CorruptRecord { path: PathBuf, reason: String },
    /// The overlayfs mount data is longer than the kernel accepts in one page.
    #[error("overlay mount data for {} is {len} bytes, more than the kernel's limit of {max}", target.display())]
    MountDataTooLong {
        target: PathBuf,
        len: usize,
        max: usize,
    },
    /// mount(2) or umount2(2) failed.
    #[error("failed to {action} overlay rootfs at {}", target.display())]
    Mount {
        action: &'static str,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
