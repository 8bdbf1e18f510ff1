//! Host facts shared by the agent, `netctl`, the test harness and xtask: where Strait keeps its
//! state, and where the kernel's cgroup2 and BPF filesystems are mounted.

pub mod mounts;
pub mod paths;
