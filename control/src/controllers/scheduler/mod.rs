//! The scheduler: pods without a node are bound to one, as kube-scheduler's default profile
//! binds them. The core is pure: [`choose`] runs the filters over every node and scores the
//! feasible ones; [`unschedulable`] words the refusal ("0/3 nodes are available: …"). Around
//! it, [`run`] keeps the cluster view ([`cache::Cluster`], with pods assumed on their node as
//! soon as they are chosen) and the queue ([`queue::Queue`]) from watch events, binds through
//! `pods/binding`, and for a pod that fits nowhere writes `PodScheduled=False` and a
//! FailedScheduling event.
//!
//! - [`filters`]: node-local filters (NodeUnschedulable, TaintToleration, NodeAffinity,
//!   NodePorts, NodeResourcesFit) and the matchers other controllers share.
//! - [`spread`]: PodTopologySpread (filter and score).
//! - [`affinity`]: InterPodAffinity (filter and score).
//! - [`scores`]: the remaining scores and the weighted total.
//! - [`cache`], [`queue`]: the cluster view and the scheduling queue.
//!
//! Not done: preemption (a pod that fits nowhere waits; it never evicts lower-priority pods),
//! image locality, volume filters, the cluster-default spread constraints.

pub mod affinity;
pub mod cache;
pub mod filters;
pub mod queue;
mod run;
pub mod scores;
pub mod spread;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

pub use cache::{Cluster, NodeInfo};
pub use filters::{
    Resources, allocatable, feasible, node_affinity_matches, node_selector_term_matches, requests,
    tolerates, untolerated_taint,
};
pub use run::run;

/// The scheduler's name in `spec.schedulerName`.
pub const NAME: &str = "default-scheduler";

/// Why a pod fits no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    /// kube-scheduler's message ("0/3 nodes are available: …").
    pub message: String,
    /// Some node was refused for pod affinity or topology spread: placing other pods may help.
    pub pods_help: bool,
}

/// Picks the node for `pod`: the feasible node with the best weighted score (ties to the node
/// holding fewer pods, then by name, where kube-scheduler picks at random).
pub fn choose(pod: &Pod, cluster: &Cluster) -> Result<String, Unschedulable> {
    let pod_affinity = affinity::Prepared::new(pod, cluster);
    let pod_affinity = (!pod_affinity.is_empty()).then_some(pod_affinity);
    let spread = spread::Prepared::new(pod, cluster);
    let mut fits: Vec<&NodeInfo> = Vec::new();
    let mut reasons: Vec<Vec<String>> = Vec::new();
    let mut pods_help = false;
    for info in cluster.nodes.values() {
        let why = feasible(pod, info);
        if !why.is_empty() {
            reasons.push(why);
            continue;
        }
        // In the default profile's order: PodTopologySpread, then InterPodAffinity.
        let refused = spread
            .as_ref()
            .and_then(|s| s.filter(info))
            .or_else(|| pod_affinity.as_ref().and_then(|a| a.filter(info)));
        match refused {
            Some(reason) => {
                pods_help |= matches!(
                    reason,
                    filters::reason::SPREAD | filters::reason::POD_AFFINITY
                );
                reasons.push(vec![reason.to_owned()]);
            }
            None => fits.push(info),
        }
    }
    if fits.is_empty() {
        return Err(Unschedulable {
            message: unschedulable(cluster.nodes.len(), &reasons),
            pods_help,
        });
    }
    let totals = scores::total(pod, cluster, &fits);
    let best = fits
        .iter()
        .zip(totals)
        .max_by(|(a, sa), (b, sb)| {
            sa.cmp(sb)
                .then(b.requested.pods.cmp(&a.requested.pods))
                .then(b.node.metadata.name.cmp(&a.node.metadata.name))
        })
        .map(|(info, _)| info.node.metadata.name.clone().unwrap_or_default());
    best.ok_or_else(|| Unschedulable {
        message: unschedulable(cluster.nodes.len(), &reasons),
        pods_help,
    })
}

