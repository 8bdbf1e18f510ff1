//! Pin directory guard: a private directory on bpffs for one test's maps.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::names::unique_name;

/// `/sys/fs/bpf/<prefix><unique>`, removed with everything pinned in it on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Creates the directory, mounting bpffs first if the host has none.
    pub fn new(prefix: &str) -> Self {
        strait_host::mounts::ensure_bpffs().expect("bpffs mounted at /sys/fs/bpf");
        let path = Path::new(strait_host::paths::BPFFS).join(unique_name(prefix));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unlinking a pin drops the kernel's reference; maps go when no program holds them.
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: failed to remove {}: {e}", self.path.display());
        }
    }
}
