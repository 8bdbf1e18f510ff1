//! The host's cgroup hierarchies and what the agent reads from a container's cgroup.
//!
//! Two layouts exist. On a pure v2 host (`/sys/fs/cgroup` is cgroup2) one hierarchy holds
//! every controller. On a v1 or hybrid host (this test machine: `/sys/fs/cgroup` is a tmpfs
//! with one v1 mount per controller, and cgroup2 at `/sys/fs/cgroup/unified` with no resource
//! controllers) each controller has its own tree, and runc makes the container's cgroup
//! in every one of them, the named `name=systemd` tree and the unified one included.
//!
//! An absolute `cgroupsPath` is taken from the root of each hierarchy: `/strait/pod/c` is
//! `/sys/fs/cgroup/memory/strait/pod/c` on v1, `/sys/fs/cgroup/strait/pod/c` on v2. Mounts
//! are found in /proc/mounts, never assumed.

use std::{
    fs, io,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

/// What went wrong with a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to statfs {path}")]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no `{key}` line in {path}")]
    MissingKey { path: PathBuf, key: &'static str },
    #[error("no hierarchy has the {controller} controller")]
    NoController { controller: &'static str },
    #[error("failed to remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup path `{path}` must be absolute and must not be the root")]
    BadPath { path: String },
}

/// Whether resource controllers live in one cgroup2 tree or in per-controller v1 trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// v1 only, or hybrid (v1 controllers plus a cgroup2 mount without them).
    V1,
    /// One cgroup2 hierarchy at `/sys/fs/cgroup`.
    V2,
}

/// The mounted hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    pub mode: Mode,
    /// v1 mounts: the controllers (`["cpu"]`, `["cpu", "cpuacct"]`, `["name=systemd"]`) and
    /// the mount point. Empty on a pure v2 host.
    pub v1: Vec<(Vec<String>, PathBuf)>,
    /// The cgroup2 mount, if any (the whole tree on v2, `…/unified` on hybrid hosts).
    pub unified: Option<PathBuf>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Hierarchies {
    /// The host's hierarchies: the mode by statfs of /sys/fs/cgroup, the mounts from
    /// /proc/mounts.
    pub fn detect() -> Result<Self, CgroupError> {
        let statfs =
            nix::sys::statfs::statfs(CGROUP_ROOT).map_err(|source| CgroupError::Statfs {
                path: CGROUP_ROOT.into(),
                source,
            })?;
        let mode = if statfs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            Mode::V2
        } else {
            Mode::V1
        };
        let mounts = read("/proc/mounts")?;
        Ok(Self::from_mounts(mode, &mounts))
    }

    /// The hierarchies listed in `mounts` (the text of /proc/mounts).
    pub fn from_mounts(mode: Mode, mounts: &str) -> Self {
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_source, target, fstype, options, ..] = fields[..] else {
                continue;
            };
            let target = PathBuf::from(unescape(target));
            match fstype {
                "cgroup2" => {
                    unified.get_or_insert(target);
                }
                "cgroup" => {
                    let controllers = options
                        .split(',')
                        .filter(|o| is_controller(o))
                        .map(str::to_owned)
                        .collect();
                    v1.push((controllers, target));
                }
                _ => {}
            }
        }
        if mode == Mode::V2 {
            v1.clear();
        }
        Self { mode, v1, unified }
    }

    /// Where `cgroups_path` is in every hierarchy (v1 trees first, then the unified one).
    pub fn paths(&self, cgroups_path: &str) -> Vec<PathBuf> {
        let relative = cgroups_path.trim_start_matches('/');
        self.v1
            .iter()
            .map(|(_, mount)| mount.join(relative))
            .chain(self.unified.iter().map(|mount| mount.join(relative)))
            .collect()
    }

    /// Where `cgroups_path` is in the hierarchy that has `controller` ("memory", "cpu",
    /// "pids"): its v1 tree, or the cgroup2 tree on a v2 host.
    pub fn controller_path(
        &self,
        controller: &'static str,
        cgroups_path: &str,
    ) -> Result<PathBuf, CgroupError> {
        let relative = cgroups_path.trim_start_matches('/');
        let mount = match self.mode {
            Mode::V2 => self.unified.as_ref(),
            Mode::V1 => self
                .v1
                .iter()
                .find(|(controllers, _)| controllers.iter().any(|c| c == controller))
                .map(|(_, mount)| mount),
        };
        mount
            .map(|mount| mount.join(relative))
            .ok_or(CgroupError::NoController { controller })
    }

    /// How many times the kernel's OOM killer killed a process of the container (v1:
    /// `memory.oom_control`, v2: `memory.events`, both a line `oom_kill N`). Read it after the
    /// container stopped and before `runc delete` removes the cgroup.
    pub fn oom_kill_count(&self, cgroups_path: &str) -> Result<u64, CgroupError> {
        let file = match self.mode {
            Mode::V1 => "memory.oom_control",
            Mode::V2 => "memory.events",
        };
        let path = self.controller_path("memory", cgroups_path)?.join(file);
        let text = read(&path)?;
        flat_keyed(&text, "oom_kill").ok_or(CgroupError::MissingKey {
            path,
            key: "oom_kill",
        })
    }

    /// The container's memory use in bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub fn memory_usage(&self, cgroups_path: &str) -> Result<u64, CgroupError> {
        let file = match self.mode {
            Mode::V1 => "memory.usage_in_bytes",
            Mode::V2 => "memory.current",
        };
        let path = self.controller_path("memory", cgroups_path)?.join(file);
        let text = read(&path)?;
        text.trim().parse().map_err(|_| CgroupError::MissingKey {
            path,
            key: "a byte count",
        })
    }

    /// Removes `cgroups_path` and every cgroup below it, leaves first, in every hierarchy.
    /// Missing directories are fine. A cgroup that still has processes cannot go: the error
    /// names it (kill the processes first, e.g. with `runc kill --all` or [`Self::kill_all`]).
    pub fn remove_subtree(&self, cgroups_path: &str) -> Result<(), CgroupError> {
        check_path(cgroups_path)?;
        let mut first_error = None;
        for path in self.paths(cgroups_path) {
            if let Err(e) = remove_tree(&path) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends SIGKILL to every process in `cgroups_path` and below, in every hierarchy.
    pub fn kill_all(&self, cgroups_path: &str) -> Result<(), CgroupError> {
        check_path(cgroups_path)?;
        for path in self.paths(cgroups_path) {
            kill_tree(&path);
        }
        Ok(())
    }
}

/// The value of `key` in a flat-keyed cgroup file (`key value` per line), as `memory.events`
/// and `memory.oom_control` are.
pub fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Mount options of a v1 cgroup mount that name a hierarchy rather than a mount flag.
fn is_controller(option: &str) -> bool {
    const FLAGS: &[&str] = &[
        "rw",
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "relatime",
        "noatime",
        "nodiratime",
        "strictatime",
        "clone_children",
        "noprefix",
        "xattr",
        "favordynmods",
        "cpuset_v2_mode",
    ];
    !FLAGS.contains(&option) && !option.starts_with("release_agent=")
}

/// /proc/mounts escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if bytes[i] == b'\\'
            && let Some(byte) = octal
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_path(cgroups_path: &str) -> Result<(), CgroupError> {
    let trimmed = cgroups_path.trim_matches('/');
    if !cgroups_path.starts_with('/') || trimmed.is_empty() || trimmed.split('/').any(|c| c == "..")
    {
        return Err(CgroupError::BadPath {
            path: cgroups_path.to_owned(),
        });
    }
    Ok(())
}

fn read(path: impl AsRef<Path>) -> Result<String, CgroupError> {
    let path = path.as_ref();
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn subdirectories(path: &Path) -> Vec<PathBuf> {
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    for child in subdirectories(path) {
        remove_tree(&child)?;
    }
    // A cgroup whose last process just died stays busy for a moment.
    let mut attempt = 0;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

fn kill_tree(path: &Path) {
    for child in subdirectories(path) {
        kill_tree(&child);
    }
    let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid != std::process::id() as i32 {
            let _gone = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,xattr,release_agent=/x,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    const PURE_V2: &str = "\
proc /proc proc rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
";

    #[test]
    fn hybrid_mounts_give_every_hierarchy() {
        let h = Hierarchies::from_mounts(Mode::V1, HYBRID);
        assert_eq!(h.v1.len(), 4);
        assert_eq!(h.v1[1].0, ["cpu", "cpuacct"]);
        assert_eq!(h.v1[3].0, ["name=systemd"]);
        assert_eq!(
            h.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            h.controller_path("memory", "/strait/p/c").unwrap(),
            Path::new("/sys/fs/cgroup/memory/strait/p/c")
        );
        let paths = h.paths("/strait/p/c");
        assert_eq!(paths.len(), 5);
        assert_eq!(paths[4], Path::new("/sys/fs/cgroup/unified/strait/p/c"));
        assert!(h.controller_path("pids", "/x").is_err());
    }

    #[test]
    fn pure_v2_has_one_hierarchy() {
        let h = Hierarchies::from_mounts(Mode::V2, PURE_V2);
        assert!(h.v1.is_empty());
        assert_eq!(h.paths("/strait/c"), [Path::new("/sys/fs/cgroup/strait/c")]);
        assert_eq!(
            h.controller_path("memory", "/strait/c").unwrap(),
            Path::new("/sys/fs/cgroup/strait/c")
        );
    }

    #[test]
    fn oom_kill_lines_parse_in_both_versions() {
        let v2_events = "low 0\nhigh 0\nmax 57\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(flat_keyed(v2_events, "oom_kill"), Some(2));
        assert_eq!(flat_keyed(v2_events, "oom"), Some(2));
        let v1_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(flat_keyed(v1_control, "oom_kill"), Some(1));
        assert_eq!(flat_keyed("oom_kill_disable 0\n", "oom_kill"), None);
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn the_root_is_never_removed() {
        let h = Hierarchies::from_mounts(Mode::V2, PURE_V2);
        for bad in ["/", "", "relative/x", "/a/../.."] {
            assert!(h.remove_subtree(bad).is_err(), "{bad:?}");
        }
    }
}
