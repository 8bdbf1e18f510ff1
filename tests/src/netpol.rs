//! The upstream network-policy e2e model (kubernetes `test/e2e/network/netpol`), as data:
//! namespaces x, y and z (labelled `ns=<name>`), pods a, b and c in each (labelled
//! `pod=<name>`), each serving ports 80 and 81 over TCP and UDP under the names
//! `serve-<port>-<tcp|udp>`. Each [`Scenario`] is a sequence of steps (policies to apply,
//! labels to change) with the reachability the specification requires after each, written
//! by hand from the upstream suite. The compiler's tests compute the tables; the cluster
//! tier probes them with real connections.

use serde_json::{Value, json};

/// The namespaces of the model.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The pods of each namespace.
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// The ports every pod serves, over TCP and UDP.
pub const PORTS: [u16; 2] = [80, 81];

/// A probe's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

/// A label change.
#[derive(Clone, Debug)]
pub enum Relabel {
    /// Set a label on a pod (`x/a`), keeping its others.
    Pod(&'static str, &'static str, &'static str),
    /// Set a label on a namespace.
    Namespace(&'static str, &'static str, &'static str),
}

/// Whether a connection `from` → `to` (pod keys `x/a`) on protocol and port is allowed.
pub type Expect = fn(from: &str, to: &str, proto: Proto, port: u16) -> bool;

/// One step of a scenario.
#[derive(Clone, Debug)]
pub struct Step {
    /// NetworkPolicy objects to create or replace (by namespace and name).
    pub apply: Vec<Value>,
    /// Policies to delete, `namespace/name`.
    pub delete: Vec<&'static str>,
    pub relabel: Vec<Relabel>,
    pub expect: Expect,
}

/// One upstream test case.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The upstream test's name, shortened.
    pub name: &'static str,
    /// What to probe, beyond TCP 80, TCP 81 and UDP 80.
    pub also: Vec<(Proto, u16)>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The (protocol, port) pairs to probe.
    pub fn probes(&self) -> Vec<(Proto, u16)> {
        let mut probes = vec![(Proto::Tcp, 80), (Proto::Tcp, 81), (Proto::Udp, 80)];
        probes.extend(self.also.iter().copied());
        probes
    }
}

/// The namespace of a pod key.
pub fn ns(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}

/// The pod name of a pod key.
pub fn pod(key: &str) -> &str {
    key.split('/').nth(1).unwrap_or_default()
}

/// Every pod key, `x/a` first.
pub fn pod_keys() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}")))
        .collect()
}

/// A NetworkPolicy object.
pub fn policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn step(apply: Vec<Value>, expect: Expect) -> Step {
    Step {
        apply,
        delete: Vec::new(),
        relabel: Vec::new(),
        expect,
    }
}

fn one(name: &'static str, apply: Vec<Value>, expect: Expect) -> Scenario {
    Scenario {
        name,
        also: Vec::new(),
        steps: vec![step(apply, expect)],
    }
}

fn a_in_x() -> Value {
    json!({"matchLabels": {"pod": "a"}})
}

