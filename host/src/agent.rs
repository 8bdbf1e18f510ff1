//! What identifies a node agent's build, shared by the agent (which reports it on its Node),
//! the control plane (which counts the agents up to date) and `netctl` (which upgrades them).
//!
//! An agent's version is its crate version plus a build id, `0.1.0+3f2a9c1b7d40`: the first
//! 12 hex digits of the sha256 of its executable. The crate version alone would not change
//! when a node is upgraded to a rebuilt binary of the same release; the digest does, and
//! anyone can compute it from the file without running it.

use std::{fs, io, path::Path};

use sha2::{Digest as _, Sha256};

/// The Node annotation where the agent reports its version, and the DaemonSet annotation
/// that says which version every node should run.
pub const VERSION_ANNOTATION: &str = "strait.dev/agent-version";
/// Marks a DaemonSet whose daemons are host processes (the agents), not pods: the DaemonSet
/// controller makes no pods for it.
pub const HOST_AGENT_ANNOTATION: &str = "strait.dev/host-agent";
/// The DaemonSet that shows the agents: `kubectl get ds -n kube-system strait-agent`.
pub const DAEMON_SET_NAMESPACE: &str = "kube-system";
/// See [`DAEMON_SET_NAMESPACE`].
pub const DAEMON_SET_NAME: &str = "strait-agent";
/// Hex digits of the digest kept in a build id: enough to tell builds apart, short enough to
/// read in a table (as git's short hashes).
const BUILD_ID_LEN: usize = 12;

/// The build id of the executable at `binary`: the first 12 hex digits of its sha256.
pub fn build_id(binary: &Path) -> io::Result<String> {
    let mut file = fs::File::open(binary)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex[..BUILD_ID_LEN].to_owned())
}

/// The version string of an agent of crate version `crate_version` and build `build_id`.
pub fn version(crate_version: &str, build_id: &str) -> String {
    format!("{crate_version}+{build_id}")
}

/// The version every agent should run: `annotated` (the DaemonSet's annotation) if set,
/// otherwise the newest of the versions nodes report, by crate version (numerically); among
/// builds of the same crate version, the one most nodes run, then the greatest string, so
/// the answer does not depend on the order nodes are listed in. `None` when nothing is known.
pub fn desired_version<'a>(
    annotated: Option<&'a str>,
    reported: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    if let Some(version) = annotated.filter(|v| !v.is_empty()) {
        return Some(version.to_owned());
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for version in reported.into_iter().filter(|v| !v.is_empty()) {
        match counts.iter_mut().find(|(v, _)| *v == version) {
            Some((_, count)) => *count += 1,
            None => counts.push((version, 1)),
        }
    }
    counts
        .into_iter()
        .max_by(|(a, a_count), (b, b_count)| {
            release(a)
                .cmp(&release(b))
                .then(a_count.cmp(b_count))
                .then(a.cmp(b))
        })
        .map(|(version, _)| version.to_owned())
}

/// The numeric parts of a version's release, `0.1.10+abc` → `[0, 1, 10]`; parts that are not
/// numbers count as 0, so an odd version sorts low instead of failing.
fn release(version: &str) -> Vec<u64> {
    let release = version.split(['+', '-']).next().unwrap_or_default();
    release
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_build_id_changes_with_the_file() {
        let dir = std::env::temp_dir().join(format!("strait-build-id-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent");
        fs::write(&path, b"binary").unwrap();
        let first = build_id(&path).unwrap();
        // sha256("binary") = 9a3a45d0...
        assert_eq!(first, "9a3a45d01531");
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\0")
            .unwrap();
        assert_ne!(build_id(&path).unwrap(), first);
        assert_eq!(
            build_id(&dir.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(version("0.1.0", &first), "0.1.0+9a3a45d01531");
    }

    #[test]
    fn the_annotation_decides_the_desired_version() {
        assert_eq!(
            desired_version(Some("0.1.0+aaa"), ["0.2.0+bbb"]),
            Some("0.1.0+aaa".to_owned())
        );
        // An empty annotation is no annotation.
        assert_eq!(
            desired_version(Some(""), ["0.2.0+bbb"]),
            Some("0.2.0+bbb".to_owned())
        );
        assert_eq!(desired_version(None, []), None);
    }

    #[test]
    fn without_it_the_newest_reported_version_is_desired() {
        // 0.10 is newer than 0.9 (numerically, not as strings).
        assert_eq!(
            desired_version(None, ["0.9.0+aaa", "0.10.0+bbb", "0.9.0+aaa"]),
            Some("0.10.0+bbb".to_owned())
        );
        // Two builds of one release: the one most nodes run, whatever the order.
        for order in [
            ["0.1.0+bbb", "0.1.0+aaa", "0.1.0+aaa"],
            ["0.1.0+aaa", "0.1.0+aaa", "0.1.0+bbb"],
        ] {
            assert_eq!(desired_version(None, order), Some("0.1.0+aaa".to_owned()));
        }
        assert_eq!(
            desired_version(None, ["0.1.0+bbb", "0.1.0+aaa"]),
            Some("0.1.0+bbb".to_owned())
        );
        assert_eq!(
            desired_version(None, ["odd", "0.0.1+a", ""]),
            Some("0.0.1+a".to_owned())
        );
    }
}
