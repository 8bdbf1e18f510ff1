//! Routes to the other nodes' pod ranges: `<their pod CIDR> via <their InternalIP>`, one per
//! peer, tagged with Strait's routing protocol number so a restarted agent finds (and
//! replaces, or removes) the routes an earlier one installed, and never touches others.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Runs `ip` with arguments (the agent routes every child process through its reaper).
pub type IpRunner = Arc<dyn Fn(&[&str]) -> Result<String, String> + Send + Sync>;

/// The `proto` of Strait's routes (rtnetlink protocol numbers above 4 are free for daemons;
/// Cilium and Calico pick their own the same way).
pub const ROUTE_PROTOCOL: u8 = 194;

/// The routes this node needs: pod CIDR → the peer's address. Pure.
pub fn peer_routes(nodes: &[impl AsRef<Node>], this_node: &str) -> BTreeMap<String, IpAddr> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        let node = node.as_ref();
        if node.metadata.name.as_deref() == Some(this_node) {
            continue;
        }
        let Some(spec) = &node.spec else { continue };
        let address = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<IpAddr>().ok());
        let Some(address) = address else { continue };
        let cidrs = spec
            .pod_cidrs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(spec.pod_cidr.clone());
        for cidr in cidrs {
            let same_family = cidr.contains(':') == address.is_ipv6();
            if same_family {
                routes.insert(cidr, address);
            }
        }
    }
    routes
}

/// The routes of Strait's protocol in the table now: CIDR → gateway.
fn installed(ip: &IpRunner) -> Result<BTreeMap<String, IpAddr>, String> {
    let text = ip(&["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])?;
    Ok(parse_routes(&text))
}

/// Parses `ip route show` lines of the form `10.244.1.0/24 via 10.0.0.11 dev eth0 …`.
fn parse_routes(text: &str) -> BTreeMap<String, IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let cidr = words.next()?;
            let mut words = words.skip_while(|w| *w != "via");
            words.next()?;
            let via = words.next()?.parse().ok()?;
            Some((cidr.to_owned(), via))
        })
        .collect()
}

/// Makes the table hold exactly `desired` among Strait's routes.
fn apply(ip: &IpRunner, desired: &BTreeMap<String, IpAddr>) -> Result<(), String> {
    let current = installed(ip)?;
    let proto = ROUTE_PROTOCOL.to_string();
    for (cidr, via) in desired {
        if current.get(cidr) != Some(via) {
            ip(&[
                "route",
                "replace",
                cidr,
                "via",
                &via.to_string(),
                "proto",
                &proto,
            ])?;
            info!(%cidr, %via, "route to a peer's pods");
        }
    }
    for cidr in current.keys().filter(|c| !desired.contains_key(*c)) {
        ip(&["route", "del", cidr, "proto", &proto])?;
        info!(%cidr, "route removed");
    }
    Ok(())
}

/// Watches Nodes and keeps the routes to their pod ranges.
pub async fn run(client: Client, this_node: String, ip: IpRunner) {
    let changed = Arc::new(Notify::new());
    let (nodes, watch) = cache(
        Api::<Node>::all(client),
        Default::default(),
        &changed,
        "nodes",
    );
    let program = async move {
        let _ = nodes.wait_until_ready().await;
        loop {
            let desired = peer_routes(&nodes.state(), &this_node);
            let ip = Arc::clone(&ip);
            let result = tokio::task::spawn_blocking(move || apply(&ip, &desired)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "failed to program routes"),
                Err(error) => warn!(%error, "route programming panicked"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
        }
    };
    tokio::join!(watch, program);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let mut value = json!({"metadata": {"name": name}, "spec": {}, "status": {}});
        if let Some(cidr) = cidr {
            value["spec"]["podCIDR"] = json!(cidr);
            value["spec"]["podCIDRs"] = json!([cidr]);
        }
        if let Some(ip) = ip {
            value["status"]["addresses"] = json!([{"type": "InternalIP", "address": ip}]);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn route_listings_parse() {
        let routes = parse_routes(
            "10.244.1.0/24 via 10.0.0.11 dev eth0 proto 194\n10.244.2.0/24 via 10.0.0.12 dev eth0 proto 194 onlink\nweird\n",
        );
        assert_eq!(routes.len(), 2);
        assert_eq!(
            routes["10.244.2.0/24"],
            "10.0.0.12".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn every_other_node_with_a_range_and_an_address_gets_a_route() {
        let nodes = vec![
            Box::new(node("me", Some("10.244.0.0/24"), Some("10.0.0.10"))),
            Box::new(node("b", Some("10.244.1.0/24"), Some("10.0.0.11"))),
            Box::new(node("no-cidr", None, Some("10.0.0.12"))),
            Box::new(node("no-ip", Some("10.244.3.0/24"), None)),
        ];
        let routes = peer_routes(&nodes, "me");
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes["10.244.1.0/24"],
            "10.0.0.11".parse::<IpAddr>().unwrap()
        );
    }
}
