//! Pin directory guard: a private directory on bpffs for one test's maps.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    cleanup::{Resource, track, untrack},
    names::unique_name,
};

/// `/sys/fs/bpf/<prefix><unique>`, removed with everything pinned in it on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    tracked: u64,
}

impl PinDir {
    /// Creates the directory, mounting bpffs first if the host has none.
    pub fn new(prefix: &str) -> Self {
        strait_host::mounts::ensure_bpffs().expect("bpffs mounted at /sys/fs/bpf");
        let path = Path::new(strait_host::paths::BPFFS).join(unique_name(prefix));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let tracked = track(Resource::PinDir(path.clone()));
        Self { path, tracked }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        untrack(self.tracked);
        remove(&self.path);
    }
}

/// Removes the directory and everything pinned in it. Unlinking a pin drops the kernel's
/// reference; maps and links go when nothing else holds them.
pub(crate) fn remove(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        eprintln!("warning: failed to remove {}: {e}", path.display());
    }
}
