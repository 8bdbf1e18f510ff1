//! The address and name plan of a local cluster. Pure: from a name, a node count and the
//! indexes other clusters hold, everything `up` will make and `down` will remove.
//!
//! ```text
//!   host netns: strait-control on 172.30.<k>.1:6443, veth st-<name> ──┐
//!   underlay netns strait-<name>-underlay: bridge br0 (172.30.<k>.0/24) ├── n<i> ── eth0 of node i
//!   node netns strait-<name>-node-<i>: eth0 172.30.<k>.<10+i>, strait-agent, strait-dns
//!                                      pods 10.244.<i>.0/24 (the control plane's node IPAM)
//! ```
//!
//! The control plane runs in the host namespace on the host's end of the underlay, so
//! kubectl on the host reaches it on a local address (no route leaves the machine), and
//! nodes reach it over the bridge. Each cluster has its own /24 (`k`), so several run side
//! by side; node namespaces are private, so every cluster's pods may use the same ranges.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The underlay ranges: cluster `k` gets `172.30.k.0/24`.
const UNDERLAY_BASE: [u8; 2] = [172, 30];
/// The first node's host number on the underlay; the ones below are the host's.
const FIRST_NODE_HOST: u8 = 10;
/// The last host number a node may have (.255 is the broadcast address).
const LAST_NODE_HOST: u8 = 250;
/// The most nodes the plan has addresses for: underlay hosts `.10`–`.250`, fewer than the
/// 256 pod ranges of `10.244.0.0/16` in /24s.
pub const MAX_NODES: usize = (LAST_NODE_HOST - FIRST_NODE_HOST) as usize + 1;
/// The host-side interface is `st-<name>`: interface names hold 15 bytes.
pub const MAX_NAME_LEN: usize = 12;
/// The API port, kube-apiserver's.
pub const API_PORT: u16 = 6443;
/// The demo image every node imports.
pub const DEMO_IMAGE: &str = "strait.local/busybox:1";
/// Where local clusters keep their state, one directory each.
pub const CLUSTERS_DIR: &str = "/var/lib/strait/clusters";
/// Where local clusters pin their nodes' maps, one directory each.
pub const PINS_DIR: &str = "/sys/fs/bpf/strait/clusters";

/// Which store the control plane keeps objects in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// One `strait-control` on its embedded redb store.
    Redb,
    /// A three-member etcd cluster on loopback ports and two `strait-control` processes.
    Etcd,
}

/// Why a cluster cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "cluster name {0:?} is not valid: use 1 to {MAX_NAME_LEN} lower-case letters, digits \
         and '-', starting with a letter and not ending with '-'"
    )]
    Name(String),
    #[error("a cluster needs at least one node")]
    NoNodes,
    #[error(
        "{0} nodes do not fit the address plan: at most {MAX_NODES} (underlay hosts \
         .{FIRST_NODE_HOST}-.{LAST_NODE_HOST} of one /24)"
    )]
    TooManyNodes(usize),
    #[error("every underlay range 172.30.0.0/24-172.30.255.0/24 is taken by another cluster")]
    NoRange,
}

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// The Node's name in the API.
    pub name: String,
    /// Its network namespace (under /run/netns).
    pub netns: String,
    /// Its address on the underlay.
    pub ip: Ipv4Addr,
    /// Its end of the underlay link inside its namespace (the agent's uplink).
    pub uplink: String,
    /// The bridge port of its link, inside the underlay namespace.
    pub port: String,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// The agent's pinned maps and programs.
    pub pin_dir: PathBuf,
    /// The agent's cgroup2 subtree, relative to the cgroup2 mount.
    pub cgroup: PathBuf,
}

/// One etcd member of a cluster on etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMember {
    pub name: String,
    /// Its client port on 127.0.0.1.
    pub client_port: u16,
    /// Its peer port on 127.0.0.1.
    pub peer_port: u16,
    pub data_dir: PathBuf,
}

/// Members of a local etcd cluster: three, so that one may fail.
const ETCD_MEMBERS: u16 = 3;
/// Control processes on etcd: two, so that one may fail.
const CONTROL_PROCESSES_ON_ETCD: u8 = 2;
/// The first etcd port; 256 clusters × 8 ports stay below 22048.
const ETCD_PORT_BASE: u16 = 20000;

