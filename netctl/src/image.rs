//! `netctl image`: the node's image store, offline (nodes have no registry; images arrive as files).

use std::path::{Path, PathBuf};

use anyhow::Context;
use strait_image::{Image, ImageStore};

/// Imports every image in each of `files` (docker-archive or OCI archive tarballs, gzip or not,
/// or OCI layout directories) and prints what was imported.
pub(crate) fn import(store: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let store = open(store)?;
    for file in files {
        let images = store.import(file)?;
        for image in &images {
            println!("imported {} ({})", image.reference, short_id(image));
        }
    }
    Ok(())
}

/// Prints the store's images, one per line.
pub(crate) fn list(store: &Path) -> anyhow::Result<()> {
    let images = open(store)?.list()?;
    println!("{:<60} {:<12} {:>6}", "REFERENCE", "IMAGE ID", "LAYERS");
    for image in &images {
        println!(
            "{:<60} {:<12} {:>6}",
            image.reference,
            short_id(image),
            image.layers.len()
        );
    }
    Ok(())
}

fn open(store: &Path) -> anyhow::Result<ImageStore> {
    ImageStore::open(store).with_context(|| format!("open the image store {}", store.display()))
}

/// The first 12 hex digits of the id, as `docker images` shows it.
fn short_id(image: &Image) -> &str {
    let hex = image.id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}
