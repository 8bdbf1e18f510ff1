//! Topology spread constraints, as kube-scheduler's PodTopologySpread plugin: constraints with
//! `whenUnsatisfiable: DoNotSchedule` filter (a node whose domain would exceed `maxSkew` over
//! the least-loaded domain is refused; a node without the topology key too), those with
//! `ScheduleAnyway` score (fewer matching pods in the node's domain is better). Only nodes
//! that pass the pod's node affinity (`nodeAffinityPolicy: Honor`, the default) and, with
//! `nodeTaintsPolicy: Honor`, its tolerations, and that carry every key, form domains.
//! Not done: the cluster-level default constraints applied to pods without any.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::ResourceExt as _;

use super::{
    cache::{Cluster, NodeInfo},
    filters::{node_affinity_matches, reason, tolerations, untolerated_taint},
};
use crate::controllers::pods::selector_matches;

/// One constraint of the pod, its selector completed with `matchLabelKeys`.
#[derive(Debug)]
pub struct Constraint<'a> {
    pub max_skew: i64,
    pub topology_key: &'a str,
    pub hard: bool,
    min_domains: Option<usize>,
    /// `None` (no selector) matches no pod, as upstream.
    selector: Option<LabelSelector>,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint<'_> {
    fn counts(
        &self,
        namespace: &str,
        pod_namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        namespace == pod_namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, labels))
    }
}

/// The pod's `topologySpreadConstraints`.
pub fn constraints(pod: &Pod) -> Vec<Constraint<'_>> {
    let labels = pod.labels();
    pod.spec
        .iter()
        .flat_map(|s| s.topology_spread_constraints.iter().flatten())
        .map(|c| {
            let selector = c.label_selector.clone().map(|mut s| {
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(value) = labels.get(key) {
                        s.match_labels
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key.clone(), value.clone());
                    }
                }
                s
            });
            Constraint {
                max_skew: c.max_skew.into(),
                topology_key: &c.topology_key,
                hard: c.when_unsatisfiable != "ScheduleAnyway",
                min_domains: c.min_domains.and_then(|m| usize::try_from(m).ok()),
                selector,
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

/// Matching pods per domain value, for each of `constraints`, over the nodes that count.
fn count(
    pod: &Pod,
    cluster: &Cluster,
    constraints: &[&Constraint<'_>],
) -> Vec<HashMap<String, i64>> {
    let pod_namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    // The domain of every node that counts, per constraint (absent: the node does not count).
    let mut domains: HashMap<&str, Vec<&String>> = HashMap::new();
    for (name, info) in &cluster.nodes {
        let labels = info.node.labels();
        let values: Option<Vec<&String>> = constraints
            .iter()
            .map(|c| labels.get(c.topology_key))
            .collect();
        let Some(values) = values else { continue };
        let affinity_ok =
            !constraints.iter().any(|c| c.honor_affinity) || node_affinity_matches(pod, &info.node);
        let taints_ok = !constraints.iter().any(|c| c.honor_taints) || {
            let taints = info.node.spec.as_ref().and_then(|s| s.taints.as_deref());
            untolerated_taint(tolerations(pod), taints.unwrap_or(&[])).is_none()
        };
        if !(affinity_ok && taints_ok) {
            continue;
        }
        for (i, value) in values.iter().enumerate() {
            counts[i].entry((*value).clone()).or_default();
        }
        domains.insert(name.as_str(), values);
    }
    for ((namespace, labels), group) in &cluster.groups {
        for (i, c) in constraints.iter().enumerate() {
            if !c.counts(namespace, pod_namespace, labels) {
                continue;
            }
            for (node, n) in &group.per_node {
                if let Some(values) = domains.get(node.as_str()) {
                    *counts[i].entry(values[i].clone()).or_default() += i64::from(*n);
                }
            }
        }
    }
    counts
}

/// The DoNotSchedule constraints' state for one decision.
#[derive(Debug)]
pub struct Prepared<'a> {
    constraints: Vec<Constraint<'a>>,
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint, the fewest matching pods in a domain (0 with fewer than minDomains).
    min: Vec<i64>,
    /// Per constraint, whether the incoming pod itself matches the selector.
    self_match: Vec<i64>,
}

impl<'a> Prepared<'a> {
    /// Counts what the filter asks about `pod`; `None` without DoNotSchedule constraints.
    pub fn new(pod: &'a Pod, cluster: &Cluster) -> Option<Self> {
        let hard: Vec<Constraint<'a>> = constraints(pod).into_iter().filter(|c| c.hard).collect();
        if hard.is_empty() {
            return None;
        }
        let counts = count(pod, cluster, &hard.iter().collect::<Vec<_>>());
        let min = hard
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                if c.min_domains.is_some_and(|m| domains.len() < m) {
                    0
                } else {
                    domains.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let self_match = hard
            .iter()
            .map(|c| i64::from(c.counts(namespace, namespace, pod.labels())))
            .collect();
        Some(Self {
            constraints: hard,
            counts,
            min,
            self_match,
        })
    }

    /// Why the node fails the PodTopologySpread filter, if it does.
    pub fn filter(&self, info: &NodeInfo) -> Option<&'static str> {
        let labels = info.node.labels();
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = labels.get(c.topology_key) else {
                return Some(reason::SPREAD_MISSING_LABEL);
            };
            let matching = self.counts[i].get(value).copied().unwrap_or(0);
            if matching + self.self_match[i] - self.min[i] > c.max_skew {
                return Some(reason::SPREAD);
            }
        }
        None
    }
}

