//! Pod address management: the node agent serves it, the plugin asks it.
//!
//! The plugin holds no state between invocations, so every address lives in the node agent:
//! an [`Allocator`] over the node's pod CIDR (pure, no IO), wrapped by [`Ipam`], which writes
//! every change to a JSON state file before answering, so a restarted agent keeps every
//! pod's address. [`serve`] answers the plugin's [`Client`] over a unix stream socket.
//!
//! Wire protocol: the client connects, writes one [`Request`] as one JSON line, reads one
//! [`Response`] as one JSON line, and closes. Examples:
//!
//! ```text
//! > {"op":"allocate","containerId":"abc","ifname":"eth0","podNamespace":"default","podName":"web-0"}
//! < {"result":"allocated","containerId":"abc","ifname":"eth0","podNamespace":"default","podName":"web-0","address":"10.244.1.2"}
//! > {"op":"release","containerId":"abc","ifname":"eth0"}
//! < {"result":"released","address":"10.244.1.2"}
//! > {"op":"list"}
//! < {"result":"list","cidr":"10.244.1.0/24","allocations":[...]}
//! < {"result":"error","kind":"exhausted","message":"pod CIDR 10.244.1.0/30 has no free address"}
//! ```

mod allocator;
mod client;
mod server;
mod store;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use allocator::{Allocator, PodCidr};
pub use client::{Client, ClientError};
pub use server::serve;
pub use store::Ipam;

/// One request line from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Give (container, interface) an address, or the one it already has.
    Allocate(AllocateRequest),
    /// Return the address of (container, interface) to the pool; unknown owners are fine.
    Release(ReleaseRequest),
    /// Every allocation, for CHECK and for debugging.
    List,
}

/// Who asks for an address. (`container_id`, `ifname`) is the owner: the same pair gets the
/// same address until it is released, so a retried ADD does not leak addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocateRequest {
    pub container_id: String,
    pub ifname: String,
    /// Recorded for humans reading the state file; not part of the owner key.
    #[serde(default)]
    pub pod_namespace: String,
    #[serde(default)]
    pub pod_name: String,
}

/// Which allocation to release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    pub container_id: String,
    pub ifname: String,
}

/// One address held by one (container, interface).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub pod_namespace: String,
    #[serde(default)]
    pub pod_name: String,
    pub address: IpAddr,
}

/// One response line from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Response {
    Allocated(Allocation),
    /// `address` is `None` when the owner held nothing (a repeated DEL).
    Released {
        address: Option<IpAddr>,
    },
    List {
        cidr: String,
        allocations: Vec<Allocation>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// Why the agent refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// No free address is left in the pod CIDR.
    Exhausted,
    /// The request was malformed (bad JSON, empty container id).
    InvalidRequest,
    /// The state file could not be written; nothing changed.
    Persist,
}

/// Errors of the allocator and its state file.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("invalid pod CIDR `{cidr}`: {reason}")]
    BadCidr { cidr: String, reason: String },
    #[error("pod CIDR {cidr} has no free address")]
    Exhausted { cidr: String },
    #[error("invalid IPAM request: {0}")]
    InvalidRequest(String),
    #[error("address {address} of {container_id}/{ifname} is not a pod address of {cidr}")]
    OutsideCidr {
        address: IpAddr,
        container_id: String,
        ifname: String,
        cidr: String,
    },
    #[error("address {address} is held twice in the IPAM state (by {first} and {second})")]
    Duplicate {
        address: IpAddr,
        first: String,
        second: String,
    },
    #[error("failed to read IPAM state {path}")]
    Load {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to decode IPAM state {path}")]
    Corrupt {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("IPAM state {path} is for pod CIDR {found}, not {expected}")]
    CidrMismatch {
        path: std::path::PathBuf,
        found: String,
        expected: String,
    },
    #[error("failed to write IPAM state {path}")]
    Persist {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl IpamError {
    /// The kind reported to clients.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Exhausted { .. } => ErrorKind::Exhausted,
            Self::Persist { .. } => ErrorKind::Persist,
            _ => ErrorKind::InvalidRequest,
        }
    }
}
