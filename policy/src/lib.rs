//! NetworkPolicy compiled for an eBPF dataplane: the pure core shared by the agent (which
//! writes the result into its maps), `netctl policy explain` (which computes a verdict from the
//! API objects) and the flow log (which names the rule behind each verdict).
//!
//! - [`model`]: policies read and validated, defaults applied, optional fields made explicit.
//! - [`identity`]: numeric identities for pods (labels, namespace labels, ipBlock membership)
//!   and for ipBlock prefixes.
//! - [`compile`]: per-pod policy entries `(peer identity, protocol, port range) → rule` and the
//!   address → identity cache.
//! - [`explain`]: the verdict for one connection, both ends.

pub mod compile;
pub mod explain;
pub mod identity;
pub mod model;

pub use compile::{
    Cluster, Compiled, Decision, EndpointPolicy, Entry, NamedPort, PodInfo, RuleRef, Side, compile,
};
pub use explain::{Endpoint, Explanation, explain};
pub use identity::{ANY, HOST, Identities, IdentityKey, Labels, WORLD};
pub use model::{
    Direction, FieldError, InvalidPolicy, Peer, Policy, Port, PortMatch, Protocol, parse,
};
