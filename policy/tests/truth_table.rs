//! The upstream network-policy e2e model, computed: namespaces x, y and z, pods a, b and c in
//! each, ports 80 and 81 over TCP and UDP. After each policy the whole reachability table
//! (every ordered pair of distinct pods) is computed from the compiled entries, as both ends'
//! dataplanes would decide, and compared with the table the specification requires. The
//! cluster tier probes the same tables with real packets.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use strait_policy::{
    Cluster, Compiled, Decision, Direction, Endpoint, HOST, Identities, Labels, NamedPort, PodInfo,
    Policy, Protocol, compile, explain, parse,
};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ip(ns: usize, pod: usize) -> IpAddr {
    format!("10.0.{}.{}", ns + 1, pod + 1).parse().unwrap()
}

struct Model {
    namespaces: BTreeMap<String, Labels>,
    pods: Vec<PodInfo>,
}

impl Model {
    fn new() -> Self {
        let namespaces = NAMESPACES
            .iter()
            .map(|ns| {
                let l = labels(&[("ns", ns), ("kubernetes.io/metadata.name", ns)]);
                ((*ns).to_owned(), l)
            })
            .collect();
        let mut pods = Vec::new();
        for (n, ns) in NAMESPACES.iter().enumerate() {
            for (p, pod) in PODS.iter().enumerate() {
                let ports = [
                    (80, Protocol::Tcp),
                    (80, Protocol::Udp),
                    (81, Protocol::Tcp),
                    (81, Protocol::Udp),
                ]
                .into_iter()
                .map(|(port, protocol)| NamedPort {
                    name: format!("serve-{port}-{}", protocol.to_string().to_lowercase()),
                    protocol,
                    port,
                })
                .collect();
                pods.push(PodInfo {
                    namespace: (*ns).to_owned(),
                    name: (*pod).to_owned(),
                    labels: labels(&[("pod", pod)]),
                    ip: Some(ip(n, p)),
                    ports,
                });
            }
        }
        Self { namespaces, pods }
    }

    fn compile(&self, policies: &[Policy]) -> Compiled {
        let cluster = Cluster {
            namespaces: &self.namespaces,
            pods: &self.pods,
            policies,
        };
        compile(&cluster, &mut Identities::default(), |_| true)
    }

    /// Every ordered pair of distinct pods that may connect on `protocol`/`port`.
    fn reachable(
        &self,
        policies: &[Policy],
        protocol: Protocol,
        port: u16,
    ) -> BTreeSet<(String, String)> {
        let compiled = self.compile(policies);
        let mut out = BTreeSet::new();
        for from in &self.pods {
            for to in &self.pods {
                if from.key() == to.key() {
                    continue;
                }
                let verdict = explain(
                    &compiled,
                    Endpoint::Pod(&from.key(), from.ip.unwrap()),
                    Endpoint::Pod(&to.key(), to.ip.unwrap()),
                    protocol,
                    port,
                );
                if verdict.allows() {
                    out.insert((from.key(), to.key()));
                }
            }
        }
        out
    }

    fn all_pairs(&self) -> BTreeSet<(String, String)> {
        self.reachable(&[], Protocol::Tcp, 80)
    }
}

fn policy(namespace: &str, spec: Value) -> Policy {
    let object: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": namespace}, "spec": spec,
    }))
    .unwrap();
    parse(&object).unwrap_or_else(|e| panic!("{e}"))
}

fn named(namespace: &str, name: &str, spec: Value) -> Policy {
    let mut p = policy(namespace, spec);
    name.clone_into(&mut p.name);
    p
}

/// The full table minus the pairs `denied` returns true for.
fn expect(model: &Model, denied: impl Fn(&str, &str) -> bool) -> BTreeSet<(String, String)> {
    model
        .all_pairs()
        .into_iter()
        .filter(|(from, to)| !denied(from, to))
        .collect()
}

fn check(
    model: &Model,
    policies: &[Policy],
    protocol: Protocol,
    port: u16,
    denied: impl Fn(&str, &str) -> bool,
) {
    let got = model.reachable(policies, protocol, port);
    let want = expect(model, denied);
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{protocol}/{port}: allowed but should be denied: {extra:?}; denied but should be allowed: {missing:?}"
    );
}

