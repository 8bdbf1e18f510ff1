//! Containers through runc: OCI bundles, cgroups v1 and v2, and the child subreaper.
//!
//! - [`spec`] turns the agent's [`ContainerConfig`] into an OCI `config.json` (pure).
//! - [`cgroup`] finds the host's hierarchies and reads a container's OOM kills and memory.
//! - [`reaper`] makes the process a child subreaper and owns **all** waiting for children:
//!   once [`Reaper::install`] ran, nothing else in the process may wait for a child (no
//!   `Command::output`, no `tokio::process`); see the module's documentation.
//! - [`runc`] drives the runc command line through the reaper.

pub mod cgroup;
pub mod reaper;
pub mod runc;
pub mod spec;

pub use cgroup::{CgroupError, Hierarchies};
pub use reaper::{Exit, ExitStatus, Reaper, Spawned};
pub use runc::{Created, Runc, RuncError, State, Status, Stdio, write_bundle};
pub use spec::{ContainerConfig, Mount, Resources, oci_config};
