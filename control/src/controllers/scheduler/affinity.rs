//! Inter-pod affinity and anti-affinity, as kube-scheduler's InterPodAffinity plugin: the
//! required terms filter (the incoming pod's affinity and anti-affinity, and existing pods'
//! anti-affinity against the incoming pod), the preferred terms (and existing pods' terms)
//! score. Counting is per topology domain, from the cache's per-label-set groups, once per
//! decision ([`Prepared::new`]); each node is then a few map lookups.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{
    api::core::v1::{Pod, PodAffinityTerm},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::ResourceExt as _;

use super::{
    cache::{Cluster, NodeInfo},
    filters::reason,
};
use crate::controllers::pods::selector_matches;

/// kube-scheduler's `hardPodAffinityWeight`: what an existing pod's required affinity adds to
/// the score of nodes in its domain when the incoming pod matches it.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// One pod affinity term, with the namespaces it means resolved as Kubernetes does.
#[derive(Debug)]
pub struct Term<'a> {
    pub topology_key: &'a str,
    pub weight: i64,
    selector: Option<&'a LabelSelector>,
    namespaces: Vec<&'a str>,
    namespace_selector: Option<&'a LabelSelector>,
}

impl<'a> Term<'a> {
    /// `term` of a pod in `namespace`: with neither `namespaces` nor `namespaceSelector` it
    /// means the pod's own namespace; an empty `namespaceSelector` means every namespace.
    pub fn new(term: &'a PodAffinityTerm, namespace: &'a str, weight: i64) -> Self {
        let mut namespaces: Vec<&str> = term
            .namespaces
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(namespace);
        }
        Self {
            topology_key: &term.topology_key,
            weight,
            selector: term.label_selector.as_ref(),
            namespaces,
            namespace_selector: term.namespace_selector.as_ref(),
        }
    }

    /// Whether a pod in `namespace` with `labels` matches the term (a term without a label
    /// selector matches no pod, as upstream).
    pub fn matches(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        cluster: &Cluster,
    ) -> bool {
        let namespace_ok = self.namespaces.contains(&namespace)
            || self.namespace_selector.is_some_and(|s| {
                let empty = BTreeMap::new();
                selector_matches(s, cluster.namespaces.get(namespace).unwrap_or(&empty))
            });
        namespace_ok && self.selector.is_some_and(|s| selector_matches(s, labels))
    }
}

/// A pod's four lists of terms.
#[derive(Debug, Default)]
pub struct Terms<'a> {
    pub required_affinity: Vec<Term<'a>>,
    pub required_anti: Vec<Term<'a>>,
    pub preferred_affinity: Vec<Term<'a>>,
    pub preferred_anti: Vec<Term<'a>>,
}

impl<'a> Terms<'a> {
    /// The terms of `pod`'s `affinity.podAffinity` and `affinity.podAntiAffinity`.
    pub fn of(pod: &'a Pod) -> Self {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let required = |terms: Option<&'a Vec<PodAffinityTerm>>| -> Vec<Term<'a>> {
            terms
                .into_iter()
                .flatten()
                .map(|t| Term::new(t, namespace, 1))
                .collect()
        };
        let aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        Self {
            required_affinity: required(aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: aff
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|w| Term::new(&w.pod_affinity_term, namespace, w.weight.into()))
                .collect(),
            preferred_anti: anti
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|w| Term::new(&w.pod_affinity_term, namespace, w.weight.into()))
                .collect(),
        }
    }
}

/// (topology key, value): one topology domain.
type Domain = (String, String);

/// Adds `count × each` to the domain of `node` under `key`, if the node has that label.
fn count_in(
    counts: &mut HashMap<Domain, i64>,
    cluster: &Cluster,
    node: &str,
    key: &str,
    each: i64,
) {
    if let Some(value) = cluster.node_label(node, key) {
        *counts.entry((key.to_owned(), value.clone())).or_default() += each;
    }
}

/// The required-terms state of one decision (kube-scheduler's PreFilter state).
#[derive(Debug)]
pub struct Prepared<'a> {
    terms: Terms<'a>,
    /// Domains holding pods that match every required affinity term.
    affinity: HashMap<Domain, i64>,
    /// Domains holding pods that match a required anti-affinity term.
    anti: HashMap<Domain, i64>,
    /// Domains of existing pods whose required anti-affinity the incoming pod matches.
    existing_anti: HashMap<Domain, i64>,
    /// The incoming pod matches all its own affinity terms (the first of a group may go
    /// anywhere).
    self_match: bool,
}

