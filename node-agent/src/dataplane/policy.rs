//! NetworkPolicy maps, planned: from a compilation (`strait_policy`) to the exact contents of
//! the ipcache, the policy trie and the endpoint map, and from the contents in place to the
//! writes that reach the new ones without a moment of wrong verdicts. Pure.
//!
//! Order of a change: new ipcache entries and policy entries first, then endpoint flags, then
//! removals. A pod becoming isolated thus has its allow entries before its flag turns on, and
//! one ceasing to be isolated loses its flag before its entries go.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use strait_ebpf_common::policy::{
    DIR_EGRESS, DIR_INGRESS, EP_F_ENFORCE_EGRESS, EP_F_ENFORCE_INGRESS, EndpointValue,
    IDENTITY_HOST, POLICY_PREFIX_FIXED, POLICY_PREFIX_PROTOCOL, PolicyKey, port_blocks,
};
use strait_policy::{Compiled, Direction, RuleRef};

/// What the three maps hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyMaps {
    /// (prefix length, IPv4 address in network order) → identity.
    pub ipcache: BTreeMap<(u32, u32), u32>,
    /// (prefix length, key) → rule id.
    pub policy: BTreeMap<(u32, PolicyKey), u32>,
    /// Host-side veth ifindex → endpoint.
    pub endpoints: BTreeMap<u32, EndpointValue>,
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyOp {
    SetIpcache { prefix: (u32, u32), identity: u32 },
    SetPolicy { key: (u32, PolicyKey), rule: u32 },
    SetEndpoint { ifindex: u32, value: EndpointValue },
    RemoveEndpoint { ifindex: u32 },
    RemovePolicy { key: (u32, PolicyKey) },
    RemoveIpcache { prefix: (u32, u32) },
}

/// Rule ids, stable while a rule exists, so flow records decoded later still name it.
#[derive(Debug, Default)]
pub struct RuleTable {
    ids: BTreeMap<RuleRef, u32>,
    rules: BTreeMap<u32, RuleRef>,
}

impl RuleTable {
    fn id(&mut self, rule: &RuleRef) -> u32 {
        if let Some(id) = self.ids.get(rule) {
            return *id;
        }
        // Ids start at 1: 0 is the default-deny reason.
        let id = (1..).find(|i| !self.rules.contains_key(i)).unwrap_or(1);
        self.ids.insert(rule.clone(), id);
        self.rules.insert(id, rule.clone());
        id
    }

    fn retain(&mut self, live: &BTreeSet<u32>) {
        self.rules.retain(|id, _| live.contains(id));
        self.ids.retain(|_, id| live.contains(id));
    }

