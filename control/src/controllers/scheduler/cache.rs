//! The scheduler's view of the cluster: nodes, and every pod that holds a place on one, bound
//! (the API says so) or assumed (this scheduler chose the node and the watch has not shown the
//! binding yet, so a burst of pods is spread in one pass). Aggregates are kept incrementally,
//! so a decision never walks every pod: per node the requested resources and host ports; per
//! (namespace, label set) how many pods each node holds, which is what pod affinity and
//! topology spread count (pods of one workload share a label set, so the groups are few); and
//! the pods that carry pod (anti-)affinity terms, which incoming pods must respect.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt as _;

use super::filters::{Resources, allocatable, host_ports, pod_requests};

/// `namespace/name`, the key of a pod everywhere in the scheduler.
pub fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// One node and what its pods hold.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    /// Parsed once per node update: decisions read it for every node.
    pub allocatable: Resources,
    /// The sum of its pods' requests (the resource filter).
    pub requested: Resources,
    /// The same with kube-scheduler's defaults for containers that request nothing (scores).
    pub non_zero: Resources,
    /// (protocol, port) → how many pods take it.
    pub host_ports: HashMap<(String, i32), u32>,
}

impl NodeInfo {
    /// A node holding nothing yet.
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            allocatable: allocatable(&node),
            node,
            requested: Resources::default(),
            non_zero: Resources::default(),
            host_ports: HashMap::new(),
        }
    }

    /// Counts `pod` in (`sign` 1) or out (`sign` -1) of what the node holds.
    pub fn add(&mut self, pod: &Pod, sign: i64) {
        self.requested.add(pod_requests(pod, false), sign);
        self.non_zero.add(pod_requests(pod, true), sign);
        for port in host_ports(pod) {
            let n = self.host_ports.entry(port).or_default();
            if sign > 0 {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
        }
        self.host_ports.retain(|_, n| *n > 0);
    }
}

/// Pods of one namespace with one label set: how many each node holds.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub per_node: HashMap<String, u32>,
}

/// (namespace, labels): the key of a [`Group`].
pub type GroupKey = (String, BTreeMap<String, String>);

/// Where a pod holds a place.
#[derive(Clone, Debug)]
pub struct Placed {
    pub pod: Arc<Pod>,
    pub node: String,
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Default)]
pub struct Cluster {
    /// By name: decisions walk nodes in a stable order.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Pods holding a place, bound or assumed, by key.
    pub placed: HashMap<String, Placed>,
    /// Placed pods by (namespace, labels).
    pub groups: HashMap<GroupKey, Group>,
    /// Placed pods that carry pod affinity or anti-affinity terms, by key.
    pub with_affinity: HashMap<String, Placed>,
    /// Namespace labels, for `namespaceSelector` in pod affinity terms.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
}

fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn scheduling_view(node: &Node) -> impl PartialEq + '_ {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| {
            c.iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect::<Vec<_>>()
        });
    (
        node.metadata.labels.as_ref(),
        node.spec.as_ref(),
        node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
        ready,
    )
}

impl Cluster {
    /// Adds or updates a node; true when it is new or changed in a way that may let a pod
    /// fit (labels, taints, allocatable, conditions, unschedulable), not on heartbeats.
    pub fn set_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.name_any();
        if let Some(info) = self.nodes.get_mut(&name) {
            let relevant = scheduling_view(&info.node) != scheduling_view(&node);
            info.allocatable = allocatable(&node);
            info.node = node;
            return relevant;
        }
        // A node seen again: count the pods that were already placed on it.
        let mut info = NodeInfo::new(node);
        for placed in self.placed.values().filter(|p| p.node == name) {
            info.add(&placed.pod, 1);
        }
        self.nodes.insert(name, info);
        true
    }

    /// Forgets a node (its pods stay placed, in case it comes back).
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Whether the pod holds a place (bound or assumed).
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.placed.get(key).map(|p| p.node.as_str())
    }

    /// Places `pod` on `node` (assumed or bound), moving it if it was elsewhere.
    pub fn place(&mut self, pod: Arc<Pod>, node: &str) {
        let key = key(&pod);
        self.forget(&key);
        if let Some(info) = self.nodes.get_mut(node) {
            info.add(&pod, 1);
        }
        let group = (pod.namespace().unwrap_or_default(), pod.labels().clone());
        *self
            .groups
            .entry(group)
            .or_default()
            .per_node
            .entry(node.to_owned())
            .or_default() += 1;
        let placed = Placed {
            pod,
            node: node.to_owned(),
        };
        if has_pod_affinity(&placed.pod) {
            self.with_affinity.insert(key.clone(), placed.clone());
        }
        self.placed.insert(key, placed);
    }

    /// Takes a pod's place away; true if it had one.
    pub fn forget(&mut self, key: &str) -> bool {
        let Some(old) = self.placed.remove(key) else {
            return false;
        };
        self.with_affinity.remove(key);
        if let Some(info) = self.nodes.get_mut(&old.node) {
            info.add(&old.pod, -1);
        }
        let group = (
            old.pod.namespace().unwrap_or_default(),
            old.pod.labels().clone(),
        );
        if let Some(g) = self.groups.get_mut(&group) {
            if let Some(n) = g.per_node.get_mut(&old.node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.per_node.remove(&old.node);
                }
            }
            if g.per_node.is_empty() {
                self.groups.remove(&group);
            }
        }
        true
    }

    /// A label of a node, if the node is known and has it.
    pub fn node_label(&self, node: &str, key: &str) -> Option<&String> {
        self.nodes.get(node).and_then(|n| n.node.labels().get(key))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{node, pod};
    use super::*;

    #[test]
    fn placing_moving_and_forgetting_keep_the_aggregates() {
        let mut cluster = Cluster::default();
        assert!(cluster.set_node(node("a", "4", "8Gi", json!({}))));
        assert!(cluster.set_node(node("b", "4", "8Gi", json!({}))));
        assert!(
            !cluster.set_node(node("a", "4", "8Gi", json!({}))),
            "an unchanged node is no event"
        );
        assert!(cluster.set_node(node(
            "a",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"zone": "z1"}}})
        )));
        let p = Arc::new(pod(
            "web-1",
            "500m",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}],
                 "resources": {"requests": {"cpu": "500m"}}}]}),
        ));
        cluster.place(Arc::clone(&p), "a");
        assert_eq!(cluster.nodes["a"].requested.milli_cpu, 500);
        assert_eq!(cluster.nodes["a"].host_ports.len(), 1);
        cluster.place(Arc::clone(&p), "b");
        assert_eq!(cluster.nodes["a"].requested, Resources::default());
        assert!(cluster.nodes["a"].host_ports.is_empty());
        assert_eq!(cluster.nodes["b"].requested.pods, 1);
        assert_eq!(cluster.groups.len(), 1);
        assert_eq!(cluster.node_of("d/web-1"), Some("b"));

        // A node that goes away and comes back recounts its pods.
        cluster.remove_node("b");
        assert!(cluster.set_node(node("b", "4", "8Gi", json!({}))));
        assert_eq!(cluster.nodes["b"].requested.milli_cpu, 500);

        assert!(cluster.forget("d/web-1"));
        assert!(!cluster.forget("d/web-1"));
        assert!(cluster.groups.is_empty());
        assert_eq!(cluster.nodes["b"].requested, Resources::default());
    }
}
