//! Strait's test harness: throwaway kernel objects that clean up after themselves.
//!
//! Every guard here creates a uniquely named object (network namespace, veth pair, cgroup2
//! subtree, bpffs pin directory) and removes it on drop, including when the test panics, so
//! tests run in parallel and leave nothing behind. Names carry the test process id, so a
//! leftover from a crashed run never collides with a live one.
//!
//! Traps this harness exists for (see shared/MACHINE.md): clients must run inside a namespace
//! (the sandbox answers outbound connections from the root namespace); veth checksum offload
//! is turned off on both ends (a wrong checksum rewrite passes silently otherwise); `setns`
//! only moves the calling thread, so in-namespace work runs on a dedicated thread or process.

pub mod cgroup;
pub mod cleanup;
pub mod cluster;
pub mod cmd;
pub mod control;
pub mod dns;
pub mod etcd;
pub mod http;
pub mod image;
pub mod names;
pub mod netns;
pub mod netpol;
pub mod packet;
pub mod pin;
pub mod sim;

pub use cgroup::Cgroup;
pub use cleanup::clean_up_on_signal;
pub use cluster::Cluster;
pub use control::ControlPlane;
pub use etcd::Etcd;
pub use http::{EchoServer, HttpServer, UdpEchoServer, http_get};
pub use names::unique_name;
pub use netns::{Netns, VethPair, plug_into_bridge};
pub use pin::PinDir;