fn ns(key: &str) -> &str {
    key.split('/').next().unwrap()
}

#[test]
fn without_policies_everything_connects() {
    let m = Model::new();
    assert_eq!(m.all_pairs().len(), 72);
    check(&m, &[], Protocol::Udp, 81, |_, _| false);
}

#[test]
fn deny_all_ingress_and_deny_all_egress() {
    let m = Model::new();
    let deny_ingress = policy("x", json!({"podSelector": {}}));
    check(&m, &[deny_ingress], Protocol::Tcp, 80, |_, to| {
        ns(to) == "x"
    });
    let deny_egress = policy("x", json!({"podSelector": {}, "policyTypes": ["Egress"]}));
    check(&m, &[deny_egress], Protocol::Tcp, 80, |from, _| {
        ns(from) == "x"
    });
    // `ingress: []` with both types named: deny both ways.
    let both = policy(
        "x",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": []}),
    );
    check(&m, &[both], Protocol::Udp, 81, |from, to| {
        ns(from) == "x" || ns(to) == "x"
    });
}

#[test]
fn an_empty_rule_allows_everything_and_egress_only_policies_leave_ingress_alone() {
    let m = Model::new();
    let allow_all = policy("x", json!({"podSelector": {}, "ingress": [{}]}));
    check(&m, &[allow_all], Protocol::Tcp, 80, |_, _| false);
    // Ingress rules in a policy whose types name only Egress are ignored.
    let egress_only = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "ingress": [], "egress": [{"to": [{"podSelector": {}}]}]}),
    );
    check(&m, &[egress_only], Protocol::Tcp, 80, |from, to| {
        from == "x/a" && ns(to) != "x"
    });
}

#[test]
fn pod_and_namespace_selectors_alone_together_and_as_two_peers() {
    let m = Model::new();
    let to_a = json!({"matchLabels": {"pod": "a"}});
    // podSelector alone: pods of the policy's namespace.
    let p = policy(
        "x",
        json!({"podSelector": to_a, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    check(&m, &[p], Protocol::Tcp, 80, |from, to| {
        to == "x/a" && from != "x/b"
    });
    // namespaceSelector alone: every pod of those namespaces.
    let p = policy(
        "x",
        json!({"podSelector": to_a, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    );
    check(&m, &[p], Protocol::Tcp, 80, |from, to| {
        to == "x/a" && ns(from) != "y"
    });
    // Both in one peer: pod b of namespace y only.
    let p = policy(
        "x",
        json!({"podSelector": to_a, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    check(&m, &[p], Protocol::Tcp, 80, |from, to| {
        to == "x/a" && from != "y/b"
    });
    // Two peers: namespace y, or pod b of x.
    let p = policy(
        "x",
        json!({"podSelector": to_a, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    check(&m, &[p], Protocol::Tcp, 80, |from, to| {
        to == "x/a" && ns(from) != "y" && from != "x/b"
    });
    // matchExpressions: every namespace but y.
    let p = policy(
        "x",
        json!({"podSelector": to_a, "ingress": [{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}}]}]}),
    );
    check(&m, &[p], Protocol::Tcp, 80, |from, to| {
        to == "x/a" && ns(from) == "y"
    });
    // An empty namespaceSelector: every namespace.
    let p = policy(
        "x",
        json!({"podSelector": to_a, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
    );
    check(&m, &[p], Protocol::Tcp, 80, |from, to| {
        to == "x/a" && !from.ends_with("/c")
    });
}

#[test]
fn ports_by_number_name_protocol_and_range() {
    let m = Model::new();
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 81}]}]}),
    );
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 80, |_, to| {
        ns(to) == "x"
    });
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 81, |_, _| {
        false
    });
    check(&m, std::slice::from_ref(&p), Protocol::Udp, 81, |_, to| {
        ns(to) == "x"
    });
    // Named: the selected pod's own port.
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}),
    );
    check(&m, std::slice::from_ref(&p), Protocol::Udp, 80, |_, _| {
        false
    });
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 80, |_, to| {
        ns(to) == "x"
    });
    // endPort: 80 through 81.
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 81}]}]}),
    );
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 81, |_, _| {
        false
    });
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 80, |_, _| {
        false
    });
    check(&m, std::slice::from_ref(&p), Protocol::Udp, 80, |_, to| {
        ns(to) == "x"
    });
    // A protocol without a port: every port of it.
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}),
    );
    check(&m, std::slice::from_ref(&p), Protocol::Udp, 81, |_, _| {
        false
    });
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 81, |_, to| {
        ns(to) == "x"
    });
}

