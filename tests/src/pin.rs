//! Pin directory guard: a private directory on bpffs for one test's maps.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::names::unique_name;

/// `/sys/fs/bpf/strait-test-<unique>`, removed with everything pinned in it on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Creates the directory, mounting bpffs first if the host has none.
    pub fn new() -> Self {
        strait_host::mounts::ensure_bpffs().expect("bpffs mounted at /sys/fs/bpf");
        let path = Path::new(strait_host::paths::BPFFS).join(format!("strait-test-{}", unique_name("p")));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
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
