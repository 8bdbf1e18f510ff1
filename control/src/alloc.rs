//! ClusterIP and NodePort allocation.
//!
//! Each allocated address or port is a key in the store (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) written in the same transaction as the Service
//! that holds it, with the condition that the key is absent. So two Services can never hold
//! the same address, even across several control processes on one etcd; deleting the Service
//! frees it in the same transaction; and a crash can leave nothing half-allocated. A repair
//! pass at start-up still reconciles the keys with the Services, for stores written by older
//! versions or edited by hand.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use strait_api::validate::{Cause, CauseType};

/// The prefix of allocated ClusterIPs.
pub const IP_PREFIX: &str = "/registry/ranges/serviceips/";
/// The prefix of allocated NodePorts.
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// The ranges Services are given addresses and ports from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranges {
    pub service_net: Ipv4Addr,
    pub service_prefix: u8,
    pub node_ports: (u16, u16),
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
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.service_prefix)
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_net) + 1)
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

/// Whether the Service's ports get node ports.
fn wants_node_ports(service: &Value) -> bool {
    match service["spec"]["type"].as_str() {
        Some("NodePort") => true,
        Some("LoadBalancer") => service["spec"]["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// The allocation keys a Service holds.
pub fn held(service: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(ip) = service["spec"]["clusterIP"].as_str()
        && !ip.is_empty()
        && ip != "None"
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    if let Some(ports) = service["spec"]["ports"].as_array() {
        for port in ports {
            if let Some(n) = port["nodePort"].as_u64().filter(|n| *n != 0) {
                keys.push(format!("{PORT_PREFIX}{n}"));
            }
        }
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
}

/// Check what the user asked for against the ranges, clear what the type does not have, and
/// say what must still be chosen. `old` is the stored Service on update (its ClusterIP is kept
/// when the new one leaves it empty).
pub fn prepare(
    ranges: &Ranges,
    service: &mut Value,
    old: Option<&Value>,
) -> Result<Needs, Vec<Cause>> {
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
    let node_ports = wants_node_ports(service);
    let (low, high) = ranges.node_ports;
    if let Some(ports) = service
        .get_mut("spec")
        .and_then(|s| s.get_mut("ports"))
        .and_then(Value::as_array_mut)
    {
        for (i, port) in ports.iter_mut().enumerate() {
            let asked = port["nodePort"].as_u64().unwrap_or(0);
            if !node_ports {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
            } else if asked == 0 {
                needs.ports.push(i);
            } else if !(u64::from(low)..=u64::from(high)).contains(&asked) {
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
    if causes.is_empty() {
        Ok(needs)
    } else {
        Err(causes)
    }
}

/// Write the chosen ClusterIP into the Service, with the fields that go with it.
pub fn set_cluster_ip(service: &mut Value, ip: Ipv4Addr) {
    let spec = &mut service["spec"];
    spec["clusterIP"] = json!(ip.to_string());
    spec["clusterIPs"] = json!([ip.to_string()]);
    spec["ipFamilies"] = json!(["IPv4"]);
}

/// The cause for an address or port someone else holds.
pub fn taken(key: &str, service: &Value) -> Cause {
    if let Some(ip) = key.strip_prefix(IP_PREFIX) {
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
                ports: vec![0]
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
        let causes = prepare(&r, &mut svc, None).unwrap_err();
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.clusterIPs", "spec.ports[0].nodePort"]);
        assert!(causes[1].message.contains("30000-32767"));
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
