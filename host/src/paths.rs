//! Well-known paths of a production install. Tests and local clusters pass their own,
//! prefixed per instance, so several can run on one machine at once.

/// Node state: pod sandboxes, checkpoints, IP allocations.
pub const STATE_DIR: &str = "/var/lib/strait";
/// Configuration files.
pub const CONFIG_DIR: &str = "/etc/strait";
/// Unix sockets (the agent's local API, which `strait-cni` calls).
pub const RUN_DIR: &str = "/run/strait";
/// Where the BPF filesystem is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Pinned maps and links of the node's dataplane.
pub const PIN_DIR: &str = "/sys/fs/bpf/strait";
/// The node's image store: unpacked layers and image records (`strait-image`).
pub const IMAGE_DIR: &str = "/var/lib/strait/images";
