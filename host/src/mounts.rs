//! Finding (and, for bpffs, making) the kernel filesystems the dataplane needs.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::mount::{MsFlags, mount};

/// Errors finding or mounting kernel filesystems.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("failed to read /proc/mounts")]
    ReadMounts(#[source] io::Error),
    #[error("no cgroup2 filesystem is mounted (looked in /proc/mounts)")]
    NoCgroup2,
    #[error("failed to mount bpffs at {path}")]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// One line of /proc/mounts: device, mount point, filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
}

/// Parses /proc/mounts. Mount points with spaces are octal-escaped by the kernel (`\040`).
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = fields.next()?;
            let target = fields.next()?;
            let fstype = fields.next()?;
            Some(MountEntry {
                source: source.to_owned(),
                target: PathBuf::from(unescape_octal(target)),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && let Ok(value) = u8::from_str_radix(digits, 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first cgroup2 mount point in a /proc/mounts text. A hybrid host (cgroup v1 controllers
/// plus a v2 hierarchy) mounts it at /sys/fs/cgroup/unified; a modern host at /sys/fs/cgroup.
pub fn find_cgroup2(mounts: &[MountEntry]) -> Option<&Path> {
    mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.target.as_path())
}

fn read_mounts() -> Result<Vec<MountEntry>, MountError> {
    let text = fs::read_to_string("/proc/mounts").map_err(MountError::ReadMounts)?;
    Ok(parse_mounts(&text))
}

/// This host's cgroup2 mount point, where cgroup sock_addr programs attach.
pub fn cgroup2_mount() -> Result<PathBuf, MountError> {
    let mounts = read_mounts()?;
    find_cgroup2(&mounts)
        .map(Path::to_path_buf)
        .ok_or(MountError::NoCgroup2)
}

/// Serializes check-then-mount within this process; a second mount would hide the first.
static BPFFS_LOCK: Mutex<()> = Mutex::new(());

/// Mounts the BPF filesystem at [`crate::paths::BPFFS`] unless one is there already, as Cilium's
/// agent does: pinned maps and links need it, and minimal hosts do not mount it.
pub fn ensure_bpffs() -> Result<(), MountError> {
    let _guard = BPFFS_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let target = Path::new(crate::paths::BPFFS);
    let mounted = read_mounts()?
        .iter()
        .any(|m| m.fstype == "bpf" && m.target == target);
    if mounted {
        return Ok(());
    }
    mount(
        Some("bpffs"),
        target,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| MountError::MountBpffs {
        path: target.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
sysfs /sys sysfs rw,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
bpffs /sys/fs/bpf bpf rw,relatime 0 0
";

    #[test]
    fn finds_cgroup2_on_a_hybrid_host() {
        let mounts = parse_mounts(HYBRID);
        assert_eq!(
            find_cgroup2(&mounts),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_cgroup2_on_a_unified_host() {
        let mounts = parse_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n");
        assert_eq!(find_cgroup2(&mounts), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn no_cgroup2_is_none() {
        let mounts = parse_mounts("cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n");
        assert_eq!(find_cgroup2(&mounts), None);
    }

    #[test]
    fn unescapes_spaces_in_mount_points() {
        let mounts = parse_mounts("none /mnt/my\\040dir tmpfs rw 0 0\n");
        assert_eq!(mounts[0].target, Path::new("/mnt/my dir"));
    }
}