/// The scenarios, in the upstream suite's order where it has one.
#[expect(
    clippy::too_many_lines,
    reason = "one table of cases reads best in one place"
)]
pub fn scenarios() -> Vec<Scenario> {
    vec![
        one(
            "default-deny-ingress",
            vec![policy(
                "x",
                "deny-ingress",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            )],
            |_, to, _, _| ns(to) != "x",
        ),
        one(
            "default-deny-all",
            vec![policy(
                "x",
                "deny-all",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            )],
            |from, to, _, _| ns(from) != "x" && ns(to) != "x",
        ),
        one(
            "allow from pods in the server namespace by PodSelector",
            vec![policy(
                "x",
                "x-a-from-b",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || from == "x/b",
        ),
        one(
            "allow ingress from a namespace by NamespaceSelector",
            vec![policy(
                "x",
                "x-a-from-y",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || ns(from) == "y",
        ),
        one(
            "allow ingress from pods in all namespaces",
            vec![policy(
                "x",
                "x-a-from-all",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
            )],
            |_, _, _, _| true,
        ),
        one(
            "allow only from a different namespace (NamespaceSelector NotIn)",
            vec![policy(
                "x",
                "x-from-others",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "ns", "operator": "NotIn", "values": ["x"]}]}}]}]}),
            )],
            |from, to, _, _| ns(to) != "x" || ns(from) != "x",
        ),
        one(
            "PodSelector with MatchExpressions",
            vec![policy(
                "x",
                "x-a-from-b-expr",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                    {"key": "pod", "operator": "In", "values": ["b"]}]}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || from == "x/b",
        ),
        one(
            "NamespaceSelector with MatchExpressions",
            vec![policy(
                "x",
                "x-a-from-y-expr",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "ns", "operator": "In", "values": ["y"]}]}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || ns(from) == "y",
        ),
        one(
            "PodSelector or NamespaceSelector",
            vec![policy(
                "x",
                "x-a-or",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [
                    {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}},
                    {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || ns(from) != "x" || from == "x/b",
        ),
        one(
            "PodSelector and NamespaceSelector",
            vec![policy(
                "x",
                "x-a-and",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [
                    {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]},
                     "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || from == "y/b" || from == "z/b",
        ),
        one(
            "multiple PodSelectors and NamespaceSelectors",
            vec![policy(
                "x",
                "x-a-multi",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [
                    {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]},
                     "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || (ns(from) != "x" && pod(from) != "a"),
        ),
        one(
            "only from a pod in another namespace (PodSelector and NamespaceSelector)",
            vec![policy(
                "x",
                "x-a-from-y-a",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
            )],
            |from, to, _, _| to != "x/a" || from == "y/a",
        ),
        one(
            "ports: only 81 from namespace y",
            vec![policy(
                "x",
                "x-a-81-from-y",
                json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                        "ports": [{"port": 81, "protocol": "TCP"}]}]}),
            )],
            |from, to, proto, port| {
                to != "x/a" || (ns(from) == "y" && proto == Proto::Tcp && port == 81)
            },
        ),
        one(
            "multiple stacked policies with overlapping podSelectors",
            vec![
                policy(
                    "x",
                    "x-a-80-from-y",
                    json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                            "ports": [{"port": 80, "protocol": "TCP"}]}]}),
                ),
                policy(
                    "x",
                    "x-a-81-from-y",
                    json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                            "ports": [{"port": 81, "protocol": "TCP"}]}]}),
                ),
            ],
            |from, to, proto, _| to != "x/a" || (ns(from) == "y" && proto == Proto::Tcp),
        ),
        one(
            "allow-all ingress",
            vec![policy(
                "x",
                "allow-all",
                json!({"podSelector": {}, "ingress": [{}]}),
            )],
            |_, _, _, _| true,
        ),
        one(
            "ingress on one named port",
            vec![policy(
                "x",
                "x-named-81",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
            )],
            |_, to, proto, port| ns(to) != "x" || (proto == Proto::Tcp && port == 81),
        ),
        one(
            "ingress from a namespace on one named port",
            vec![policy(
                "x",
                "x-named-80-from-y",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                        "ports": [{"port": "serve-80-tcp"}]}]}),
            )],
            |from, to, proto, port| {
                ns(to) != "x" || (ns(from) == "y" && proto == Proto::Tcp && port == 80)
            },
        ),
        one(
            "egress on one named port",
            vec![policy(
                "x",
                "x-egress-named-80",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
            )],
            |from, _, proto, port| ns(from) != "x" || (proto == Proto::Tcp && port == 80),
        ),
        Scenario {
            name: "an updated policy replaces the old one",
            also: Vec::new(),
            steps: vec![
                step(
                    vec![policy(
                        "x",
                        "x-a-ports",
                        json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
                    )],
                    |_, to, proto, port| to != "x/a" || (proto == Proto::Tcp && port == 80),
                ),
                step(
                    vec![policy(
                        "x",
                        "x-a-ports",
                        json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"port": 81, "protocol": "TCP"}]}]}),
                    )],
                    |_, to, proto, port| to != "x/a" || (proto == Proto::Tcp && port == 81),
                ),
            ],
        },
        Scenario {
            name: "ingress from an updated namespace",
            also: Vec::new(),
            steps: vec![
                step(
                    vec![policy(
                        "x",
                        "x-a-from-ns2",
                        json!({"podSelector": a_in_x(), "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}]}),
                    )],
                    |_, to, _, _| to != "x/a",
                ),
                Step {
                    apply: Vec::new(),
                    delete: Vec::new(),
                    relabel: vec![Relabel::Namespace("y", "ns2", "updated")],
                    expect: |from, to, _, _| to != "x/a" || ns(from) == "y",
                },
            ],
        },
        Scenario {
            name: "ingress from an updated pod",
            also: Vec::new(),
            steps: vec![
                step(
                    vec![policy(
                        "x",
                        "x-a-from-updated",
                        json!({"podSelector": a_in_x(), "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "updated"}}}]}]}),
                    )],
                    |_, to, _, _| to != "x/a",
                ),
                Step {
                    apply: Vec::new(),
                    delete: Vec::new(),
                    relabel: vec![Relabel::Pod("x/b", "role", "updated")],
                    expect: |from, to, _, _| to != "x/a" || from == "x/b",
                },
            ],
        },
        one(
            "deny ingress from pods of other namespaces",
            vec![policy(
                "x",
                "x-same-namespace",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
            )],
            |from, to, _, _| ns(to) != "x" || ns(from) == "x",
        ),
        Scenario {
            name: "deny ingress to an updated pod",
            also: Vec::new(),
            steps: vec![
                step(
                    vec![policy(
                        "x",
                        "deny-target",
                        json!({"podSelector": {"matchLabels": {"target": "true"}}, "policyTypes": ["Ingress"]}),
                    )],
                    |_, _, _, _| true,
                ),
                Step {
                    apply: Vec::new(),
                    delete: Vec::new(),
                    relabel: vec![Relabel::Pod("x/a", "target", "true")],
                    expect: |_, to, _, _| to != "x/a",
                },
            ],
        },
        one(
            "deny egress from a pod by PodSelector",
            vec![policy(
                "x",
                "x-a-no-egress",
                json!({"podSelector": a_in_x(), "policyTypes": ["Egress"]}),
            )],
            |from, _, _, _| from != "x/a",
        ),
        one(
            "deny egress from every pod of a namespace",
            vec![policy(
                "x",
                "x-no-egress",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            )],
            |from, _, _, _| ns(from) != "x",
        ),
        one(
            "ingress and egress together",
            vec![policy(
                "x",
                "x-a-both",
                json!({"podSelector": a_in_x(), "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                       "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
            |from, to, _, _| (to != "x/a" || from == "x/b") && (from != "x/a" || to == "x/b"),
        ),
        one(
            "egress denied on the client even if the server allows it",
            vec![
                policy(
                    "x",
                    "x-a-no-egress",
                    json!({"podSelector": a_in_x(), "policyTypes": ["Egress"]}),
                ),
                policy(
                    "y",
                    "y-allow-all",
                    json!({"podSelector": {}, "ingress": [{}]}),
                ),
            ],
            |from, _, _, _| from != "x/a",
        ),
        one(
            "egress to a server in another namespace by PodSelector and NamespaceSelector",
            vec![policy(
                "x",
                "x-a-to-y-b",
                json!({"podSelector": a_in_x(), "policyTypes": ["Egress"], "egress": [{"to": [
                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
            |from, to, _, _| from != "x/a" || to == "y/b",
        ),
        Scenario {
            name: "any port on one protocol (UDP)",
            also: vec![(Proto::Udp, 81)],
            steps: vec![step(
                vec![policy(
                    "x",
                    "x-a-udp",
                    json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"protocol": "UDP"}]}]}),
                )],
                |_, to, proto, _| to != "x/a" || proto == Proto::Udp,
            )],
        },
        one(
            "an allow-all ingress policy takes precedence",
            vec![
                policy(
                    "x",
                    "x-a-80",
                    json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
                ),
                policy(
                    "x",
                    "x-a-all",
                    json!({"podSelector": a_in_x(), "ingress": [{}]}),
                ),
            ],
            |_, _, _, _| true,
        ),
        one(
            "an allow-all egress policy takes precedence",
            vec![
                policy(
                    "x",
                    "x-a-egress-80",
                    json!({"podSelector": a_in_x(), "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
                ),
                policy(
                    "x",
                    "x-a-egress-all",
                    json!({"podSelector": a_in_x(), "policyTypes": ["Egress"], "egress": [{}]}),
                ),
            ],
            |_, _, _, _| true,
        ),
        Scenario {
            name: "policies stop being enforced once deleted",
            also: Vec::new(),
            steps: vec![
                step(
                    vec![policy(
                        "x",
                        "deny-x",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                    )],
                    |_, to, _, _| ns(to) != "x",
                ),
                Step {
                    apply: Vec::new(),
                    delete: vec!["x/deny-x"],
                    relabel: Vec::new(),
                    expect: |_, _, _, _| true,
                },
            ],
        },
        one(
            "egress to a server in a CIDR block with an except",
            // Pod addresses are not known ahead; the cluster tier substitutes `y/b`'s.
            vec![policy(
                "x",
                "x-a-cidr",
                json!({"podSelector": a_in_x(), "policyTypes": ["Egress"], "egress": [{"to": [
                    {"ipBlock": {"cidr": "<all-pods>", "except": ["<y/b>/32"]}}]}]}),
            )],
            |from, to, _, _| from != "x/a" || to != "y/b",
        ),
        one(
            "an SCTP policy does not admit TCP",
            vec![policy(
                "x",
                "x-a-sctp",
                json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]}),
            )],
            |_, to, _, _| to != "x/a",
        ),
        one(
            "a UDP-only policy does not admit TCP",
            vec![policy(
                "x",
                "x-a-udp-80",
                json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"port": 80, "protocol": "UDP"}]}]}),
            )],
            |_, to, proto, _| to != "x/a" || proto == Proto::Udp,
        ),
        one(
            "endPort: 80 through 81",
            vec![policy(
                "x",
                "x-a-range",
                json!({"podSelector": a_in_x(), "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}]}),
            )],
            |_, to, proto, _| to != "x/a" || proto == Proto::Tcp,
        ),
        one(
            "ingress and egress controlled independently",
            vec![
                policy(
                    "x",
                    "x-a-ingress-from-b",
                    json!({"podSelector": a_in_x(), "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
                ),
                policy(
                    "x",
                    "x-a-egress-to-c",
                    json!({"podSelector": a_in_x(), "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
                ),
            ],
            |from, to, _, _| (to != "x/a" || from == "x/b") && (from != "x/a" || to == "x/c"),
        ),
    ]
}

/// Fills the placeholders of a policy (`<y/b>` for a pod's address, `<all-pods>` for a
/// prefix holding every pod) from `address_of`, for the scenarios with ipBlocks.
pub fn resolve(policy: &Value, address_of: &dyn Fn(&str) -> String, all_pods: &str) -> Value {
    let text = policy.to_string().replace("<all-pods>", all_pods);
    let mut out = text.clone();
    for key in pod_keys() {
        out = out.replace(&format!("<{key}>"), &address_of(&key));
    }
    serde_json::from_str(&out).unwrap_or_else(|_| policy.clone())
}
