//! NetworkPolicy v1 read into a form with its defaults applied and every optional field's
//! meaning made explicit, once the API's own validator has accepted it.
//!
//! The distinctions the specification draws and users trip over are kept apart here:
//! - a direction the policy does not name (absent from `policyTypes`) leaves traffic alone, one
//!   it names with no rules denies everything ([`Policy::ingress`] is `None` versus
//!   `Some(vec![])`);
//! - an absent or empty `from`/`to` allows every peer, an absent or empty `ports` every port
//!   ([`Rule::peers`] and [`Rule::ports`] are `None`);
//! - a peer with only a `podSelector` selects in the policy's namespace, one with only a
//!   `namespaceSelector` selects every pod of those namespaces ([`Peer::Pods`]).

use std::fmt;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use strait_api::selector::LabelSelector;

/// A transport protocol a NetworkPolicy port can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number (the dataplane's key).
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    /// The protocol for an IP protocol number.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            132 => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The protocol by its Kubernetes name (`TCP`, `UDP`, `SCTP`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// Traffic into a pod, or out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// One NetworkPolicy, defaults applied.
#[derive(Clone, Debug)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// The pods (of [`Policy::namespace`]) the policy applies to.
    pub selector: LabelSelector,
    /// `None`: the policy does not govern ingress. `Some(rules)`: selected pods accept only
    /// what one of the rules allows (nothing, when there are none).
    pub ingress: Option<Vec<Rule>>,
    /// As [`Policy::ingress`], for traffic the selected pods send.
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// The rules of one direction.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// `namespace/name`, how flows and explanations name the policy.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One `ingress` or `egress` rule: traffic to or from any of `peers` on any of `ports`.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `None`: every peer (the field was absent or empty).
    pub peers: Option<Vec<Peer>>,
    /// `None`: every port and protocol.
    pub ports: Option<Vec<Port>>,
}

/// Who a rule allows.
#[derive(Clone, Debug)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces matching `namespaces` (`None`: the policy's own
    /// namespace).
    Pods {
        namespaces: Option<LabelSelector>,
        pods: LabelSelector,
    },
    /// Addresses in `cidr` but in none of `except`.
    Block { cidr: IpNet, except: Vec<IpNet> },
}

/// One `ports` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub protocol: Protocol,
    pub port: PortMatch,
}

/// Which ports of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// Every port (`port` absent).
    Any,
    /// `port` through `endPort` (or `port` alone), inclusive.
    Range(u16, u16),
    /// A container port name, resolved per pod: the selected pod's own for ingress, the peer's
    /// for egress.
    Named(String),
}

/// A field of the policy that is wrong, as kube-apiserver words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The path, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    /// What is wrong, e.g. `Invalid value: "10.0.0.0/33": must be a valid CIDR`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every field error of one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPolicy {
    /// `namespace/name`.
    pub policy: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        write!(
            f,
            "NetworkPolicy.networking.k8s.io \"{}\" is invalid: {}",
            self.policy,
            errors.join(", ")
        )
    }
}

impl std::error::Error for InvalidPolicy {}

fn selector(
    value: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> LabelSelector {
    // An absent selector in a NetworkPolicy means "everything" wherever one is optional.
    value.map_or_else(LabelSelector::everything, |s| {
        let json = serde_json::to_value(s).unwrap_or_default();
        // Validated already; a selector that still fails to convert selects nothing.
        LabelSelector::from_object(&json).unwrap_or_else(|_| LabelSelector::nothing())
    })
}

fn net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().map(|n| n.trunc())
}

fn peer(p: &NetworkPolicyPeer) -> Option<Peer> {
    if let Some(b) = &p.ip_block {
        return Some(Peer::Block {
            cidr: net(&b.cidr)?,
            except: b.except.iter().flatten().filter_map(|e| net(e)).collect(),
        });
    }
    Some(Peer::Pods {
        namespaces: p.namespace_selector.as_ref().map(|s| selector(Some(s))),
        pods: selector(p.pod_selector.as_ref()),
    })
}

fn port(p: &NetworkPolicyPort) -> Option<Port> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?;
    let port = match &p.port {
        None => PortMatch::Any,
        Some(IntOrString::Int(n)) => {
            let start = u16::try_from(*n).ok()?;
            let stop = p.end_port.map_or(Some(start), |e| u16::try_from(e).ok())?;
            PortMatch::Range(start, stop.max(start))
        }
        Some(IntOrString::String(name)) => PortMatch::Named(name.clone()),
    };
    Some(Port { protocol, port })
}

/// Reads `policy`, after checking it as the API server does (`strait_api::validate`, the one
/// validator): every error is reported at once, so a user fixes them in one go.
pub fn parse(policy: &NetworkPolicy) -> Result<Policy, InvalidPolicy> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let name = policy.metadata.name.clone().unwrap_or_default();
    let object = serde_json::to_value(policy).unwrap_or_default();
    let causes = strait_api::validate::validate("networking.k8s.io", "NetworkPolicy", &object);
    if !causes.is_empty() {
        return Err(InvalidPolicy {
            policy: format!("{namespace}/{name}"),
            errors: causes
                .into_iter()
                .map(|c| FieldError {
                    field: c.field,
                    message: c.message,
                })
                .collect(),
        });
    }
    let spec = policy.spec.clone().unwrap_or_default();
    let named = |t: &str| spec.policy_types.iter().flatten().any(|p| p == t);
    // Without policyTypes: Ingress always, Egress when the policy has egress rules.
    let (governs_ingress, governs_egress) = if spec.policy_types.is_some() {
        (named("Ingress"), named("Egress"))
    } else {
        (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty()))
    };
    // Absent and empty lists mean the same: every peer, every port.
    let peers = |list: Option<&Vec<NetworkPolicyPeer>>| {
        list.filter(|l| !l.is_empty())
            .map(|l| l.iter().filter_map(peer).collect())
    };
    let ports = |list: Option<&Vec<NetworkPolicyPort>>| {
        list.filter(|l| !l.is_empty())
            .map(|l| l.iter().filter_map(port).collect())
    };
    let ingress = spec
        .ingress
        .iter()
        .flatten()
        .map(|r| Rule {
            peers: peers(r.from.as_ref()),
            ports: ports(r.ports.as_ref()),
        })
        .collect();
    let egress = spec
        .egress
        .iter()
        .flatten()
        .map(|r| Rule {
            peers: peers(r.to.as_ref()),
            ports: ports(r.ports.as_ref()),
        })
        .collect();
    Ok(Policy {
        namespace,
        name,
        selector: selector(spec.pod_selector.as_ref()),
        ingress: governs_ingress.then_some(ingress),
        egress: governs_egress.then_some(egress),
    })
}
