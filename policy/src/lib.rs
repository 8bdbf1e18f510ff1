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

use k8s_openapi::api::networking::v1::NetworkPolicy;
use sha2::{Digest as _, Sha256};

/// The Node annotation in which each agent names the policy set its maps hold (a
/// [`programmed_digest`]); `netctl policy apply` waits until every node names the current one.
pub const PROGRAMMED_ANNOTATION: &str = "policy.strait.dev/programmed";

/// A digest of a set of policies (their uids and resource versions), whatever the order:
/// equal on every node that programmed the same set.
pub fn programmed_digest<'a>(policies: impl Iterator<Item = &'a NetworkPolicy>) -> String {
    let mut versions: Vec<String> = policies
        .map(|p| {
            format!(
                "{}/{}",
                p.metadata.uid.as_deref().unwrap_or_default(),
                p.metadata.resource_version.as_deref().unwrap_or_default()
            )
        })
        .collect();
    versions.sort();
    let digest = Sha256::digest(versions.join(",").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub use compile::{
    Cluster, Compiled, Decision, EndpointPolicy, Entry, NamedPort, PodInfo, RuleRef, Side, compile,
};
pub use explain::{Endpoint, Explanation, explain};
pub use identity::{ANY, HOST, Identities, IdentityKey, Labels, WORLD};
pub use model::{
    Direction, FieldError, InvalidPolicy, Peer, Policy, Port, PortMatch, Protocol, parse,
};
