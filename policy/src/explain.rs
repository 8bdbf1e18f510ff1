//! One connection's verdict, both ends: the sender's egress and the receiver's ingress. A
//! connection passes only if both allow it; replies then pass as part of it.

use std::{fmt, net::IpAddr};

use crate::{
    compile::{Compiled, Decision},
    model::{Direction, Protocol},
};

/// The verdicts of a connection from one address to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// At the sender, when it is a compiled pod; `NotIsolated` otherwise.
    pub egress: Decision,
    /// At the receiver, when it is a compiled pod; `NotIsolated` otherwise.
    pub ingress: Decision,
}

impl Explanation {
    /// Whether the connection is allowed.
    pub fn allows(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

fn describe(decision: &Decision, direction: Direction, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match decision {
        Decision::NotIsolated => write!(
            f,
            "{direction}: allowed, no policy selects the pod for {direction}"
        ),
        Decision::Host => write!(
            f,
            "{direction}: allowed, the node may always reach its pods"
        ),
        Decision::Allowed(rule) => write!(f, "{direction}: allowed by {rule}"),
        Decision::Denied { policies } => write!(
            f,
            "{direction}: denied: isolated by {} and no rule allows it",
            policies.join(", ")
        ),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe(&self.egress, Direction::Egress, f)?;
        f.write_str("; ")?;
        describe(&self.ingress, Direction::Ingress, f)
    }
}

/// The verdict for a connection from `from` (a pod's `namespace/name`, or an address) to
/// `to`, on `protocol` and destination `port`.
pub fn explain(
    compiled: &Compiled,
    from: Endpoint<'_>,
    to: Endpoint<'_>,
    protocol: Protocol,
    port: u16,
) -> Explanation {
    let identity = |end: &Endpoint<'_>| match end {
        Endpoint::Pod(key, _) => compiled
            .pod_identity
            .get(*key)
            .copied()
            .unwrap_or(crate::identity::WORLD),
        Endpoint::Address(ip) => compiled.identity_of(*ip),
    };
    let policy = |end: &Endpoint<'_>| match end {
        Endpoint::Pod(key, _) => compiled.endpoints.get(*key),
        Endpoint::Address(_) => None,
    };
    let egress = policy(&from).map_or(Decision::NotIsolated, |p| {
        p.decide(Direction::Egress, identity(&to), protocol, port)
    });
    let ingress = policy(&to).map_or(Decision::NotIsolated, |p| {
        p.decide(Direction::Ingress, identity(&from), protocol, port)
    });
    Explanation { egress, ingress }
}

/// One end of a connection.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint<'a> {
    /// A pod, by `namespace/name`, with its address.
    Pod(&'a str, IpAddr),
    /// Anything else (a node, an outside address).
    Address(IpAddr),
}
