//! The Strait node agent as a library, so its binary and its tests build the same thing.
//!
//! - [`dataplane`]: the only code that turns desired state into BPF map entries, and the loader
//!   of the BPF object.
//! - [`config`]: the agent's configuration and the parsers behind its flags.
//! - [`manifest`]: desired services from a file of Services and EndpointSlices.
//!
//! - [`kubelet`]: joining a cluster, the Node and its Lease, pods through runc and strait-cni,
//!   and the watch-driven dataplane manager.

pub mod config;
pub mod dataplane;
pub mod kubelet;
pub mod manifest;
