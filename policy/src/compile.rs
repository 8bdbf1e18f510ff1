//! The compiler: from the cluster's pods, namespaces and policies to what each pod's policy
//! map holds, and the ipcache that turns addresses into identities. Pure.
//!
//! The semantics are NetworkPolicy v1's: a pod selected by any policy governing a direction
//! is isolated in that direction and accepts only the union of those policies' rules; a pod
//! no policy selects for a direction is not isolated. Replies of allowed connections are the
//! dataplane's business (conntrack), as is the node's own traffic to its pods ([`HOST`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;

use crate::{
    identity::{ANY, HOST, Identities, IdentityKey, Labels, WORLD},
    model::{Direction, Peer, Policy, PortMatch, Protocol},
};

/// A container port a policy can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// What the compiler needs of a pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `None` until the pod has an address; host-network pods have none here either (they
    /// share the node's and cannot be isolated).
    pub ip: Option<IpAddr>,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn port_named(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// The rule that allowed something: policy, direction and index in its rule list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    /// `namespace/name`.
    pub policy: String,
    pub direction: Direction,
    pub index: usize,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} rule {}", self.policy, self.direction, self.index)
    }
}

/// One policy-map entry: traffic with a peer of `identity` ([`ANY`]: every peer), over
/// `protocol` (`None`: every protocol), to `ports` (`None`: every port) is allowed by `rule`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub identity: u32,
    pub protocol: Option<Protocol>,
    pub ports: Option<(u16, u16)>,
    pub rule: RuleRef,
}

impl Entry {
    fn matches(&self, peer: u32, protocol: Protocol, port: u16) -> bool {
        (self.identity == ANY || self.identity == peer)
            && self.protocol.is_none_or(|p| p == protocol)
            && self.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
    }
}

/// One direction of one pod's policy: `None` when no policy governs it (everything allowed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// The policies isolating the pod in this direction, `namespace/name`.
    pub policies: Vec<String>,
    /// What they allow, deduplicated; the first rule (in policy order) that allows a key
    /// names it.
    pub entries: Vec<Entry>,
}

/// A pod's policy, both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    pub ingress: Option<Side>,
    pub egress: Option<Side>,
}

/// A verdict and its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No policy governs the direction.
    NotIsolated,
    /// The node itself talking to its pod.
    Host,
    /// A rule allows it.
    Allowed(RuleRef),
    /// Isolated by these policies, and none of their rules allows it.
    Denied { policies: Vec<String> },
}

impl Decision {
    /// Whether the packet passes.
    pub fn allows(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }
}

impl EndpointPolicy {
    /// The side for `direction`.
    pub fn side(&self, direction: Direction) -> Option<&Side> {
        match direction {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }

    /// The verdict for a connection with `peer` on `protocol`/`port` (the destination port),
    /// as the dataplane computes it from the same entries.
    pub fn decide(
        &self,
        direction: Direction,
        peer: u32,
        protocol: Protocol,
        port: u16,
    ) -> Decision {
        if direction == Direction::Ingress && peer == HOST {
            return Decision::Host;
        }
        let Some(side) = self.side(direction) else {
            return Decision::NotIsolated;
        };
        match side
            .entries
            .iter()
            .find(|e| e.matches(peer, protocol, port))
        {
            Some(entry) => Decision::Allowed(entry.rule.clone()),
            None => Decision::Denied {
                policies: side.policies.clone(),
            },
        }
    }
}

/// Everything a node programs.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Address (a /32 or /128 for pods, an ipBlock prefix otherwise) → identity. Addresses
    /// in none of them are [`WORLD`].
    pub ipcache: BTreeMap<IpNet, u32>,
    /// Each pod's identity, by `namespace/name`.
    pub pod_identity: BTreeMap<String, u32>,
    /// Each compiled pod's policy, by `namespace/name`.
    pub endpoints: BTreeMap<String, EndpointPolicy>,
    /// Things that compile but probably are not what the author meant (a named port no
    /// selected pod has).
    pub warnings: Vec<String>,
}

impl Compiled {
    /// The identity of an address, as the dataplane's ipcache lookup finds it.
    pub fn identity_of(&self, ip: IpAddr) -> u32 {
        self.ipcache
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map_or(WORLD, |(_, id)| *id)
    }
}

