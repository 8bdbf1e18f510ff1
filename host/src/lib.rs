//! Host facts shared by the agent, `netctl`, the test harness and xtask: where Strait keeps its
//! state, where the kernel's cgroup2 and BPF filesystems are mounted, and how an agent's build
//! is identified.

pub mod agent;
pub mod mounts;
pub mod paths;
