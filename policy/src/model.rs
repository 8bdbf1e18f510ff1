//! NetworkPolicy v1 read into a form with its defaults applied and every optional field's
//! meaning made explicit, validated the way kube-apiserver validates it.
//!
//! The distinctions the specification draws and users trip over are kept apart here:
//! - a direction the policy does not name (absent from `policyTypes`) leaves traffic alone, one
//!   it names with no rules denies everything ([`Policy::ingress`] is `None` versus
//!   `Some(vec![])`);
//! - an absent or empty `from`/`to` allows every peer, an absent or empty `ports` every port
//!   ([`Rule::peers`] and [`Rule::ports`] are `None`);
//! - a peer with only a `podSelector` selects in the policy's namespace, one with only a
//!   `namespaceSelector` selects every pod of those namespaces ([`Peer::Pods`]).

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
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

struct Errors(Vec<FieldError>);

impl Errors {
    fn invalid(&mut self, field: &str, value: impl fmt::Display, why: &str) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: format!("Invalid value: \"{value}\": {why}"),
        });
    }

    fn unsupported(&mut self, field: &str, value: &str, supported: &str) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: format!("Unsupported value: \"{value}\": supported values: {supported}"),
        });
    }

    fn required(&mut self, field: &str, why: &str) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: format!("Required value: {why}"),
        });
    }
}

fn selector(
    value: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    field: &str,
    errors: &mut Errors,
) -> LabelSelector {
    // An absent selector in a NetworkPolicy means "everything" wherever one is optional.
    let Some(value) = value else {
        return LabelSelector::everything();
    };
    let json = serde_json::to_value(value).unwrap_or_default();
    LabelSelector::from_object(&json).unwrap_or_else(|e| {
        errors.invalid(field, json, &e.to_string());
        LabelSelector::nothing()
    })
}

fn parse_net(text: &str, field: &str, errors: &mut Errors) -> Option<IpNet> {
    match text.parse::<IpNet>() {
        Ok(net) => Some(net.trunc()),
        Err(_) => {
            errors.invalid(
                field,
                text,
                "must be a valid CIDR (e.g. 10.0.0.0/16 or fd00::/64)",
            );
            None
        }
    }
}

fn block(b: &IPBlock, field: &str, errors: &mut Errors) -> Option<Peer> {
    let cidr = parse_net(&b.cidr, &format!("{field}.cidr"), errors)?;
    let mut except = Vec::new();
    for (i, text) in b.except.iter().flatten().enumerate() {
        let at = format!("{field}.except[{i}]");
        let Some(net) = parse_net(text, &at, errors) else {
            continue;
        };
        // kube-apiserver: every except must be strictly inside the cidr.
        if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
            errors.invalid(&at, text, "must be a strict subset of `cidr`");
            continue;
        }
        except.push(net);
    }
    Some(Peer::Block { cidr, except })
}

fn peer(p: &NetworkPolicyPeer, field: &str, errors: &mut Errors) -> Option<Peer> {
    let named = usize::from(p.pod_selector.is_some())
        .max(usize::from(p.namespace_selector.is_some()))
        + usize::from(p.ip_block.is_some());
    if named == 0 {
        errors.required(field, "must specify a peer");
        return None;
    }
    if named > 1 {
        errors.0.push(FieldError {
            field: field.to_owned(),
            message: "Forbidden: may not specify both ipBlock and another peer".to_owned(),
        });
        return None;
    }
    if let Some(b) = &p.ip_block {
        return block(b, &format!("{field}.ipBlock"), errors);
    }
    let namespaces = p
        .namespace_selector
        .as_ref()
        .map(|s| selector(Some(s), &format!("{field}.namespaceSelector"), errors));
    let pods = selector(
        p.pod_selector.as_ref(),
        &format!("{field}.podSelector"),
        errors,
    );
    Some(Peer::Pods { namespaces, pods })
}

/// A valid IANA service name, as container port names must be.
fn port_name_problem(name: &str) -> Option<&'static str> {
    if name.len() > 15 {
        return Some("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Some("must not begin or end with a hyphen, nor contain adjacent hyphens");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("must contain at least one letter (a-z)");
    }
    None
}

