//! OCI runtime-spec `config.json` for one container, and the Kubernetes → cgroup conversions.
//!
//! Pure: [`ContainerConfig`] in, a [`serde_json::Value`] out. The defaults are those of
//! `runc spec` and containerd's CRI plugin (Docker's capability set, its masked and read-only
//! paths), so a container sees what it would see under a stock Kubernetes node.

use std::path::PathBuf;

use serde_json::{Value, json};

/// OCI runtime-spec version written into `config.json` (runc 1.1.5 speaks 1.0.2).
pub const OCI_VERSION: &str = "1.0.2";

/// The CFS period Kubernetes uses for CPU limits, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The soft and hard `RLIMIT_NOFILE` of container processes (`runc spec`'s value). runc sets
/// it from the `runc create` process with `prlimit`, so it must not exceed the agent's own
/// hard limit unless the agent has `CAP_SYS_RESOURCE` (the test sandbox does not: a limit of
/// 1048576 fails there with "error setting rlimit type 7: operation not permitted").
pub const NOFILE_LIMIT: u64 = 1024;

/// Docker's (and containerd's) default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from containers (containerd's `defaultMaskedPaths`).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths containers see read-only (containerd's `defaultReadonlyPaths`).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the agent decides about one container; [`oci_config`] turns it into `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The root filesystem (mounted or unpacked by the caller); absolute.
    pub rootfs: PathBuf,
    /// The command and its arguments (entrypoint + cmd, already resolved).
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// The working directory inside the container; absolute.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// The pod's network namespace (e.g. `/run/netns/NAME`) to join. `None` keeps the host's
    /// network namespace (a `hostNetwork` pod): no network namespace is created.
    pub netns: Option<PathBuf>,
    /// Bind mounts (volumes), after the defaults.
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    /// `linux.cgroupsPath`: absolute paths are taken from each hierarchy's root (see
    /// [`crate::cgroup`]). Give every node its own subtree.
    pub cgroups_path: String,
    pub readonly_rootfs: bool,
    /// Allocate a pseudo-terminal (needs `runc create --console-socket`, which the
    /// [`crate::runc`] wrapper does not drive; keep `false`).
    pub terminal: bool,
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub source: PathBuf,
    pub readonly: bool,
}

/// cgroup limits, in the units the OCI spec takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Bytes. The swap limit is set to the same value: no swap, as kubelet does.
    pub memory_limit: Option<i64>,
    /// v1 `cpu.shares` (runc converts to `cpu.weight` on v2, see [`shares_to_weight`]).
    pub cpu_shares: Option<u64>,
    /// Microseconds per period; the period defaults to [`CPU_PERIOD_US`].
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub pids_limit: Option<i64>,
}

/// The smallest and largest `cpu.shares` (kubelet's `MinShares`, `MaxShares`).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
/// The smallest CFS quota kubelet sets (`MinQuotaPeriod`), in microseconds.
pub const MIN_QUOTA_US: i64 = 1000;

/// A CPU request in millicores to `cpu.shares` (kubelet's `MilliCPUToShares`): 1024 per
/// core, at least [`MIN_SHARES`] (also for no request), at most [`MAX_SHARES`].
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = u64::try_from(milli_cpu)
        .unwrap_or(u64::MAX)
        .saturating_mul(1024)
        / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// A CPU limit in millicores to a CFS quota for `period_us` (kubelet's `MilliCPUToQuota`):
/// `None` for no limit (0), else at least [`MIN_QUOTA_US`].
pub fn milli_cpu_to_quota(milli_cpu: i64, period_us: u64) -> Option<i64> {
    if milli_cpu <= 0 {
        return None;
    }
    let period = i64::try_from(period_us).unwrap_or(i64::MAX);
    let quota = milli_cpu.saturating_mul(period) / 1000;
    Some(quota.max(MIN_QUOTA_US))
}

/// `cpu.shares` to cgroup v2 `cpu.weight`, runc's formula (`ConvertCPUSharesToCgroupV2Value`):
/// maps [2, 262144] onto [1, 10000]; 0 means unset and stays 0.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The OCI runtime-spec `config.json` for `config`.
pub fn oci_config(config: &ContainerConfig) -> Value {
    let capabilities: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let mut namespaces = vec![
        json!({ "type": "pid" }),
        json!({ "type": "ipc" }),
        json!({ "type": "uts" }),
        json!({ "type": "mount" }),
    ];
    if let Some(netns) = &config.netns {
        namespaces.push(json!({ "type": "network", "path": netns }));
    }
    let mut mounts = default_mounts();
    mounts.extend(config.mounts.iter().map(bind_mount));
    json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": config.terminal,
            "user": { "uid": config.uid, "gid": config.gid },
            "args": config.args,
            "env": config.env,
            "cwd": config.cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [
                { "type": "RLIMIT_NOFILE", "hard": NOFILE_LIMIT, "soft": NOFILE_LIMIT },
            ],
            "noNewPrivileges": false,
        },
        "root": { "path": config.rootfs, "readonly": config.readonly_rootfs },
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": config.cgroups_path,
            "resources": resources(&config.resources),
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    })
}