/// The message of a pod that fits nowhere: "0/N nodes are available: …", each reason with
/// the number of nodes it kept out, sorted as kube-scheduler sorts them (as strings, count
/// first).
pub fn unschedulable(nodes: usize, reasons: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons.iter().flatten() {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if nodes == 0 {
        "no nodes available to schedule pods".to_owned()
    } else if parts.is_empty() {
        format!("0/{nodes} nodes are available.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

/// Builders of nodes and pods for the unit tests of every submodule.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    fn merge(into: &mut Value, extra: Value) {
        match (into, extra) {
            (Value::Object(into), Value::Object(extra)) => {
                for (k, v) in extra {
                    merge(into.entry(k).or_insert(Value::Null), v);
                }
            }
            (into, extra) => *into = extra,
        }
    }

    /// A Ready node labelled with its hostname; `extra` is merged in (objects key by key).
    pub(crate) fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> Arc<Node> {
        let mut value = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        merge(&mut value, extra);
        Arc::new(serde_json::from_value(value).expect("a Node"))
    }

    /// A pod in namespace `d` requesting `cpu` and 64 MiB; `extra` is merged into its spec.
    pub(crate) fn pod(name: &str, cpu: &str, extra: Value) -> Pod {
        let mut value = json!({"metadata": {"name": name, "namespace": "d"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}});
        merge(&mut value["spec"], extra);
        serde_json::from_value(value).expect("a Pod")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::testing::{node, pod};
    use super::*;

    fn cluster(nodes: Vec<Arc<k8s_openapi::api::core::v1::Node>>) -> Cluster {
        let mut c = Cluster::default();
        for n in nodes {
            c.set_node(n);
        }
        c
    }

    fn labelled(name: &str, app: &str, cpu: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut p = pod(name, cpu, extra);
        p.metadata.labels = Some([("app".to_owned(), app.to_owned())].into());
        Arc::new(p)
    }

    #[test]
    fn reasons_are_counted_and_sorted_as_upstream() {
        let c = cluster(vec![
            node("small", "1", "1Gi", json!({})),
            node(
                "tainted",
                "8",
                "8Gi",
                json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
            ),
            node("off", "8", "8Gi", json!({"spec": {"unschedulable": true}})),
        ]);
        let big = pod("p", "2", json!({}));
        assert_eq!(
            choose(&big, &c).unwrap_err().message,
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {gpu: yes}, 1 node(s) were unschedulable."
        );
        let tolerant = pod(
            "p",
            "2",
            json!({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(choose(&tolerant, &c).unwrap(), "tainted");
        assert_eq!(unschedulable(0, &[]), "no nodes available to schedule pods");
    }

    #[test]
    fn anti_affinity_and_resources_in_one_message() {
        let mut c = cluster(vec![
            node("a", "1", "4Gi", json!({})),
            node("b", "1", "4Gi", json!({})),
            node("c", "4", "4Gi", json!({})),
        ]);
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        c.place(labelled("web-0", "web", "100m", json!({})), "c");
        let web = labelled("web-1", "web", "2", anti.clone());
        let refused = choose(&web, &c).unwrap_err();
        assert_eq!(
            refused.message,
            "0/3 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 2 Insufficient cpu."
        );
        assert!(!refused.pods_help, "anti-affinity waits for pods to leave");
        // The incoming pod's own rule is checked before the placed pod's.
        c.place(labelled("web-0", "web", "100m", anti.clone()), "c");
        assert_eq!(choose(&web, &c).unwrap_err(), refused);
        let plain = labelled("web-2", "web", "100m", json!({}));
        assert_eq!(choose(&plain, &c).unwrap(), "a");
        let mut pinned = (*plain).clone();
        pinned.spec.as_mut().unwrap().node_name = None;
        pinned.spec.as_mut().unwrap().node_selector =
            Some([("kubernetes.io/hostname".to_owned(), "c".to_owned())].into());
        assert_eq!(
            choose(&pinned, &c).unwrap_err().message,
            "0/3 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, 2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn a_burst_spreads_and_weights_decide() {
        let mut c = cluster(vec![
            node("a", "2", "4Gi", json!({})),
            node("b", "2", "4Gi", json!({})),
        ]);
        let p = Arc::new(pod("p", "500m", json!({})));
        c.place(Arc::clone(&p), "a");
        assert_eq!(choose(&pod("q", "500m", json!({})), &c).unwrap(), "b");

        // Preferred node affinity (weight 2) beats the emptier node.
        let likes_a = pod(
            "r",
            "500m",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}}]}}}),
        );
        assert_eq!(choose(&likes_a, &c).unwrap(), "a");
    }

    #[test]
    fn spread_pods_help_and_self_affinity() {
        let mut c = cluster(vec![
            node(
                "a",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "z1"}}}),
            ),
            node(
                "b",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "z2"}}}),
            ),
        ]);
        let spread = json!({"nodeSelector": {"topology.kubernetes.io/zone": "z1"},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        assert_eq!(
            choose(&labelled("w0", "web", "100m", spread.clone()), &c).unwrap(),
            "a"
        );
        c.place(labelled("w0", "web", "100m", spread.clone()), "a");
        // Only a is eligible, so it is its own minimum: it may keep taking pods.
        assert_eq!(
            choose(&labelled("w1", "web", "100m", spread), &c).unwrap(),
            "a"
        );

        let together = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}});
        let web = labelled("w2", "api", "100m", together.clone());
        let refused = choose(&web, &c).unwrap_err();
        assert_eq!(
            refused.message,
            "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
        );
        assert!(refused.pods_help);
        assert!(choose(&labelled("db-0", "db", "100m", together), &c).is_ok());
    }
}
