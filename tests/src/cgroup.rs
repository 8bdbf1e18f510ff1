//! cgroup2 subtree guard: cgroup programs in tests attach here, never to the root.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use nix::{sys::signal, unistd::Pid};

use crate::{
    cleanup::{Resource, track, untrack},
    names::unique_name,
};

/// A uniquely named cgroup2 directory under the host's cgroup2 mount. On drop, processes
/// still inside are killed and the directory removed (attached programs go with it).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    tracked: u64,
}

impl Cgroup {
    /// Creates `<cgroup2 mount>/<prefix><unique>`.
    pub fn new(prefix: &str) -> Self {
        let root = strait_host::mounts::cgroup2_mount().expect("a cgroup2 mount");
        let path = root.join(unique_name(prefix));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        let tracked = track(Resource::Cgroup(path.clone()));
        Self { path, tracked }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        untrack(self.tracked);
        remove(&self.path);
    }
}

/// Kills what is left in the cgroup (moving this process out instead, if it is inside) and
/// removes the directory.
pub(crate) fn remove(path: &Path) {
    for _attempt in 0..50 {
        if let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if u32::try_from(pid) == Ok(std::process::id()) {
                    // A benchmark that moved itself in leaves rather than killing itself.
                    if let Some(parent) = path.parent() {
                        let _moved = fs::write(parent.join("cgroup.procs"), "0");
                    }
                    continue;
                }
                let _gone = signal::kill(Pid::from_raw(pid), signal::Signal::SIGKILL);
            }
        }
        match fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("warning: cgroup {} could not be removed", path.display());
}
