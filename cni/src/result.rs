//! The ADD result, in CNI 1.0.0 or 0.4.0 shape.
//!
//! Compared with Debian's reference `bridge` + `host-local` for the same input, the top-level
//! fields are the same (`cniVersion`, `interfaces`, `ips`, `routes`, `dns`); what differs, and
//! why:
//!
//! - `interfaces` has two entries (host veth, pod interface), not three: there is no bridge.
//!   Each pod is routed, as in Cilium and Calico, so the node's routing table (and later the
//!   eBPF dataplane on the host veth) sees every packet, and no pod can ARP-spoof another.
//! - `ips[].address` is a `/32`, not the subnet's prefix: the pod has no on-link neighbours,
//!   everything goes through the node.
//! - `ips[].gateway` is `169.254.1.1`, a link-local address no one holds, not the bridge's
//!   address: the host veth answers ARP for it (proxy ARP, and a permanent neighbour entry in
//!   the pod), so the node needs no address per pod and the gateway is the same on every node.
//! - `routes` is the default route through that gateway; the reference plugins return what
//!   host-local was configured with (often nothing).
//! - 0.4.0 results carry `ips[].version`, which 1.0.0 dropped; both are produced.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The gateway every pod routes through; see the module comment.
pub const GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);

/// A CNI result (the subset this plugin produces and reads back as `prevResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The netns path for interfaces inside the sandbox; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// "4" or "6": 0.4.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Address with prefix length, `10.244.1.5/32`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination with prefix length, `0.0.0.0/0`.
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// What ADD built, to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    pub host_ifname: String,
    pub host_mac: String,
    pub pod_ifname: String,
    pub pod_mac: String,
    pub netns: String,
    pub address: IpAddr,
}

impl CniResult {
    /// The result for `wiring`, in the shape of `cni_version`.
    pub fn new(cni_version: &str, wiring: &Wiring) -> Self {
        let (bits, default_dst) = match wiring.address {
            IpAddr::V4(_) => (32, "0.0.0.0/0"),
            IpAddr::V6(_) => (128, "::/0"),
        };
        let version = (cni_version == "0.4.0")
            .then(|| if wiring.address.is_ipv4() { "4" } else { "6" }.to_owned());
        Self {
            cni_version: cni_version.to_owned(),
            interfaces: vec![
                Interface {
                    name: wiring.host_ifname.clone(),
                    mac: wiring.host_mac.clone(),
                    sandbox: None,
                },
                Interface {
                    name: wiring.pod_ifname.clone(),
                    mac: wiring.pod_mac.clone(),
                    sandbox: Some(wiring.netns.clone()),
                },
            ],
            ips: vec![IpConfig {
                version,
                address: format!("{}/{bits}", wiring.address),
                gateway: Some(IpAddr::V4(GATEWAY)),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: default_dst.to_owned(),
                gw: Some(IpAddr::V4(GATEWAY)),
            }],
            dns: Dns::default(),
        }
    }
}

/// Splits `10.0.0.1/32` into address and prefix length.
pub fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring() -> Wiring {
        Wiring {
            host_ifname: "lxc0123456789ab".into(),
            host_mac: "aa:bb:cc:dd:ee:01".into(),
            pod_ifname: "eth0".into(),
            pod_mac: "aa:bb:cc:dd:ee:02".into(),
            netns: "/run/netns/p".into(),
            address: "10.1.0.2".parse().unwrap(),
        }
    }

    #[test]
    fn result_1_0_0_shape() {
        let json = serde_json::to_value(CniResult::new("1.0.0", &wiring())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "lxc0123456789ab", "mac": "aa:bb:cc:dd:ee:01"},
                    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/run/netns/p"}
                ],
                "ips": [{"address": "10.1.0.2/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn result_0_4_0_has_ip_versions_and_round_trips() {
        let result = CniResult::new("0.4.0", &wiring());
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["ips"][0]["version"], "4");
        let back: CniResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, result);
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(
            parse_prefix("10.0.0.1/32"),
            Some(("10.0.0.1".parse().unwrap(), 32))
        );
        assert_eq!(parse_prefix("10.0.0.1/33"), None);
        assert_eq!(parse_prefix("10.0.0.1"), None);
    }
}