/// The mounts every container gets (those of `runc spec`, with /dev/shm and a read-only
/// cgroup filesystem as Docker adds them).
fn default_mounts() -> Vec<Value> {
    let mount = |destination: &str, kind: &str, source: &str, options: &[&str]| json!({ "destination": destination, "type": kind, "source": source, "options": options });
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

fn bind_mount(mount: &Mount) -> Value {
    let mode = if mount.readonly { "ro" } else { "rw" };
    json!({
        "destination": mount.destination,
        "type": "bind",
        "source": mount.source,
        "options": ["rbind", "rprivate", mode],
    })
}

fn resources(resources: &Resources) -> Value {
    // Deny every device; runc adds allow rules for the devices it creates (null, zero, full,
    // random, urandom, tty, pts, ptmx).
    let mut value = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(limit) = resources.memory_limit {
        value["memory"] = json!({ "limit": limit, "swap": limit });
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = resources.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = resources.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert(
            "period".into(),
            json!(resources.cpu_period.unwrap_or(CPU_PERIOD_US)),
        );
    } else if let Some(period) = resources.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        value["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = resources.pids_limit {
        value["pids"] = json!({ "limit": limit });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            rootfs: "/var/lib/strait/rootfs/c1".into(),
            args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 100,
            hostname: "web-0".into(),
            netns: Some("/run/netns/pod1".into()),
            mounts: vec![Mount {
                destination: "/data".into(),
                source: "/var/lib/strait/volumes/data".into(),
                readonly: true,
            }],
            resources: Resources {
                memory_limit: Some(16 << 20),
                cpu_shares: Some(512),
                cpu_quota: Some(50_000),
                cpu_period: None,
                pids_limit: Some(100),
            },
            cgroups_path: "/strait/pod1/c1".into(),
            readonly_rootfs: true,
            terminal: false,
        }
    }

    #[test]
    fn process_carries_user_args_env_and_docker_capabilities() {
        let spec = oci_config(&config());
        let process = &spec["process"];
        assert_eq!(process["args"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(process["env"], json!(["PATH=/bin"]));
        assert_eq!(process["user"], json!({ "uid": 1000, "gid": 100 }));
        assert_eq!(process["cwd"], "/");
        assert_eq!(process["terminal"], false);
        assert_eq!(process["noNewPrivileges"], false);
        let bounding = process["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), 14);
        assert!(bounding.contains(&json!("CAP_NET_BIND_SERVICE")));
        assert!(!bounding.contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(process["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(
            spec["root"],
            json!({ "path": "/var/lib/strait/rootfs/c1", "readonly": true })
        );
        assert_eq!(spec["hostname"], "web-0");
    }

    #[test]
    fn namespaces_join_the_pod_netns_by_path() {
        let spec = oci_config(&config());
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        let kinds: Vec<&str> = namespaces
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["pid", "ipc", "uts", "mount", "network"]);
        assert_eq!(namespaces[4]["path"], "/run/netns/pod1");

        let host_network = oci_config(&ContainerConfig {
            netns: None,
            ..config()
        });
        let namespaces = host_network["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces.iter().all(|n| n["type"] != "network"));
    }

    #[test]
    fn mounts_are_the_defaults_then_binds() {
        let spec = oci_config(&config());
        let mounts = spec["mounts"].as_array().unwrap();
        let destinations: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/data"
            ]
        );
        assert!(
            mounts[5]["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );
        assert!(
            mounts[6]["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );
        assert_eq!(
            mounts[7],
            json!({
                "destination": "/data",
                "type": "bind",
                "source": "/var/lib/strait/volumes/data",
                "options": ["rbind", "rprivate", "ro"],
            })
        );
    }

    #[test]
    fn resources_set_limits_without_swap() {
        let spec = oci_config(&config());
        let linux = &spec["linux"];
        assert_eq!(linux["cgroupsPath"], "/strait/pod1/c1");
        let resources = &linux["resources"];
        assert_eq!(
            resources["memory"],
            json!({ "limit": 16 << 20, "swap": 16 << 20 })
        );
        assert_eq!(
            resources["cpu"],
            json!({ "shares": 512, "quota": 50_000, "period": 100_000 })
        );
        assert_eq!(resources["pids"], json!({ "limit": 100 }));
        assert_eq!(
            resources["devices"],
            json!([{ "allow": false, "access": "rwm" }])
        );
        assert!(
            linux["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        assert!(
            linux["readonlyPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/sys"))
        );
    }

    #[test]
    fn no_limits_leave_the_resources_out() {
        let spec = oci_config(&ContainerConfig {
            resources: Resources::default(),
            ..config()
        });
        let resources = &spec["linux"]["resources"];
        assert!(resources.get("memory").is_none());
        assert!(resources.get("cpu").is_none());
        assert!(resources.get("pids").is_none());
    }

    #[test]
    fn milli_cpu_to_shares_matches_kubelet() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (100, 102),
            (250, 256),
            (1000, 1024),
            (1_000_000, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}m");
        }
    }

    #[test]
    fn milli_cpu_to_quota_matches_kubelet() {
        assert_eq!(milli_cpu_to_quota(0, CPU_PERIOD_US), None);
        assert_eq!(milli_cpu_to_quota(1, CPU_PERIOD_US), Some(1000));
        assert_eq!(milli_cpu_to_quota(250, CPU_PERIOD_US), Some(25_000));
        assert_eq!(milli_cpu_to_quota(1500, CPU_PERIOD_US), Some(150_000));
    }

    #[test]
    fn shares_to_weight_matches_runc() {
        for (shares, weight) in [(0, 0), (2, 1), (1024, 39), (262_144, 10_000)] {
            assert_eq!(shares_to_weight(shares), weight, "{shares} shares");
        }
    }
}