/// The cluster as the compiler sees it.
#[derive(Clone, Copy, Debug)]
pub struct Cluster<'a> {
    /// Namespace name → its labels (`kubernetes.io/metadata.name` included, as the API sets).
    pub namespaces: &'a BTreeMap<String, Labels>,
    pub pods: &'a [PodInfo],
    pub policies: &'a [Policy],
}

/// Who a rule's peers are.
enum Peers<'a> {
    Any,
    Some {
        identities: BTreeSet<u32>,
        /// The pods among them (for named ports in egress rules).
        pods: Vec<&'a PodInfo>,
    },
}

/// Compiles the policies of the pods `local` accepts (a node compiles its own pods), with
/// identities for every pod in the cluster (they are the peers).
pub fn compile(
    cluster: &Cluster<'_>,
    identities: &mut Identities,
    local: impl Fn(&PodInfo) -> bool,
) -> Compiled {
    let mut out = Compiled::default();
    let no_labels = Labels::new();

    // Every prefix any ipBlock names (cidrs and excepts): each is an LPM entry.
    let mut prefixes: BTreeSet<IpNet> = BTreeSet::new();
    for policy in cluster.policies {
        for direction in [Direction::Ingress, Direction::Egress] {
            for rule in policy.rules(direction).unwrap_or(&[]) {
                for peer in rule.peers.iter().flatten() {
                    if let Peer::Block { cidr, except } = peer {
                        prefixes.insert(*cidr);
                        prefixes.extend(except.iter().copied());
                    }
                }
            }
        }
    }
    let most_specific = |ip: IpAddr| {
        prefixes
            .iter()
            .filter(|p| p.contains(&ip))
            .max_by_key(|p| p.prefix_len())
            .copied()
    };

    let mut live = BTreeSet::new();
    let mut pod_ids: Vec<(u32, Option<IpNet>)> = Vec::with_capacity(cluster.pods.len());
    for pod in cluster.pods {
        let block = pod.ip.and_then(most_specific);
        let key = IdentityKey::Pod {
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            namespace_labels: cluster
                .namespaces
                .get(&pod.namespace)
                .unwrap_or(&no_labels)
                .clone(),
            block,
        };
        let id = identities.get_or_allocate(&key);
        live.insert(key);
        pod_ids.push((id, block));
        out.pod_identity.insert(pod.key(), id);
        if let Some(ip) = pod.ip {
            out.ipcache.insert(IpNet::from(ip), id);
        }
    }
    for prefix in &prefixes {
        let key = IdentityKey::Cidr(*prefix);
        let id = identities.get_or_allocate(&key);
        live.insert(key);
        out.ipcache.insert(*prefix, id);
    }
    identities.retain(&live);

    let namespace_matches = |selector: &Option<strait_api::selector::LabelSelector>,
                             own: &str,
                             namespace: &str| match selector {
        None => namespace == own,
        Some(s) => s.matches(cluster.namespaces.get(namespace).unwrap_or(&no_labels)),
    };
    let peers_of = |policy: &Policy, peers: Option<&Vec<Peer>>| -> Peers<'_> {
        let Some(peers) = peers else {
            return Peers::Any;
        };
        let mut identities = BTreeSet::new();
        let mut pods = Vec::new();
        for peer in peers {
            match peer {
                Peer::Pods {
                    namespaces,
                    pods: selector,
                } => {
                    for (pod, (id, _)) in cluster.pods.iter().zip(&pod_ids) {
                        if namespace_matches(namespaces, &policy.namespace, &pod.namespace)
                            && selector.matches(&pod.labels)
                        {
                            identities.insert(*id);
                            pods.push(pod);
                        }
                    }
                }
                Peer::Block { cidr, except } => {
                    let inside =
                        |p: &IpNet| cidr.contains(p) && !except.iter().any(|e| e.contains(p));
                    // A /0 is itself a prefix in the ipcache, so addresses outside every
                    // other prefix get its identity, never WORLD (which is then only the
                    // other address family's).
                    for prefix in prefixes.iter().filter(|p| inside(p)) {
                        if let Some(id) = out.ipcache.get(prefix) {
                            identities.insert(*id);
                        }
                    }
                    for (pod, (id, block)) in cluster.pods.iter().zip(&pod_ids) {
                        if block.as_ref().is_some_and(inside) {
                            identities.insert(*id);
                            pods.push(pod);
                        }
                    }
                }
            }
        }
        Peers::Some { identities, pods }
    };

    let mut warned = BTreeSet::new();
    for pod in cluster.pods.iter().filter(|p| p.ip.is_some() && local(p)) {
        let mut endpoint = EndpointPolicy::default();
        let selecting: Vec<&Policy> = cluster
            .policies
            .iter()
            .filter(|p| p.namespace == pod.namespace && p.selector.matches(&pod.labels))
            .collect();
        for direction in [Direction::Ingress, Direction::Egress] {
            let governing: Vec<&Policy> = selecting
                .iter()
                .copied()
                .filter(|p| p.rules(direction).is_some())
                .collect();
            if governing.is_empty() {
                continue;
            }
            let mut side = Side {
                policies: governing.iter().map(|p| p.key()).collect(),
                entries: Vec::new(),
            };
            let mut seen = BTreeSet::new();
            for policy in governing {
                for (index, rule) in policy.rules(direction).unwrap_or(&[]).iter().enumerate() {
                    let rule_ref = RuleRef {
                        policy: policy.key(),
                        direction,
                        index,
                    };
                    let peers = peers_of(policy, rule.peers.as_ref());
                    let peer_ids: Vec<u32> = match &peers {
                        Peers::Any => vec![ANY],
                        Peers::Some { identities, .. } => identities.iter().copied().collect(),
                    };
                    let mut add =
                        |identity: u32, protocol: Option<Protocol>, ports: Option<(u16, u16)>| {
                            if seen.insert((identity, protocol, ports)) {
                                side.entries.push(Entry {
                                    identity,
                                    protocol,
                                    ports,
                                    rule: rule_ref.clone(),
                                });
                            }
                        };
                    let Some(ports) = &rule.ports else {
                        for id in &peer_ids {
                            add(*id, None, None);
                        }
                        continue;
                    };
                    for port in ports {
                        match &port.port {
                            PortMatch::Any => {
                                for id in &peer_ids {
                                    add(*id, Some(port.protocol), None);
                                }
                            }
                            PortMatch::Range(lo, hi) => {
                                for id in &peer_ids {
                                    add(*id, Some(port.protocol), Some((*lo, *hi)));
                                }
                            }
                            // Ingress: the name is this pod's own port.
                            PortMatch::Named(name) if direction == Direction::Ingress => {
                                match pod.port_named(name, port.protocol) {
                                    Some(n) => {
                                        for id in &peer_ids {
                                            add(*id, Some(port.protocol), Some((n, n)));
                                        }
                                    }
                                    None => {
                                        if warned.insert((
                                            rule_ref.clone(),
                                            name.clone(),
                                            pod.key(),
                                        )) {
                                            out.warnings.push(format!(
                                                "{rule_ref}: pod {} has no {} port named \"{name}\"",
                                                pod.key(),
                                                port.protocol
                                            ));
                                        }
                                    }
                                }
                            }
                            // Egress: the name is each destination pod's port.
                            PortMatch::Named(name) => {
                                let candidates: Vec<&PodInfo> = match &peers {
                                    Peers::Any => cluster.pods.iter().collect(),
                                    Peers::Some { pods, .. } => pods.clone(),
                                };
                                let mut found = false;
                                for peer in candidates {
                                    if let (Some(n), Some(id)) = (
                                        peer.port_named(name, port.protocol),
                                        out.pod_identity.get(&peer.key()),
                                    ) {
                                        found = true;
                                        add(*id, Some(port.protocol), Some((n, n)));
                                    }
                                }
                                if !found
                                    && warned.insert((
                                        rule_ref.clone(),
                                        name.clone(),
                                        String::new(),
                                    ))
                                {
                                    out.warnings.push(format!(
                                        "{rule_ref}: no destination pod has a {} port named \"{name}\"",
                                        port.protocol
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            match direction {
                Direction::Ingress => endpoint.ingress = Some(side),
                Direction::Egress => endpoint.egress = Some(side),
            }
        }
        out.endpoints.insert(pod.key(), endpoint);
    }
    out
}