#[test]
fn egress_named_ports_resolve_at_the_destination_and_dns_egress() {
    let mut m = Model::new();
    // z/c serves "serve-80-tcp" on 8080 instead.
    let zc = m.pods.iter_mut().find(|p| p.key() == "z/c").unwrap();
    zc.ports[0].port = 8080;
    let p = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"port": "serve-80-tcp"}]}, {"ports": [{"port": 53, "protocol": "UDP"}]}]}),
    );
    check(
        &m,
        std::slice::from_ref(&p),
        Protocol::Tcp,
        80,
        |from, to| from == "x/a" && to == "z/c",
    );
    check(
        &m,
        std::slice::from_ref(&p),
        Protocol::Tcp,
        8080,
        |from, to| from == "x/a" && to != "z/c",
    );
    check(&m, std::slice::from_ref(&p), Protocol::Udp, 53, |_, _| {
        false
    });
    check(
        &m,
        std::slice::from_ref(&p),
        Protocol::Tcp,
        53,
        |from, _| from == "x/a",
    );
}

#[test]
fn ip_blocks_with_except_match_pod_addresses_exactly() {
    let m = Model::new();
    // Egress from x/a to 10.0.0.0/16 but not y/b (10.0.2.2).
    let p = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.2/32"]}}]}]}),
    );
    check(
        &m,
        std::slice::from_ref(&p),
        Protocol::Tcp,
        80,
        |from, to| from == "x/a" && to == "y/b",
    );
    // Ingress from z's /24 only: the pods of z, and an outside address inside it.
    let q = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.3.0/24"}}]}]}),
    );
    check(
        &m,
        std::slice::from_ref(&q),
        Protocol::Tcp,
        80,
        |from, to| ns(to) == "x" && ns(from) != "z",
    );
    let compiled = m.compile(&[q]);
    let outside_in = explain(
        &compiled,
        Endpoint::Address("10.0.3.200".parse().unwrap()),
        Endpoint::Pod("x/a", ip(0, 0)),
        Protocol::Tcp,
        80,
    );
    assert!(outside_in.allows(), "{outside_in}");
    let world = explain(
        &compiled,
        Endpoint::Address("192.0.2.1".parse().unwrap()),
        Endpoint::Pod("x/a", ip(0, 0)),
        Protocol::Tcp,
        80,
    );
    assert!(!world.allows(), "{world}");
    // 0.0.0.0/0 is the world too.
    let r = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.2.0/24"]}}]}]}),
    );
    let compiled = m.compile(std::slice::from_ref(&r));
    let world = explain(
        &compiled,
        Endpoint::Address("192.0.2.1".parse().unwrap()),
        Endpoint::Pod("x/a", ip(0, 0)),
        Protocol::Tcp,
        80,
    );
    assert!(world.allows(), "{world}");
    // ... of its own address family only.
    let v6 = explain(
        &compiled,
        Endpoint::Address("2001:db8::1".parse().unwrap()),
        Endpoint::Pod("x/a", ip(0, 0)),
        Protocol::Tcp,
        80,
    );
    assert!(!v6.allows(), "{v6}");
    check(&m, &[r], Protocol::Tcp, 80, |from, to| {
        ns(to) == "x" && ns(from) == "y"
    });
}