/// Everything a cluster is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub store: Store,
    /// `k` of the underlay `172.30.k.0/24`.
    pub index: u8,
    /// The underlay namespace, holding the bridge.
    pub underlay_netns: String,
    /// The host's end of the underlay link (in the host namespace).
    pub host_link: String,
    /// The host's address on the underlay: the control plane's.
    pub host_ip: Ipv4Addr,
    /// The cluster's state directory.
    pub dir: PathBuf,
    /// The cluster's pin directory (one subdirectory per node).
    pub pin_dir: PathBuf,
    /// The cluster's cgroup2 subtree, relative to the cgroup2 mount.
    pub cgroup: PathBuf,
    pub nodes: Vec<NodePlan>,
}

impl Plan {
    /// Plans cluster `name` with `nodes` nodes, on the lowest underlay range not in `taken`.
    pub fn new(name: &str, nodes: usize, store: Store, taken: &[u8]) -> Result<Self, PlanError> {
        validate_name(name)?;
        if nodes == 0 {
            return Err(PlanError::NoNodes);
        }
        if nodes > MAX_NODES {
            return Err(PlanError::TooManyNodes(nodes));
        }
        let index = (0..=u8::MAX)
            .find(|k| !taken.contains(k))
            .ok_or(PlanError::NoRange)?;
        let dir = Path::new(CLUSTERS_DIR).join(name);
        let pin_dir = Path::new(PINS_DIR).join(name);
        let cgroup = Path::new("strait").join("clusters").join(name);
        let address = |host: u8| Ipv4Addr::new(UNDERLAY_BASE[0], UNDERLAY_BASE[1], index, host);
        let nodes = (0..nodes)
            .map(|i| {
                let node = format!("node-{i}");
                // `nodes <= MAX_NODES` keeps the host number within .10-.250.
                let host = FIRST_NODE_HOST.saturating_add(u8::try_from(i).unwrap_or(u8::MAX));
                NodePlan {
                    netns: format!("strait-{name}-{node}"),
                    ip: address(host),
                    uplink: "eth0".to_owned(),
                    port: format!("n{i}"),
                    state_dir: dir.join("nodes").join(&node),
                    pin_dir: pin_dir.join(&node),
                    cgroup: cgroup.join(&node),
                    name: node,
                }
            })
            .collect();
        Ok(Self {
            name: name.to_owned(),
            store,
            index,
            underlay_netns: format!("strait-{name}-underlay"),
            host_link: format!("st-{name}"),
            host_ip: address(1),
            dir,
            pin_dir,
            cgroup,
            nodes,
        })
    }

    /// The underlay prefix length.
    pub const PREFIX: u8 = 24;

    /// The control processes' addresses: one on redb; two sharing etcd.
    pub fn control_ips(&self) -> Vec<Ipv4Addr> {
        let count = match self.store {
            Store::Redb => 1,
            Store::Etcd => CONTROL_PROCESSES_ON_ETCD,
        };
        (1..=count)
            .map(|host| Ipv4Addr::new(UNDERLAY_BASE[0], UNDERLAY_BASE[1], self.index, host))
            .collect()
    }

    /// The etcd members of a cluster on etcd (none on redb), on loopback ports that differ
    /// per cluster: `20000 + 8 × index + 2 × member` for clients, one more for peers.
    pub fn etcd_members(&self) -> Vec<EtcdMember> {
        if self.store == Store::Redb {
            return Vec::new();
        }
        (0..ETCD_MEMBERS)
            .map(|member| {
                let client_port = ETCD_PORT_BASE + 8 * u16::from(self.index) + 2 * member;
                EtcdMember {
                    name: format!("etcd-{member}"),
                    client_port,
                    peer_port: client_port + 1,
                    data_dir: self.dir.join("etcd").join(format!("etcd-{member}")),
                }
            })
            .collect()
    }

    /// The control plane's data directory: `control` for the first process, `control-N`
    /// for the others.
    pub fn control_dir_of(&self, process: usize) -> PathBuf {
        match process {
            0 => self.control_dir(),
            n => self.dir.join(format!("control-{n}")),
        }
    }

    /// The API's address.
    pub fn server(&self) -> String {
        format!("https://{}:{API_PORT}", self.host_ip)
    }

    /// The control plane's data directory.
    pub fn control_dir(&self) -> PathBuf {
        self.dir.join("control")
    }

    /// The admin kubeconfig the control plane writes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.control_dir().join("admin.kubeconfig")
    }

    /// Where process logs go.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The demo images every node imports.
    pub fn image_dir(&self) -> PathBuf {
        self.dir.join("images")
    }
}