    /// The rule behind an id read from a flow record.
    pub fn rule(&self, id: u32) -> Option<&RuleRef> {
        self.rules.get(&id)
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

/// The maps for `compiled`: `local` gives the host-side veth ifindex of each pod of this node
/// (by `namespace/name`), `host` the node's own addresses (identity HOST). IPv6 entries are
/// left out: the programs judge IPv4 only.
pub fn desired(
    compiled: &Compiled,
    local: &BTreeMap<String, u32>,
    host: &[Ipv4Addr],
    rules: &mut RuleTable,
) -> PolicyMaps {
    let mut maps = PolicyMaps::default();
    for (net, identity) in &compiled.ipcache {
        if let Some(addr) = v4(net.addr()) {
            let key = (
                u32::from(net.prefix_len()),
                u32::from_ne_bytes(addr.octets()),
            );
            maps.ipcache.insert(key, *identity);
        }
    }
    for addr in host {
        maps.ipcache
            .insert((32, u32::from_ne_bytes(addr.octets())), IDENTITY_HOST);
    }
    let mut live_rules = BTreeSet::new();
    for (pod, ifindex) in local {
        let Some(endpoint) = compiled.endpoints.get(pod) else {
            continue;
        };
        let identity = compiled.pod_identity.get(pod).copied().unwrap_or(0);
        let mut flags = 0;
        for (direction, flag, side) in [
            (
                DIR_INGRESS,
                EP_F_ENFORCE_INGRESS,
                endpoint.side(Direction::Ingress),
            ),
            (
                DIR_EGRESS,
                EP_F_ENFORCE_EGRESS,
                endpoint.side(Direction::Egress),
            ),
        ] {
            let Some(side) = side else { continue };
            flags |= flag;
            for entry in &side.entries {
                let rule = rules.id(&entry.rule);
                let key = |protocol: u8, dport: u16| PolicyKey {
                    endpoint: *ifindex,
                    identity: entry.identity,
                    direction,
                    protocol,
                    dport: dport.to_be(),
                };
                let mut put = |prefix: u32, key: PolicyKey| {
                    // Where rules overlap, the first (in policy order) names the verdict.
                    maps.policy.entry((prefix, key)).or_insert(rule);
                    live_rules.insert(rule);
                };
                match (entry.protocol, entry.ports) {
                    (None, _) => put(POLICY_PREFIX_FIXED, key(0, 0)),
                    (Some(p), None) => put(POLICY_PREFIX_PROTOCOL, key(p.number(), 0)),
                    (Some(p), Some((lo, hi))) => port_blocks(lo, hi, |start, bits| {
                        put(POLICY_PREFIX_PROTOCOL + bits, key(p.number(), start));
                    }),
                }
            }
        }
        maps.endpoints.insert(
            *ifindex,
            EndpointValue {
                endpoint: *ifindex,
                identity,
                flags,
                pad: 0,
            },
        );
    }
    rules.retain(&live_rules);
    maps
}

/// The writes that turn `old` into `new`, in a safe order (see the module comment).
pub fn diff(old: &PolicyMaps, new: &PolicyMaps) -> Vec<PolicyOp> {
    let mut ops = Vec::new();
    for (prefix, identity) in &new.ipcache {
        if old.ipcache.get(prefix) != Some(identity) {
            ops.push(PolicyOp::SetIpcache {
                prefix: *prefix,
                identity: *identity,
            });
        }
    }
    for (key, rule) in &new.policy {
        if old.policy.get(key) != Some(rule) {
            ops.push(PolicyOp::SetPolicy {
                key: *key,
                rule: *rule,
            });
        }
    }
    for (ifindex, value) in &new.endpoints {
        if old.endpoints.get(ifindex) != Some(value) {
            ops.push(PolicyOp::SetEndpoint {
                ifindex: *ifindex,
                value: *value,
            });
        }
    }
    for ifindex in old.endpoints.keys() {
        if !new.endpoints.contains_key(ifindex) {
            ops.push(PolicyOp::RemoveEndpoint { ifindex: *ifindex });
        }
    }
    for key in old.policy.keys() {
        if !new.policy.contains_key(key) {
            ops.push(PolicyOp::RemovePolicy { key: *key });
        }
    }
    for prefix in old.ipcache.keys() {
        if !new.ipcache.contains_key(prefix) {
            ops.push(PolicyOp::RemoveIpcache { prefix: *prefix });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use serde_json::json;
    use strait_ebpf_common::policy::{POLICY_PREFIX_FULL, RULE_DEFAULT_DENY};
    use strait_policy::{Cluster, Identities, Labels, NamedPort, PodInfo, Protocol, compile};

    use super::*;

    fn pod(ns: &str, name: &str, app: &str, ip: &str) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            ip: Some(ip.parse().unwrap()),
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
        }
    }

    fn compiled(policies: &[serde_json::Value], pods: &[PodInfo]) -> Compiled {
        let namespaces: BTreeMap<String, Labels> = [("x".to_owned(), Labels::new())].into();
        let policies: Vec<_> = policies
            .iter()
            .map(|spec| {
                let np: NetworkPolicy = serde_json::from_value(
                    json!({"metadata": {"name": "p", "namespace": "x"}, "spec": spec}),
                )
                .unwrap();
                strait_policy::parse(&np).unwrap()
            })
            .collect();
        let cluster = Cluster {
            namespaces: &namespaces,
            pods,
            policies: &policies,
        };
        compile(&cluster, &mut Identities::default(), |_| true)
    }

    /// What the BPF trie lookup would find for a full key: the longest matching prefix.
    fn lookup(maps: &PolicyMaps, key: PolicyKey) -> u32 {
        let bits = |k: &PolicyKey| {
            let mut b = Vec::new();
            b.extend_from_slice(&k.endpoint.to_ne_bytes());
            b.extend_from_slice(&k.identity.to_ne_bytes());
            b.push(k.direction);
            b.push(k.protocol);
            b.extend_from_slice(&k.dport.to_ne_bytes());
            b
        };
        let want = bits(&key);
        let matches = |prefix: u32, stored: &PolicyKey| {
            let have = bits(stored);
            (0..prefix as usize).all(|i| {
                let (byte, bit) = (i / 8, 7 - i % 8);
                (want[byte] >> bit) & 1 == (have[byte] >> bit) & 1
            })
        };
        maps.policy
            .iter()
            .filter(|((prefix, stored), _)| matches(*prefix, stored))
            .max_by_key(|((prefix, _), _)| *prefix)
            .map_or(RULE_DEFAULT_DENY, |(_, rule)| *rule)
    }

    #[test]
    fn entries_encode_ranges_named_ports_and_wildcards_for_the_trie() {
        let pods = [
            pod("x", "a", "a", "10.0.0.1"),
            pod("x", "b", "b", "10.0.0.2"),
        ];
        let c = compiled(
            &[
                json!({"podSelector": {"matchLabels": {"app": "a"}}, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": 1000, "endPort": 1999}]},
                {"ports": [{"port": "http"}]},
                {"from": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"protocol": "UDP"}]}]}),
            ],
            &pods,
        );
        let local: BTreeMap<String, u32> = [("x/a".to_owned(), 7)].into();
        let mut rules = RuleTable::default();
        let maps = desired(&c, &local, &["192.0.2.1".parse().unwrap()], &mut rules);
        let b = c.pod_identity["x/b"];
        let key = |identity, protocol, port: u16| PolicyKey {
            endpoint: 7,
            identity,
            direction: DIR_INGRESS,
            protocol,
            dport: port.to_be(),
        };
        let allowed = |identity, protocol, port| {
            lookup(&maps, key(identity, protocol, port)) != RULE_DEFAULT_DENY
        };
        assert!(allowed(b, 6, 1000) && allowed(b, 6, 1500) && allowed(b, 6, 1999));
        assert!(!allowed(b, 6, 999) && !allowed(b, 6, 2000));
        assert!(
            allowed(0, 6, 8080),
            "the named port, from anyone (ANY identity)"
        );
        assert!(allowed(b, 17, 53) && !allowed(b, 132, 53));
        let first = rules.rule(lookup(&maps, key(b, 6, 1500))).unwrap();
        assert_eq!((first.policy.as_str(), first.index), ("x/p", 0));
        assert_eq!(maps.endpoints[&7].flags, EP_F_ENFORCE_INGRESS);
        assert_eq!(maps.ipcache[&(32, u32::from_ne_bytes([10, 0, 0, 2]))], b);
        assert_eq!(
            maps.ipcache[&(32, u32::from_ne_bytes([192, 0, 2, 1]))],
            IDENTITY_HOST
        );
        assert!(maps.policy.keys().all(|(p, _)| *p <= POLICY_PREFIX_FULL));
    }

    #[test]
    fn changes_add_before_they_enable_and_disable_before_they_remove() {
        let pods = [
            pod("x", "a", "a", "10.0.0.1"),
            pod("x", "b", "b", "10.0.0.2"),
        ];
        let local: BTreeMap<String, u32> = [("x/a".to_owned(), 7)].into();
        let mut rules = RuleTable::default();
        let open = desired(&compiled(&[], &pods), &local, &[], &mut rules);
        let isolated = desired(
            &compiled(
                &[json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})],
                &pods,
            ),
            &local,
            &[],
            &mut rules,
        );
        let ops = diff(&open, &isolated);
        let first_endpoint = ops
            .iter()
            .position(|o| matches!(o, PolicyOp::SetEndpoint { .. }))
            .unwrap();
        let last_policy = ops
            .iter()
            .rposition(|o| matches!(o, PolicyOp::SetPolicy { .. }))
            .unwrap();
        assert!(last_policy < first_endpoint, "{ops:?}");
        let back = diff(&isolated, &open);
        let endpoint = back
            .iter()
            .position(|o| matches!(o, PolicyOp::SetEndpoint { value, .. } if value.flags == 0))
            .unwrap();
        let removal = back
            .iter()
            .position(|o| matches!(o, PolicyOp::RemovePolicy { .. }))
            .unwrap();
        assert!(endpoint < removal, "{back:?}");
        assert!(diff(&isolated, &isolated).is_empty());
    }
}