#[test]
fn policies_add_up_and_each_verdict_names_its_rule() {
    let m = Model::new();
    let from_y = named(
        "x",
        "from-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    );
    let from_zc = named(
        "x",
        "from-zc",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"ports": [{"port": 81}]}, {"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}, "podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
    );
    let both = [from_y, from_zc];
    check(&m, &both, Protocol::Tcp, 80, |from, to| {
        to == "x/a" && ns(from) != "y" && from != "z/c"
    });
    check(&m, &both, Protocol::Tcp, 81, |_, _| false);
    let compiled = m.compile(&both);
    let why = explain(
        &compiled,
        Endpoint::Pod("z/c", ip(2, 2)),
        Endpoint::Pod("x/a", ip(0, 0)),
        Protocol::Tcp,
        80,
    );
    assert!(
        matches!(&why.ingress, Decision::Allowed(r) if r.policy == "x/from-zc" && r.index == 1),
        "{why}"
    );
    let why = explain(
        &compiled,
        Endpoint::Pod("z/b", ip(2, 1)),
        Endpoint::Pod("x/a", ip(0, 0)),
        Protocol::Tcp,
        80,
    );
    assert_eq!(
        why.to_string(),
        "egress: allowed, no policy selects the pod for egress; ingress: denied: isolated by x/from-y, x/from-zc and no rule allows it"
    );
    // The node itself always reaches its pods (probes).
    let host = compiled.endpoints["x/a"].decide(Direction::Ingress, HOST, Protocol::Tcp, 80);
    assert_eq!(host, Decision::Host);
}

#[test]
fn relabelled_pods_and_namespaces_change_identities_and_verdicts() {
    let mut m = Model::new();
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "blue"}}, "podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    );
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 80, |_, to| {
        ns(to) == "x"
    });
    m.namespaces
        .get_mut("y")
        .unwrap()
        .insert("team".into(), "blue".into());
    check(&m, std::slice::from_ref(&p), Protocol::Tcp, 80, |_, to| {
        ns(to) == "x"
    });
    m.pods
        .iter_mut()
        .find(|p| p.key() == "y/c")
        .unwrap()
        .labels
        .insert("role".into(), "client".into());
    check(
        &m,
        std::slice::from_ref(&p),
        Protocol::Tcp,
        80,
        |from, to| ns(to) == "x" && from != "y/c",
    );
    // Identities follow labels: y/c now differs from z/c, which has the same pod labels before.
    let compiled = m.compile(&[p]);
    assert_ne!(compiled.pod_identity["y/c"], compiled.pod_identity["z/c"]);
}

#[test]
fn pods_with_equal_properties_share_an_identity() {
    let m = Model::new();
    let compiled = m.compile(&[]);
    let ids: BTreeSet<u32> = compiled.pod_identity.values().copied().collect();
    assert_eq!(ids.len(), 9, "each pod differs by namespace or label");
    let mut twins = Model::new();
    for pod in &mut twins.pods {
        pod.labels = labels(&[("app", "same")]);
    }
    let compiled = twins.compile(&[]);
    let ids: BTreeSet<u32> = compiled.pod_identity.values().copied().collect();
    assert_eq!(ids.len(), 3, "one per namespace");
}

#[test]
fn bad_policies_name_every_wrong_field_and_compile_nothing() {
    let object: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "bad", "namespace": "x"},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["a"]}]},
            "policyTypes": ["Ingress", "Sideways"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}},
                                  {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}},
                                  {}],
                         "ports": [{"port": 90, "endPort": 80}, {"port": "Not_A_Name"}, {"protocol": "ICMP"},
                                   {"port": "http", "endPort": 90}]}],
        },
    }))
    .unwrap();
    let error = parse(&object).unwrap_err();
    let fields: Vec<&str> = error.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.podSelector.matchExpressions[0].operator",
            "spec.ingress[0].ports[0].endPort",
            "spec.ingress[0].ports[1].port",
            "spec.ingress[0].ports[2].protocol",
            "spec.ingress[0].ports[3].endPort",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "spec.ingress[0].from[1].ipBlock.except[0]",
            "spec.ingress[0].from[2]",
            "spec.policyTypes[1]",
        ],
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with("NetworkPolicy.networking.k8s.io \"x/bad\" is invalid: "),
        "{text}"
    );
    assert!(
        text.contains("spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.0/33\""),
        "{text}"
    );
    assert!(text.contains("Unsupported value: \"ICMP\""), "{text}");
}