impl<'a> Prepared<'a> {
    /// Counts, per domain, what the filter asks about `pod`.
    pub fn new(pod: &'a Pod, cluster: &Cluster) -> Self {
        let terms = Terms::of(pod);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.labels();
        let mut affinity = HashMap::new();
        let mut anti = HashMap::new();
        for ((ns, group_labels), group) in &cluster.groups {
            if !terms.required_affinity.is_empty()
                && terms
                    .required_affinity
                    .iter()
                    .all(|t| t.matches(ns, group_labels, cluster))
            {
                for term in &terms.required_affinity {
                    for (node, n) in &group.per_node {
                        count_in(&mut affinity, cluster, node, term.topology_key, (*n).into());
                    }
                }
            }
            for term in &terms.required_anti {
                if term.matches(ns, group_labels, cluster) {
                    for (node, n) in &group.per_node {
                        count_in(&mut anti, cluster, node, term.topology_key, (*n).into());
                    }
                }
            }
        }
        let mut existing_anti = HashMap::new();
        for placed in cluster.with_affinity.values() {
            for term in Terms::of(&placed.pod).required_anti {
                if term.matches(namespace, labels, cluster) {
                    count_in(
                        &mut existing_anti,
                        cluster,
                        &placed.node,
                        term.topology_key,
                        1,
                    );
                }
            }
        }
        let self_match = terms
            .required_affinity
            .iter()
            .all(|t| t.matches(namespace, labels, cluster));
        Self {
            terms,
            affinity,
            anti,
            existing_anti,
            self_match,
        }
    }

    /// Whether nothing here can refuse a node (skip the filter).
    pub fn is_empty(&self) -> bool {
        self.terms.required_affinity.is_empty()
            && self.terms.required_anti.is_empty()
            && self.existing_anti.is_empty()
    }

    /// Why the node fails the InterPodAffinity filter, if it does: the pod's affinity, then
    /// its anti-affinity, then existing pods' anti-affinity, in upstream's order.
    pub fn filter(&self, info: &NodeInfo) -> Option<&'static str> {
        let labels = info.node.labels();
        let in_domain = |counts: &HashMap<Domain, i64>, key: &str| {
            labels.get(key).is_some_and(|v| {
                counts
                    .get(&(key.to_owned(), v.clone()))
                    .is_some_and(|n| *n > 0)
            })
        };
        let required = &self.terms.required_affinity;
        if !required.is_empty() {
            // A node without every topology key never satisfies affinity.
            if required
                .iter()
                .any(|t| !labels.contains_key(t.topology_key))
            {
                return Some(reason::POD_AFFINITY);
            }
            let pods_exist = required
                .iter()
                .all(|t| in_domain(&self.affinity, t.topology_key));
            if !(pods_exist || (self.affinity.is_empty() && self.self_match)) {
                return Some(reason::POD_AFFINITY);
            }
        }
        if self
            .terms
            .required_anti
            .iter()
            .any(|t| in_domain(&self.anti, t.topology_key))
        {
            return Some(reason::POD_ANTI_AFFINITY);
        }
        if self
            .existing_anti
            .iter()
            .any(|((k, v), n)| *n > 0 && labels.get(k) == Some(v))
        {
            return Some(reason::EXISTING_ANTI_AFFINITY);
        }
        None
    }
}