/// A DNS label (as Kubernetes names are) short enough for the host interface name.
pub fn validate_name(name: &str) -> Result<(), PlanError> {
    let bad = || PlanError::Name(name.to_owned());
    let first = name.chars().next().ok_or_else(bad)?;
    if name.len() > MAX_NAME_LEN
        || !first.is_ascii_lowercase()
        || name.ends_with('-')
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_names_and_addresses_every_node() {
        let plan = Plan::new("demo", 3, Store::Redb, &[]).expect("a plan");
        assert_eq!(plan.index, 0);
        assert_eq!(plan.host_ip, Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(plan.server(), "https://172.30.0.1:6443");
        assert_eq!(plan.host_link, "st-demo");
        assert_eq!(plan.underlay_netns, "strait-demo-underlay");
        let ips: Vec<String> = plan.nodes.iter().map(|n| n.ip.to_string()).collect();
        assert_eq!(ips, ["172.30.0.10", "172.30.0.11", "172.30.0.12"]);
        let node = &plan.nodes[2];
        assert_eq!(node.name, "node-2");
        assert_eq!(node.netns, "strait-demo-node-2");
        assert_eq!(node.port, "n2");
        assert_eq!(
            node.state_dir,
            Path::new("/var/lib/strait/clusters/demo/nodes/node-2")
        );
        assert_eq!(
            node.pin_dir,
            Path::new("/sys/fs/bpf/strait/clusters/demo/node-2")
        );
        assert_eq!(node.cgroup, Path::new("strait/clusters/demo/node-2"));
    }

    #[test]
    fn a_second_cluster_takes_the_lowest_free_range() {
        let plan = Plan::new("b", 1, Store::Redb, &[0, 1, 3]).expect("a plan");
        assert_eq!(plan.index, 2);
        assert_eq!(plan.nodes[0].ip, Ipv4Addr::new(172, 30, 2, 10));
        let all: Vec<u8> = (0..=u8::MAX).collect();
        assert_eq!(
            Plan::new("c", 1, Store::Redb, &all),
            Err(PlanError::NoRange)
        );
    }

    #[test]
    fn node_counts_are_bounded_by_the_address_plan() {
        assert_eq!(Plan::new("a", 0, Store::Redb, &[]), Err(PlanError::NoNodes));
        let most = Plan::new("a", MAX_NODES, Store::Redb, &[]).expect("the most nodes");
        assert_eq!(
            most.nodes.last().map(|n| n.ip),
            Some(Ipv4Addr::new(172, 30, 0, 250))
        );
        let error = Plan::new("a", MAX_NODES + 1, Store::Redb, &[]).unwrap_err();
        assert_eq!(error, PlanError::TooManyNodes(242));
        assert!(error.to_string().contains("at most 241"), "{error}");
    }

    #[test]
    fn a_cluster_on_etcd_has_three_members_and_two_control_processes() {
        let plan = Plan::new("ha", 1, Store::Etcd, &[0, 1]).expect("a plan");
        assert_eq!(plan.index, 2);
        let ports: Vec<(u16, u16)> = plan
            .etcd_members()
            .iter()
            .map(|m| (m.client_port, m.peer_port))
            .collect();
        assert_eq!(ports, [(20016, 20017), (20018, 20019), (20020, 20021)]);
        assert_eq!(
            plan.control_ips(),
            [Ipv4Addr::new(172, 30, 2, 1), Ipv4Addr::new(172, 30, 2, 2)]
        );
        assert_eq!(
            plan.control_dir_of(1),
            Path::new("/var/lib/strait/clusters/ha/control-1")
        );
        let redb = Plan::new("one", 1, Store::Redb, &[]).expect("a plan");
        assert!(redb.etcd_members().is_empty());
        assert_eq!(redb.control_ips().len(), 1);
        // The last range's ports stay below the next cluster's and within u16.
        let last =
            Plan::new("last", 1, Store::Etcd, &(0..255).collect::<Vec<u8>>()).expect("a plan");
        assert_eq!(last.etcd_members()[2].peer_port, 22045);
    }

    #[test]
    fn names_must_be_short_dns_labels() {
        for good in ["a", "demo", "web-2", "abcdefghijkl"] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Demo",
            "2fast",
            "a_b",
            "a.b",
            "trailing-",
            "abcdefghijklm",
        ] {
            assert_eq!(
                validate_name(bad),
                Err(PlanError::Name(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