fn port(p: &NetworkPolicyPort, field: &str, errors: &mut Errors) -> Option<Port> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let protocol_name = p.protocol.as_deref().unwrap_or("TCP");
    let Some(protocol) = Protocol::parse(protocol_name) else {
        errors.unsupported(
            &format!("{field}.protocol"),
            protocol_name,
            "\"SCTP\", \"TCP\", \"UDP\"",
        );
        return None;
    };
    let in_range = |n: i32| u16::try_from(n).ok().filter(|n| *n > 0);
    let port = match (&p.port, p.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => {
            errors.required(
                &format!("{field}.port"),
                "must be specified when endPort is specified",
            );
            return None;
        }
        (Some(IntOrString::Int(n)), end) => {
            let Some(start) = in_range(*n) else {
                errors.invalid(
                    &format!("{field}.port"),
                    n,
                    "must be between 1 and 65535, inclusive",
                );
                return None;
            };
            let stop = match end {
                None => start,
                Some(e) => match in_range(e) {
                    Some(stop) if stop >= start => stop,
                    _ => {
                        errors.invalid(
                            &format!("{field}.endPort"),
                            e,
                            "must be greater than or equal to `port`",
                        );
                        return None;
                    }
                },
            };
            PortMatch::Range(start, stop)
        }
        (Some(IntOrString::String(name)), None) => {
            if let Some(why) = port_name_problem(name) {
                errors.invalid(&format!("{field}.port"), name, why);
                return None;
            }
            PortMatch::Named(name.clone())
        }
        (Some(IntOrString::String(_)), Some(_)) => {
            errors.invalid(
                &format!("{field}.endPort"),
                "",
                "may not be specified when `port` is non-numeric",
            );
            return None;
        }
    };
    Some(Port { protocol, port })
}

/// Reads and validates `policy`. Every error is collected, so a user fixes them in one go.
pub fn parse(policy: &NetworkPolicy) -> Result<Policy, InvalidPolicy> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let name = policy.metadata.name.clone().unwrap_or_default();
    let mut errors = Errors(Vec::new());
    let spec = policy.spec.clone().unwrap_or_default();
    let selector = selector(spec.pod_selector.as_ref(), "spec.podSelector", &mut errors);
    let (mut ingress_named, mut egress_named) = (false, false);
    for (i, t) in spec.policy_types.iter().flatten().enumerate() {
        match t.as_str() {
            "Ingress" => ingress_named = true,
            "Egress" => egress_named = true,
            other => errors.unsupported(
                &format!("spec.policyTypes[{i}]"),
                other,
                "\"Egress\", \"Ingress\"",
            ),
        }
    }
    // Without policyTypes: Ingress always, Egress when the policy has egress rules.
    let (governs_ingress, governs_egress) = if spec.policy_types.is_some() {
        (ingress_named, egress_named)
    } else {
        (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty()))
    };
    let read_ports = |ports: Option<&Vec<NetworkPolicyPort>>, field: &str, errors: &mut Errors| {
        let ports = ports.filter(|p| !p.is_empty())?;
        Some(
            ports
                .iter()
                .enumerate()
                .filter_map(|(i, p)| port(p, &format!("{field}.ports[{i}]"), errors))
                .collect(),
        )
    };
    let read_peers = |peers: Option<&Vec<NetworkPolicyPeer>>, field: &str, errors: &mut Errors| {
        let peers = peers.filter(|p| !p.is_empty())?;
        Some(
            peers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| peer(p, &format!("{field}[{i}]"), errors))
                .collect(),
        )
    };
    let ingress: Vec<Rule> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| Rule {
            peers: read_peers(
                r.from.as_ref(),
                &format!("spec.ingress[{i}].from"),
                &mut errors,
            ),
            ports: read_ports(r.ports.as_ref(), &format!("spec.ingress[{i}]"), &mut errors),
        })
        .collect();
    let egress: Vec<Rule> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| Rule {
            peers: read_peers(r.to.as_ref(), &format!("spec.egress[{i}].to"), &mut errors),
            ports: read_ports(r.ports.as_ref(), &format!("spec.egress[{i}]"), &mut errors),
        })
        .collect();
    if !errors.0.is_empty() {
        return Err(InvalidPolicy {
            policy: format!("{namespace}/{name}"),
            errors: errors.0,
        });
    }
    Ok(Policy {
        namespace,
        name,
        selector,
        ingress: governs_ingress.then_some(ingress),
        egress: governs_egress.then_some(egress),
    })
}

/// Whether `ip` is in the block: inside `cidr`, outside every `except`.
pub fn block_contains(cidr: &IpNet, except: &[IpNet], ip: IpAddr) -> bool {
    cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
}
