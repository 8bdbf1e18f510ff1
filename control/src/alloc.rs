//! ClusterIP, NodePort and node pod CIDR allocation.
//!
//! Each allocated address, port or range is a key in the store
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`,
//! `/registry/ranges/podcidrs/<net>/<len>`) written in the same transaction as the Service or
//! Node that holds it, with the condition that the key is absent. So two Services can never hold
//! the same address, even across several control processes on one etcd; deleting the Service
//! frees it in the same transaction; and a crash can leave nothing half-allocated. A repair
//! pass at start-up still reconciles the keys with the Services, for stores written by older
//! versions or edited by hand.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use strait_api::{
    strategy::{has_node_ports, needs_health_check, node_ports},
    validate::{Cause, CauseType},
};

/// The prefix of allocated ClusterIPs.
pub const IP_PREFIX: &str = "/registry/ranges/serviceips/";
/// The prefix of allocated NodePorts.
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
/// The prefix of node pod CIDRs. kube-controller-manager's node IPAM sets `spec.podCIDR` after
/// the Node is created; assigning it on create instead means an agent never sees its Node
/// without one, and the key makes two nodes' ranges disjoint even across control processes.
pub const POD_CIDR_PREFIX: &str = "/registry/ranges/podcidrs/";

/// The kinds that hold allocations.
pub fn allocates(kind: &str) -> bool {
    matches!(kind, "Service" | "Node")
}

/// The ranges Services are given addresses and ports from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranges {
    pub service_net: Ipv4Addr,
    pub service_prefix: u8,
    pub node_ports: (u16, u16),
    /// The cluster's pod range, cut into one `/node_mask` per node.
    pub pod_net: Ipv4Addr,
    pub pod_prefix: u8,
    pub node_mask: u8,
}

impl Ranges {
    /// Parse `10.96.0.0/16` and `30000-32767`.
    pub fn parse(service_cidr: &str, node_ports: &str) -> Result<Self, String> {
        let (net, prefix) = service_cidr
            .split_once('/')
            .ok_or_else(|| format!("service CIDR {service_cidr:?} has no prefix length"))?;
        let net: Ipv4Addr = net
            .parse()
            .map_err(|_| format!("service CIDR {service_cidr:?} is not an IPv4 network"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                format!("service CIDR {service_cidr:?} needs a prefix from /8 to /30")
            })?;
        let (low, high) = node_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
            .filter(|(a, b)| a < b)
            .ok_or_else(|| format!("node port range {node_ports:?} is not `low-high`"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            service_net: Ipv4Addr::from(u32::from(net) & mask),
            service_prefix: prefix,
            node_ports: (low, high),
            pod_net: Ipv4Addr::new(10, 244, 0, 0),
            pod_prefix: 16,
            node_mask: 24,
        })
    }

    /// Set the cluster's pod range (`10.244.0.0/16`) and the size of each node's share.
    pub fn with_cluster_cidr(mut self, cidr: &str, node_mask: u8) -> Result<Self, String> {
        let (net, prefix) = cidr
            .split_once('/')
            .and_then(|(n, p)| Some((n.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?)))
            .ok_or_else(|| format!("cluster CIDR {cidr:?} is not an IPv4 network"))?;
        if !(8..=28).contains(&prefix) || !(prefix..=30).contains(&node_mask) {
            return Err(format!(
                "cluster CIDR {cidr:?} with /{node_mask} per node: need a prefix from /8 to /28 \
                 and a node mask from the prefix to /30"
            ));
        }
        self.pod_net = Ipv4Addr::from(u32::from(net) & (u32::MAX << (32 - prefix)));
        self.pod_prefix = prefix;
        self.node_mask = node_mask;
        Ok(self)
    }

    /// How many node ranges the cluster range holds.
    pub fn node_cidr_count(&self) -> u32 {
        1 << (self.node_mask - self.pod_prefix)
    }

    /// The `n`th node range, in order: node IPAM hands out the lowest free one.
    pub fn node_cidr(&self, n: u32) -> String {
        let size = 1u32 << (32 - self.node_mask);
        let net = Ipv4Addr::from(u32::from(self.pod_net) + n * size);
        format!("{net}/{}", self.node_mask)
    }

    /// Whether `cidr` is one of the node ranges.
    fn is_node_cidr(&self, cidr: &str) -> bool {
        let Some((net, len)) = cidr
            .split_once('/')
            .and_then(|(n, l)| Some((n.parse::<Ipv4Addr>().ok()?, l.parse::<u8>().ok()?)))
        else {
            return false;
        };
        let offset = u32::from(net).wrapping_sub(u32::from(self.pod_net));
        len == self.node_mask
            && offset < (1u64 << (32 - self.pod_prefix)) as u32
            && offset.is_multiple_of(1 << (32 - self.node_mask))
    }

    fn size(&self) -> u32 {
        1 << (32 - self.service_prefix)
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_net) + 1)
    }

    /// The tenth address, the cluster DNS Service's (kubeadm's choice, so pods' resolv.conf
    /// reads as on other clusters); `None` when the range is too small to hold it.
    pub fn dns_ip(&self) -> Option<Ipv4Addr> {
        let ip = Ipv4Addr::from(u32::from(self.service_net).checked_add(10)?);
        self.contains(ip).then_some(ip)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.service_net));
        // Network and broadcast addresses are never handed out.
        offset > 0 && offset < self.size() - 1
    }

    /// The `n`th candidate address, spread over the range by `seed`.
    pub fn candidate_ip(&self, seed: u64, n: u32) -> Ipv4Addr {
        let usable = self.size() - 2;
        // Truncation is fine: only a spread is wanted.
        #[expect(clippy::cast_possible_truncation, reason = "a pseudo-random start")]
        let start = (seed % u64::from(usable)) as u32;
        Ipv4Addr::from(u32::from(self.service_net) + 1 + (start + n) % usable)
    }

    /// Whether `port` is in the node port range.
    fn has_node_port(&self, port: u64) -> bool {
        let (low, high) = self.node_ports;
        (u64::from(low)..=u64::from(high)).contains(&port)
    }

    /// The `n`th candidate node port, spread over the range by `seed`.
    pub fn candidate_port(&self, seed: u64, n: u32) -> u16 {
        let (low, high) = self.node_ports;
        let count = u32::from(high - low) + 1;
        #[expect(clippy::cast_possible_truncation, reason = "a pseudo-random start")]
        let start = (seed % u64::from(count)) as u32;
        let offset = u16::try_from((start + n) % count).unwrap_or(0);
        low + offset
    }
}

/// Whether the Service gets a ClusterIP at all.
fn wants_cluster_ip(service: &Value) -> bool {
    let spec = &service["spec"];
    spec["type"].as_str() != Some("ExternalName") && spec["clusterIP"].as_str() != Some("None")
}

/// Whether the server chooses node ports for the ports that ask for none. A LoadBalancer with
/// `allocateLoadBalancerNodePorts: false` gets none chosen, but keeps (and holds) the ones the
/// user asked for (kube-apiserver's `shouldAllocateNodePorts`).
fn allocates_node_ports(service: &Value) -> bool {
    match service["spec"]["type"].as_str() {
        Some("NodePort") => true,
        Some("LoadBalancer") => service["spec"]["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// The Service's `spec.healthCheckNodePort`, 0 when unset.
fn health_check_node_port(service: &Value) -> u64 {
    service["spec"]["healthCheckNodePort"].as_u64().unwrap_or(0)
}

/// The allocation keys a Service or Node holds.
pub fn held(service: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if service["kind"] == "Node" {
        if let Some(cidr) = service["spec"]["podCIDR"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            keys.push(format!("{POD_CIDR_PREFIX}{cidr}"));
        }
        return keys;
    }
    if let Some(ip) = service["spec"]["clusterIP"].as_str()
        && !ip.is_empty()
        && ip != "None"
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    for port in node_ports(service) {
        keys.push(format!("{PORT_PREFIX}{port}"));
    }
    // Validation lets only a Service that needs one set it.
    let health_check = health_check_node_port(service);
    if health_check != 0 {
        keys.push(format!("{PORT_PREFIX}{health_check}"));
    }
    keys
}

/// What a Service needs allocated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// A ClusterIP must be chosen.
    pub ip: bool,
    /// Indexes of ports whose node port must be chosen.
    pub ports: Vec<usize>,
    /// A Node's pod CIDR must be chosen.
    pub pod_cidr: bool,
    /// The Service's health check node port must be chosen.
    pub health_check: bool,
}

/// Why a Service's addresses or ports are refused. Most refusals name a field (422); those of
/// the health check node port are internal errors (500), as kube-apiserver reports them
/// (`allocHealthCheckNodePort`'s errors are wrapped in `NewInternalError`).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Invalid(Vec<Cause>),
    Internal(String),
}

/// The refusal of a health check node port the user asked for.
fn health_check_refused(port: u64, why: &str) -> Refused {
    Refused::Internal(format!(
        "Internal error occurred: failed to allocate requested HealthCheck NodePort {port}: {why}"
    ))
}

/// Check a Node's pod CIDR, or say one must be chosen. Once set it never changes (as
/// kube-apiserver's validation says: `spec.podCIDR` is immutable once set), so an update that
/// leaves it out keeps the stored one.
pub fn prepare_node(
    ranges: &Ranges,
    node: &mut Value,
    old: Option<&Value>,
) -> Result<Needs, Vec<Cause>> {
    let mut needs = Needs::default();
    let asked = node["spec"]["podCIDR"].as_str().unwrap_or("").to_owned();
    let kept = old
        .and_then(|o| o["spec"]["podCIDR"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let invalid = |message: String| {
        vec![Cause {
            field: "spec.podCIDR".to_owned(),
            reason: CauseType::Invalid,
            message,
        }]
    };
    match (asked.as_str(), kept) {
        ("", Some(kept)) => set_pod_cidr(node, &kept),
        ("", None) => needs.pod_cidr = true,
        (asked, Some(kept)) if asked != kept => {
            return Err(invalid(format!(
                "Invalid value: \"{asked}\": may not be changed once set (it is {kept})"
            )));
        }
        (asked, _) if !ranges.is_node_cidr(asked) => {
            return Err(invalid(format!(
                "Invalid value: \"{asked}\": not a /{} range inside the cluster CIDR {}/{}",
                ranges.node_mask, ranges.pod_net, ranges.pod_prefix
            )));
        }
        (asked, _) => set_pod_cidr(node, asked),
    }
    Ok(needs)
}

/// Write the node's pod CIDR in both fields.
pub fn set_pod_cidr(node: &mut Value, cidr: &str) {
    if !node["spec"].is_object() {
        node["spec"] = json!({});
    }
    node["spec"]["podCIDR"] = json!(cidr);
    node["spec"]["podCIDRs"] = json!([cidr]);
}

/// Check what the user asked for against the ranges, clear what the type does not have, and
/// say what must still be chosen. `old` is the stored Service on update (its ClusterIP and
/// health check node port are kept when the new one leaves them empty).
pub fn prepare(
    ranges: &Ranges,
    service: &mut Value,
    old: Option<&Value>,
) -> Result<Needs, Refused> {
    let mut needs = Needs::default();
    let mut causes = Vec::new();
    if !service["spec"].is_object() {
        return Ok(needs);
    }
    if wants_cluster_ip(service) {
        let asked = service["spec"]["clusterIP"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let kept = old
            .and_then(|o| o["spec"]["clusterIP"].as_str())
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .map(str::to_owned);
        match (asked.as_str(), kept) {
            ("", Some(kept)) => {
                // Server-owned: an update that leaves them out keeps them.
                service["spec"]["clusterIP"] = json!(kept);
                for field in ["clusterIPs", "ipFamilies"] {
                    if service["spec"][field].is_null()
                        && let Some(value) = old.map(|o| &o["spec"][field]).filter(|v| !v.is_null())
                    {
                        service["spec"][field] = value.clone();
                    }
                }
            }
            ("", None) => needs.ip = true,
            (ip, _) => match ip.parse::<Ipv4Addr>() {
                Ok(addr) if ranges.contains(addr) => {}
                _ => causes.push(Cause {
                    field: "spec.clusterIPs".to_owned(),
                    reason: CauseType::Invalid,
                    message: format!(
                        "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                        ranges.service_net, ranges.service_prefix
                    ),
                }),
            },
        }
    } else if service["spec"]["type"].as_str() == Some("ExternalName") {
        let spec = service["spec"].as_object_mut().expect("checked above");
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    let has_node_ports = has_node_ports(service);
    let allocates_node_ports = allocates_node_ports(service);
    let (low, high) = ranges.node_ports;
    if let Some(ports) = service
        .get_mut("spec")
        .and_then(|s| s.get_mut("ports"))
        .and_then(Value::as_array_mut)
    {
        for (i, port) in ports.iter_mut().enumerate() {
            let asked = port["nodePort"].as_u64().unwrap_or(0);
            if !has_node_ports {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
            } else if asked == 0 {
                if allocates_node_ports {
                    needs.ports.push(i);
                }
            } else if !ranges.has_node_port(asked) {
                causes.push(Cause {
                    field: format!("spec.ports[{i}].nodePort"),
                    reason: CauseType::Invalid,
                    message: format!(
                        "Invalid value: {asked}: provided port is not in the valid range. The range of valid ports is {low}-{high}"
                    ),
                });
            }
        }
    }
    if !causes.is_empty() {
        return Err(Refused::Invalid(causes));
    }
    prepare_health_check(ranges, service, old, &mut needs)?;
    Ok(needs)
}

/// The health check node port, as kube-apiserver's `allocHealthCheckNodePort` and
/// `updateHealthCheckNodePort`: a Service that comes to need one (on create, or an update to a
/// LoadBalancer with `externalTrafficPolicy: Local`) gets the one it asks for or a chosen one;
/// one that needed it before keeps it (an update that leaves it out keeps the stored one); one
/// that no longer needs it has it dropped by the update strategy, and so released.
fn prepare_health_check(
    ranges: &Ranges,
    service: &mut Value,
    old: Option<&Value>,
    needs: &mut Needs,
) -> Result<(), Refused> {
    if !needs_health_check(service) {
        return Ok(());
    }
    let asked = health_check_node_port(service);
    if let Some(old) = old.filter(|o| needs_health_check(o)) {
        // Validation refused a change; only an omission is left to fill.
        let kept = health_check_node_port(old);
        if asked == 0 && kept != 0 {
            service["spec"]["healthCheckNodePort"] = json!(kept);
        }
        return Ok(());
    }
    if asked == 0 {
        needs.health_check = true;
        return Ok(());
    }
    let (low, high) = ranges.node_ports;
    if !ranges.has_node_port(asked) {
        return Err(health_check_refused(
            asked,
            &format!(
                "provided port is not in the valid range. The range of valid ports is {low}-{high}"
            ),
        ));
    }
    // The Service's own node ports are held already (an old one is released only once the
    // update is written).
    let own = node_ports(service)
        .into_iter()
        .chain(old.map(node_ports).unwrap_or_default());
    if own.into_iter().any(|p| p == asked) {
        return Err(health_check_refused(
            asked,
            "provided port is already allocated",
        ));
    }
    Ok(())
}

/// Write the chosen ClusterIP into the Service, with the fields that go with it.
pub fn set_cluster_ip(service: &mut Value, ip: Ipv4Addr) {
    let spec = &mut service["spec"];
    spec["clusterIP"] = json!(ip.to_string());
    spec["clusterIPs"] = json!([ip.to_string()]);
    spec["ipFamilies"] = json!(["IPv4"]);
}

/// The refusal of an address, port or range someone else holds.
pub fn taken(key: &str, service: &Value) -> Refused {
    if let Some(port) = key
        .strip_prefix(PORT_PREFIX)
        .and_then(|p| p.parse::<u64>().ok())
        && port == health_check_node_port(service)
        && !node_ports(service).contains(&port)
    {
        return health_check_refused(port, "provided port is already allocated");
    }
    Refused::Invalid(vec![taken_cause(key, service)])
}

/// The cause for an address, port or range someone else holds.
fn taken_cause(key: &str, service: &Value) -> Cause {
    if let Some(cidr) = key.strip_prefix(POD_CIDR_PREFIX) {
        Cause {
            field: "spec.podCIDR".to_owned(),
            reason: CauseType::Invalid,
            message: format!("Invalid value: \"{cidr}\": the range is another node's"),
        }
    } else if let Some(ip) = key.strip_prefix(IP_PREFIX) {
        Cause {
            field: "spec.clusterIPs".to_owned(),
            reason: CauseType::Invalid,
            message: format!(
                "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
            ),
        }
    } else {
        let port = key.strip_prefix(PORT_PREFIX).unwrap_or(key);
        let index = service["spec"]["ports"]
            .as_array()
            .and_then(|ports| {
                ports.iter().position(|p| {
                    p["nodePort"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)
                })
            })
            .unwrap_or(0);
        Cause {
            field: format!("spec.ports[{index}].nodePort"),
            reason: CauseType::Invalid,
            message: format!("Invalid value: {port}: provided port is already allocated"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> Ranges {
        Ranges::parse("10.96.0.0/16", "30000-32767").unwrap()
    }

    #[test]
    fn nodes_get_a_range_of_the_cluster_cidr_and_keep_it() {
        let r = ranges().with_cluster_cidr("10.244.0.0/16", 24).unwrap();
        assert_eq!(r.node_cidr_count(), 256);
        assert_eq!(r.node_cidr(0), "10.244.0.0/24");
        assert_eq!(r.node_cidr(255), "10.244.255.0/24");
        let mut node = json!({"kind": "Node", "metadata": {"name": "n1"}});
        assert!(prepare_node(&r, &mut node, None).unwrap().pod_cidr);
        set_pod_cidr(&mut node, "10.244.3.0/24");
        assert_eq!(held(&node), ["/registry/ranges/podcidrs/10.244.3.0/24"]);
        assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.3.0/24"]));

        // An update without it keeps it; one that changes it is refused, naming the field.
        let mut update = json!({"kind": "Node", "spec": {}});
        assert!(!prepare_node(&r, &mut update, Some(&node)).unwrap().pod_cidr);
        assert_eq!(update["spec"]["podCIDR"], "10.244.3.0/24");
        let mut moved = json!({"kind": "Node", "spec": {"podCIDR": "10.244.4.0/24"}});
        let causes = prepare_node(&r, &mut moved, Some(&node)).unwrap_err();
        assert_eq!(causes[0].field, "spec.podCIDR");
        for bad in [
            "10.245.0.0/24",
            "10.244.3.128/24",
            "10.244.3.0/25",
            "nonsense",
        ] {
            let mut asked = json!({"kind": "Node", "spec": {"podCIDR": bad}});
            let causes = prepare_node(&r, &mut asked, None).unwrap_err();
            assert!(causes[0].message.contains(bad), "{bad}: {causes:?}");
        }
        assert!(ranges().with_cluster_cidr("10.244.0.0/16", 8).is_err());
    }

    #[test]
    fn ranges_parse_and_exclude_network_and_broadcast() {
        let r = ranges();
        assert_eq!(r.first_ip(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 255, 255)));
        assert!(r.contains(Ipv4Addr::new(10, 96, 255, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 97, 0, 1)));
        for n in 0..70_000 {
            assert!(r.contains(r.candidate_ip(12345, n)));
            assert!((30000..=32767).contains(&r.candidate_port(777, n)));
        }
        assert!(Ranges::parse("10.96.0.0", "30000-32767").is_err());
        assert!(Ranges::parse("10.96.0.0/16", "32767-30000").is_err());
    }

    #[test]
    fn services_say_what_they_need_and_what_they_hold() {
        let r = ranges();
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80}, {"port": 443, "nodePort": 30443}
        ]}});
        let needs = prepare(&r, &mut svc, None).unwrap();
        assert_eq!(
            needs,
            Needs {
                ip: true,
                ports: vec![0],
                pod_cidr: false,
                health_check: false,
            }
        );
        set_cluster_ip(&mut svc, Ipv4Addr::new(10, 96, 3, 4));
        assert_eq!(
            held(&svc),
            vec![
                "/registry/ranges/serviceips/10.96.3.4",
                "/registry/ranges/servicenodeports/30443"
            ]
        );

        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        assert_eq!(prepare(&r, &mut headless, None).unwrap(), Needs::default());
        assert!(held(&headless).is_empty());

        let mut to_cluster_ip = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.3.4",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        prepare(&r, &mut to_cluster_ip, None).unwrap();
        assert!(
            to_cluster_ip["spec"]["ports"][0].get("nodePort").is_none(),
            "a ClusterIP service has no node port"
        );
    }

    #[test]
    fn out_of_range_requests_are_invalid_with_the_field() {
        let r = ranges();
        let mut svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.1",
            "ports": [{"port": 80, "nodePort": 80}]}});
        let Err(Refused::Invalid(causes)) = prepare(&r, &mut svc, None) else {
            panic!("out-of-range requests are invalid");
        };
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.clusterIPs", "spec.ports[0].nodePort"]);
        assert!(causes[1].message.contains("30000-32767"));
    }

    /// A LoadBalancer Service sending external traffic to local endpoints only.
    fn local_load_balancer(health_check: Option<u64>) -> Value {
        let mut svc = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20",
            "externalTrafficPolicy": "Local", "allocateLoadBalancerNodePorts": true,
            "ports": [{"port": 80, "nodePort": 30080}]}});
        if let Some(port) = health_check {
            svc["spec"]["healthCheckNodePort"] = json!(port);
        }
        svc
    }

    #[test]
    fn a_local_load_balancer_needs_a_health_check_node_port_and_holds_it() {
        let r = ranges();
        let mut chosen = local_load_balancer(None);
        assert!(prepare(&r, &mut chosen, None).unwrap().health_check);
        let mut asked = local_load_balancer(Some(31000));
        assert!(!prepare(&r, &mut asked, None).unwrap().health_check);
        assert_eq!(
            held(&asked),
            [
                "/registry/ranges/serviceips/10.96.0.20",
                "/registry/ranges/servicenodeports/30080",
                "/registry/ranges/servicenodeports/31000"
            ]
        );
        // Cluster-wide traffic, or no load balancer, needs none.
        for (field, value) in [("externalTrafficPolicy", "Cluster"), ("type", "NodePort")] {
            let mut svc = local_load_balancer(None);
            svc["spec"][field] = json!(value);
            assert!(!prepare(&r, &mut svc, None).unwrap().health_check, "{svc}");
        }
    }

    #[test]
    fn a_health_check_node_port_asked_for_must_be_free_and_in_range() {
        let r = ranges();
        for (port, why) in [
            (
                80,
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
            (30080, "provided port is already allocated"),
        ] {
            let mut svc = local_load_balancer(Some(port));
            assert_eq!(
                prepare(&r, &mut svc, None),
                Err(Refused::Internal(format!(
                    "Internal error occurred: failed to allocate requested HealthCheck NodePort {port}: {why}"
                )))
            );
        }
        // Another Service's port: kube-apiserver reports an internal error, not a field.
        let svc = local_load_balancer(Some(31000));
        assert!(matches!(
            taken("/registry/ranges/servicenodeports/31000", &svc),
            Refused::Internal(m) if m.contains("HealthCheck NodePort 31000")
        ));
        assert!(matches!(
            taken("/registry/ranges/servicenodeports/30080", &svc),
            Refused::Invalid(c) if c[0].field == "spec.ports[0].nodePort"
        ));
    }

    #[test]
    fn an_update_keeps_the_health_check_node_port_or_allocates_one_when_newly_needed() {
        let r = ranges();
        let old = local_load_balancer(Some(31000));
        let mut omitted = local_load_balancer(None);
        assert!(!prepare(&r, &mut omitted, Some(&old)).unwrap().health_check);
        assert_eq!(omitted["spec"]["healthCheckNodePort"], 31000);

        let mut cluster = old.clone();
        cluster["spec"]["externalTrafficPolicy"] = json!("Cluster");
        cluster["spec"]
            .as_object_mut()
            .unwrap()
            .remove("healthCheckNodePort");
        let mut local = local_load_balancer(None);
        assert!(
            prepare(&r, &mut local, Some(&cluster))
                .unwrap()
                .health_check
        );
        // A port the Service held before is still held while the update is written.
        let mut reused = local_load_balancer(Some(30080));
        reused["spec"]["ports"][0]["nodePort"] = json!(30081);
        assert!(matches!(
            prepare(&r, &mut reused, Some(&cluster)),
            Err(Refused::Internal(_))
        ));
    }

    #[test]
    fn a_load_balancer_without_node_port_allocation_keeps_the_ones_asked_for() {
        let r = ranges();
        let mut svc = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20",
            "allocateLoadBalancerNodePorts": false,
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 443}]}});
        let needs = prepare(&r, &mut svc, None).unwrap();
        assert!(needs.ports.is_empty(), "none chosen: {needs:?}");
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080);
        assert!(svc["spec"]["ports"][1].get("nodePort").is_none());
        assert_eq!(
            held(&svc),
            [
                "/registry/ranges/serviceips/10.96.0.20",
                "/registry/ranges/servicenodeports/30080"
            ]
        );
        svc["spec"]["ports"][0]["nodePort"] = json!(80);
        assert!(matches!(
            prepare(&r, &mut svc, None),
            Err(Refused::Invalid(c)) if c[0].field == "spec.ports[0].nodePort"
        ));
    }

    #[test]
    fn an_update_keeps_the_stored_address() {
        let r = ranges();
        let old = json!({"spec": {"clusterIP": "10.96.0.10"}});
        let mut new = json!({"spec": {"ports": [{"port": 53}]}});
        let needs = prepare(&r, &mut new, Some(&old)).unwrap();
        assert!(!needs.ip);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
    }
}