#[test]
fn a_named_port_nobody_has_is_a_warning() {
    let m = Model::new();
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "metrics"}]}]}),
    );
    let compiled = m.compile(&[p]);
    assert_eq!(compiled.warnings.len(), 3, "{:?}", compiled.warnings);
    assert!(compiled.warnings[0].contains("has no TCP port named \"metrics\""));
}

#[test]
fn programmed_digests_ignore_order_and_follow_versions() {
    let np = |uid: &str, rv: &str| -> NetworkPolicy {
        serde_json::from_value(
            json!({"metadata": {"name": uid, "uid": uid, "resourceVersion": rv}}),
        )
        .unwrap()
    };
    let (a, b) = (np("a", "1"), np("b", "2"));
    let digest = |set: &[&NetworkPolicy]| strait_policy::programmed_digest(set.iter().copied());
    assert_eq!(digest(&[&a, &b]), digest(&[&b, &a]));
    assert_ne!(digest(&[&a]), digest(&[&np("a", "3")]));
}

/// Every scenario of the upstream model (`strait_tests::netpol`), step by step, through the
/// compiler: the table the cluster tier probes with packets is first right here.
#[test]
fn the_upstream_scenarios_hold_in_the_compiler() {
    use strait_tests::netpol::{self, Proto, Relabel};
    for scenario in netpol::scenarios() {
        let mut m = Model::new();
        for pod in &mut m.pods {
            let named: Vec<NamedPort> = m_ports();
            pod.ports = named;
        }
        let mut applied: BTreeMap<String, Policy> = BTreeMap::new();
        for (index, step) in scenario.steps.iter().enumerate() {
            for object in &step.apply {
                let object = netpol::resolve(
                    object,
                    &|key: &str| {
                        let pod = m.pods.iter().find(|p| p.key() == key).unwrap();
                        pod.ip.unwrap().to_string()
                    },
                    "10.0.0.0/16",
                );
                let np: NetworkPolicy = serde_json::from_value(object).unwrap();
                let parsed = parse(&np).unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
                applied.insert(parsed.key(), parsed);
            }
            for gone in &step.delete {
                applied.remove(*gone);
            }
            for change in &step.relabel {
                match change {
                    Relabel::Pod(key, k, v) => {
                        let pod = m.pods.iter_mut().find(|p| p.key() == *key).unwrap();
                        pod.labels.insert((*k).to_owned(), (*v).to_owned());
                    }
                    Relabel::Namespace(ns, k, v) => {
                        m.namespaces
                            .get_mut(*ns)
                            .unwrap()
                            .insert((*k).to_owned(), (*v).to_owned());
                    }
                }
            }
            let policies: Vec<Policy> = applied.values().cloned().collect();
            let compiled = m.compile(&policies);
            for (proto, port) in scenario.probes() {
                let protocol = match proto {
                    Proto::Tcp => Protocol::Tcp,
                    Proto::Udp => Protocol::Udp,
                };
                for from in &m.pods {
                    for to in &m.pods {
                        if from.key() == to.key() {
                            continue;
                        }
                        let got = explain(
                            &compiled,
                            Endpoint::Pod(&from.key(), from.ip.unwrap()),
                            Endpoint::Pod(&to.key(), to.ip.unwrap()),
                            protocol,
                            port,
                        );
                        let want = (step.expect)(&from.key(), &to.key(), proto, port);
                        assert_eq!(
                            got.allows(),
                            want,
                            "{} step {index}: {} -> {} {protocol}/{port}: {got}",
                            scenario.name,
                            from.key(),
                            to.key()
                        );
                    }
                }
            }
        }
    }
}

/// The upstream model's named ports: serve-80-tcp and so on.
fn m_ports() -> Vec<NamedPort> {
    [
        (80, Protocol::Tcp),
        (81, Protocol::Tcp),
        (80, Protocol::Udp),
        (81, Protocol::Udp),
    ]
    .into_iter()
    .map(|(port, protocol)| NamedPort {
        name: format!("serve-{port}-{}", protocol.to_string().to_lowercase()),
        protocol,
        port,
    })
    .collect()
}