/// The InterPodAffinity score's raw values for `nodes` (not normalised), or `None` when
/// neither the pod nor any placed pod has terms that could score (all nodes equal).
pub fn raw_scores(pod: &Pod, cluster: &Cluster, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
    let terms = Terms::of(pod);
    if terms.preferred_affinity.is_empty()
        && terms.preferred_anti.is_empty()
        && cluster.with_affinity.is_empty()
    {
        return None;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.labels();
    let mut domains: HashMap<Domain, i64> = HashMap::new();
    for ((ns, group_labels), group) in &cluster.groups {
        for (term, sign) in terms
            .preferred_affinity
            .iter()
            .map(|t| (t, 1))
            .chain(terms.preferred_anti.iter().map(|t| (t, -1)))
        {
            if term.matches(ns, group_labels, cluster) {
                for (node, n) in &group.per_node {
                    let each = sign * term.weight * i64::from(*n);
                    count_in(&mut domains, cluster, node, term.topology_key, each);
                }
            }
        }
    }
    for placed in cluster.with_affinity.values() {
        let theirs = Terms::of(&placed.pod);
        let weighted = theirs
            .required_affinity
            .iter()
            .map(|t| (t, HARD_POD_AFFINITY_WEIGHT))
            .chain(theirs.preferred_affinity.iter().map(|t| (t, t.weight)))
            .chain(theirs.preferred_anti.iter().map(|t| (t, -t.weight)));
        for (term, each) in weighted {
            if term.matches(namespace, labels, cluster) {
                count_in(&mut domains, cluster, &placed.node, term.topology_key, each);
            }
        }
    }
    if domains.is_empty() {
        return None;
    }
    Some(
        nodes
            .iter()
            .map(|info| {
                let labels = info.node.labels();
                domains
                    .iter()
                    .filter(|((k, v), _)| labels.get(k) == Some(v))
                    .map(|(_, n)| n)
                    .sum()
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

    fn zoned(name: &str, zone: &str) -> Arc<k8s_openapi::api::core::v1::Node> {
        node(
            name,
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
        )
    }

    fn labelled(name: &str, labels: serde_json::Value, extra: serde_json::Value) -> Arc<Pod> {
        let mut p = pod(name, "100m", extra);
        p.metadata.labels = serde_json::from_value(labels).unwrap();
        Arc::new(p)
    }

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        c.set_node(zoned("a1", "a"));
        c.set_node(zoned("a2", "a"));
        c.set_node(zoned("b1", "b"));
        c
    }

    fn required(kind: &str, key: &str, selector: serde_json::Value) -> serde_json::Value {
        json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": selector, "topologyKey": key}]}}})
    }

    fn verdicts(p: &Pod, c: &Cluster) -> Vec<Option<&'static str>> {
        let prepared = Prepared::new(p, c);
        c.nodes.values().map(|n| prepared.filter(n)).collect()
    }

    #[test]
    fn anti_affinity_on_hostname_and_zone() {
        let mut c = cluster();
        c.place(labelled("web-0", json!({"app": "web"}), json!({})), "a1");
        let host = labelled(
            "web-1",
            json!({"app": "web"}),
            required(
                "podAntiAffinity",
                "kubernetes.io/hostname",
                json!({"matchLabels": {"app": "web"}}),
            ),
        );
        assert_eq!(
            verdicts(&host, &c),
            [Some(reason::POD_ANTI_AFFINITY), None, None]
        );
        let zone = labelled(
            "web-1",
            json!({"app": "web"}),
            required(
                "podAntiAffinity",
                "topology.kubernetes.io/zone",
                json!({"matchLabels": {"app": "web"}}),
            ),
        );
        assert_eq!(
            verdicts(&zone, &c),
            [
                Some(reason::POD_ANTI_AFFINITY),
                Some(reason::POD_ANTI_AFFINITY),
                None
            ]
        );
        // Another namespace is not counted unless the term names it.
        let mut other = (*zone).clone();
        other.metadata.namespace = Some("other".to_owned());
        assert_eq!(verdicts(&other, &c), [None, None, None]);
        let mut named = other.clone();
        named
            .spec
            .as_mut()
            .unwrap()
            .affinity
            .as_mut()
            .unwrap()
            .pod_anti_affinity
            .as_mut()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_mut()
            .unwrap()[0]
            .namespace_selector = Some(LabelSelector::default());
        assert_eq!(
            verdicts(&named, &c),
            [
                Some(reason::POD_ANTI_AFFINITY),
                Some(reason::POD_ANTI_AFFINITY),
                None
            ],
            "an empty namespaceSelector means every namespace"
        );
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_matching_pods_away() {
        let mut c = cluster();
        c.place(
            labelled(
                "db-0",
                json!({"app": "db"}),
                required(
                    "podAntiAffinity",
                    "topology.kubernetes.io/zone",
                    json!({"matchLabels": {"app": "web"}}),
                ),
            ),
            "b1",
        );
        let web = labelled("web-0", json!({"app": "web"}), json!({}));
        assert_eq!(
            verdicts(&web, &c),
            [None, None, Some(reason::EXISTING_ANTI_AFFINITY)]
        );
        let cache = labelled("cache-0", json!({"app": "cache"}), json!({}));
        assert_eq!(verdicts(&cache, &c), [None, None, None]);
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_domain_except_for_the_first() {
        let mut c = cluster();
        let follower = labelled(
            "web-0",
            json!({"app": "web"}),
            required(
                "podAffinity",
                "topology.kubernetes.io/zone",
                json!({"matchLabels": {"app": "db"}}),
            ),
        );
        assert_eq!(
            verdicts(&follower, &c),
            [Some(reason::POD_AFFINITY); 3],
            "no db pod anywhere, and the pod is no db"
        );
        let first = labelled(
            "db-0",
            json!({"app": "db"}),
            required(
                "podAffinity",
                "topology.kubernetes.io/zone",
                json!({"matchLabels": {"app": "db"}}),
            ),
        );
        assert_eq!(verdicts(&first, &c), [None, None, None]);
        c.place(Arc::clone(&first), "b1");
        assert_eq!(
            verdicts(&follower, &c),
            [Some(reason::POD_AFFINITY), Some(reason::POD_AFFINITY), None]
        );
        let unlabelled_key = labelled(
            "web-1",
            json!({"app": "web"}),
            required("podAffinity", "rack", json!({"matchLabels": {"app": "db"}})),
        );
        assert_eq!(
            verdicts(&unlabelled_key, &c),
            [Some(reason::POD_AFFINITY); 3]
        );
    }

    #[test]
    fn preferred_terms_and_existing_pods_terms_score_per_domain() {
        let mut c = cluster();
        c.place(labelled("db-0", json!({"app": "db"}), json!({})), "a1");
        let p = labelled(
            "web-0",
            json!({"app": "web"}),
            json!({"affinity": {
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                    "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 4,
                    "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}),
        );
        let nodes: Vec<&NodeInfo> = c.nodes.values().collect();
        assert_eq!(raw_scores(&p, &c, &nodes), Some(vec![6, 10, 0]));
        let plain = labelled("web-1", json!({"app": "web"}), json!({}));
        assert_eq!(raw_scores(&plain, &c, &nodes), None);
        c.place(
            labelled(
                "cache-0",
                json!({"app": "cache"}),
                json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 7,
                    "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}}]}}}),
            ),
            "b1",
        );
        let nodes: Vec<&NodeInfo> = c.nodes.values().collect();
        assert_eq!(raw_scores(&plain, &c, &nodes), Some(vec![0, 0, -7]));
    }
}