/// The PodTopologySpread score (normalised, 0–100) of `nodes`, or `None` without
/// ScheduleAnyway constraints. Each constraint weighs by the log of its domain count, so a
/// constraint over many domains matters more, as upstream; nodes without a key score 0.
pub fn scores(pod: &Pod, cluster: &Cluster, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
    let all = constraints(pod);
    let soft: Vec<&Constraint<'_>> = all.iter().filter(|c| !c.hard).collect();
    if soft.is_empty() {
        return None;
    }
    let counts = count(pod, cluster, &soft);
    let values: Vec<Option<Vec<&String>>> = nodes
        .iter()
        .map(|info| {
            let labels = info.node.labels();
            soft.iter().map(|c| labels.get(c.topology_key)).collect()
        })
        .collect();
    let weights: Vec<f64> = (0..soft.len())
        .map(|i| {
            let mut domains: Vec<&String> = values.iter().flatten().map(|v| v[i]).collect();
            domains.sort_unstable();
            domains.dedup();
            #[expect(clippy::cast_precision_loss, reason = "domain counts are small")]
            let size = domains.len() as f64;
            (size + 2.0).ln()
        })
        .collect();
    let raw: Vec<Option<i64>> = values
        .iter()
        .map(|v| {
            v.as_ref().map(|v| {
                let total: f64 = soft
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let matching = counts[i].get(v[i]).copied().unwrap_or(0);
                        #[expect(clippy::cast_precision_loss, reason = "pod counts are small")]
                        let n = (matching + c.max_skew - 1) as f64;
                        n * weights[i]
                    })
                    .sum();
                #[expect(clippy::cast_possible_truncation, reason = "a small score, rounded")]
                let total = total.round() as i64;
                total
            })
        })
        .collect();
    let max = raw.iter().flatten().copied().max().unwrap_or(0);
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    Some(
        raw.iter()
            .map(|r| match r {
                None => 0,
                Some(_) if max == 0 => 100,
                Some(s) => 100 * (max + min - s) / max,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::testing::{node, pod};
    use super::*;

    fn spread(when: &str, key: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut constraint = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}});
        if let (Some(c), serde_json::Value::Object(e)) = (constraint.as_object_mut(), extra) {
            c.extend(e);
        }
        let mut p = pod(
            "web-x",
            "100m",
            json!({"topologySpreadConstraints": [constraint]}),
        );
        p.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        Arc::new(p)
    }

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        for (name, zone) in [
            ("a1", Some("a")),
            ("a2", Some("a")),
            ("b1", Some("b")),
            ("x", None),
        ] {
            let labels = zone.map_or(json!({}), |z| json!({"topology.kubernetes.io/zone": z}));
            c.set_node(node(
                name,
                "4",
                "8Gi",
                json!({"metadata": {"labels": labels}}),
            ));
        }
        c
    }

    fn web(n: usize) -> Arc<Pod> {
        let mut p = pod(&format!("web-{n}"), "100m", json!({}));
        p.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        Arc::new(p)
    }

    fn verdicts(p: &Pod, c: &Cluster) -> Vec<Option<&'static str>> {
        let prepared = Prepared::new(p, c).expect("a hard constraint");
        c.nodes.values().map(|n| prepared.filter(n)).collect()
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_and_refuses_nodes_without_the_key() {
        let mut c = cluster();
        let p = spread("DoNotSchedule", "topology.kubernetes.io/zone", json!({}));
        assert_eq!(
            verdicts(&p, &c),
            [None, None, None, Some(reason::SPREAD_MISSING_LABEL)]
        );
        c.place(web(0), "a1");
        assert_eq!(
            verdicts(&p, &c),
            [
                Some(reason::SPREAD),
                Some(reason::SPREAD),
                None,
                Some(reason::SPREAD_MISSING_LABEL)
            ]
        );
        c.place(web(1), "b1");
        assert_eq!(
            verdicts(&p, &c),
            [None, None, None, Some(reason::SPREAD_MISSING_LABEL)]
        );
        // Pods on a node without the key are not counted anywhere.
        c.place(web(2), "x");
        assert_eq!(verdicts(&p, &c)[2], None);
        // Another namespace does not count.
        let mut other = (*web(3)).clone();
        other.metadata.namespace = Some("other".to_owned());
        c.place(Arc::new(other), "a2");
        assert_eq!(verdicts(&p, &c)[0], None);
    }

    #[test]
    fn min_domains_and_hostname_domains() {
        let mut c = cluster();
        c.place(web(0), "a1");
        c.place(web(1), "b1");
        let p = spread(
            "DoNotSchedule",
            "topology.kubernetes.io/zone",
            json!({"minDomains": 3}),
        );
        // Two zones but three wanted: the global minimum is 0, so zones with one pod are full.
        assert_eq!(
            verdicts(&p, &c)[..3],
            [
                Some(reason::SPREAD),
                Some(reason::SPREAD),
                Some(reason::SPREAD)
            ]
        );
        let host = spread("DoNotSchedule", "kubernetes.io/hostname", json!({}));
        assert_eq!(
            verdicts(&host, &c),
            [Some(reason::SPREAD), None, Some(reason::SPREAD), None]
        );
        c.place(web(2), "a2");
        let pinned = spread("DoNotSchedule", "kubernetes.io/hostname", json!({}));
        let mut pinned = (*pinned).clone();
        pinned.spec.as_mut().unwrap().node_selector =
            Some([("topology.kubernetes.io/zone".to_owned(), "a".to_owned())].into());
        // Only zone a's nodes form domains (empty x does not): the minimum is 1, so a1 fits.
        let prepared = Prepared::new(&pinned, &c).unwrap();
        assert_eq!(prepared.filter(&c.nodes["a1"]), None);
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let mut c = cluster();
        c.place(web(0), "a1");
        c.place(web(1), "a2");
        let p = spread("ScheduleAnyway", "topology.kubernetes.io/zone", json!({}));
        assert!(Prepared::new(&p, &c).is_none(), "no filter");
        let nodes: Vec<&NodeInfo> = c.nodes.values().collect();
        let s = scores(&p, &c, &nodes).unwrap();
        assert_eq!(s[3], 0, "no zone label");
        assert_eq!(s[0], s[1]);
        assert!(s[2] > s[0], "{s:?}");
        assert_eq!(s[2], 100);
    }
}
