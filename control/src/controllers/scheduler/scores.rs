//! The scores of kube-scheduler's default profile, each normalised to 0–100 and weighted as
//! that profile weighs them: TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
//! InterPodAffinity 2, NodeResourcesFit (least allocated) 1, NodeResourcesBalancedAllocation
//! 1. ImageLocality is left out (nodes do not report images to the scheduler yet).

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;

use super::{affinity, spread};
use super::{
    cache::{Cluster, NodeInfo},
    filters::{Resources, node_selector_term_matches, pod_requests, tolerates, tolerations},
};

/// The highest score of one plugin on one node.
pub const MAX: i64 = 100;

const TAINT_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const SPREAD_WEIGHT: i64 = 2;
const POD_AFFINITY_WEIGHT: i64 = 2;
const FIT_WEIGHT: i64 = 1;
const BALANCED_WEIGHT: i64 = 1;

/// NodeResourcesFit with the LeastAllocated strategy: the mean free fraction of CPU and
/// memory once the pod is placed, counting containers without requests at 100m and 200 MiB.
pub fn least_allocated(pod: Resources, info: &NodeInfo) -> i64 {
    let free = |cap: i64, used: i64| {
        if cap <= 0 || used > cap {
            0
        } else {
            (cap - used) * MAX / cap
        }
    };
    let cpu = free(
        info.allocatable.milli_cpu,
        info.non_zero.milli_cpu + pod.milli_cpu,
    );
    let mem = free(info.allocatable.memory, info.non_zero.memory + pod.memory);
    (cpu + mem) / 2
}

/// NodeResourcesBalancedAllocation: nodes whose CPU and memory fill alike score higher
/// (100 × (1 − the standard deviation of the two fractions), counting actual requests).
pub fn balanced_allocation(pod: Resources, info: &NodeInfo) -> i64 {
    let fraction = |cap: i64, used: i64| {
        if cap <= 0 {
            1.0
        } else {
            #[expect(clippy::cast_precision_loss, reason = "a ratio of resource amounts")]
            let f = used as f64 / cap as f64;
            f.min(1.0)
        }
    };
    let cpu = fraction(
        info.allocatable.milli_cpu,
        info.requested.milli_cpu + pod.milli_cpu,
    );
    let mem = fraction(info.allocatable.memory, info.requested.memory + pod.memory);
    let std = (cpu - mem).abs() / 2.0;
    #[expect(clippy::cast_possible_truncation, reason = "a score between 0 and 100")]
    let score = ((1.0 - std) * 100.0) as i64;
    score
}

/// The preferred node affinity terms' weights that the node matches (not normalised).
pub fn node_affinity_raw(pod: &Pod, info: &NodeInfo) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let name = info.node.name_any();
    preferred
        .into_iter()
        .flatten()
        .filter(|t| node_selector_term_matches(&t.preference, &name, info.node.labels()))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// How many PreferNoSchedule taints of the node the pod does not tolerate (not normalised;
/// fewer is better). Only tolerations for that effect, or for every effect, count.
pub fn taint_raw(pod: &Pod, info: &NodeInfo) -> i64 {
    let relevant: Vec<_> = tolerations(pod)
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    let taints = info.node.spec.as_ref().and_then(|s| s.taints.as_deref());
    let count = taints
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&relevant, t))
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// kube-scheduler's default normalisation: scaled so the highest is 100 (all 0 when all are
/// 0), or, `reverse`, so the highest is 0 (all 100 when all are 0).
pub fn normalise(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    for s in raw.iter_mut() {
        *s = match (max, reverse) {
            (0, false) => 0,
            (0, true) => MAX,
            (m, false) => *s * MAX / m,
            (m, true) => MAX - *s * MAX / m,
        };
    }
}

/// InterPodAffinity's normalisation: scaled between the lowest (0) and highest (100), all 0
/// when they are equal.
pub fn normalise_range(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    for s in raw.iter_mut() {
        *s = if max > min {
            MAX * (*s - min) / (max - min)
        } else {
            0
        };
    }
}

/// The weighted total score of each of `nodes` (all feasible) for `pod`.
pub fn total(pod: &Pod, cluster: &Cluster, nodes: &[&NodeInfo]) -> Vec<i64> {
    let requested = pod_requests(pod, false);
    let non_zero = pod_requests(pod, true);
    let mut totals: Vec<i64> = nodes
        .iter()
        .map(|n| {
            FIT_WEIGHT * least_allocated(non_zero, n)
                + BALANCED_WEIGHT * balanced_allocation(requested, n)
        })
        .collect();
    let mut add = |scores: Vec<i64>, weight: i64| {
        for (t, s) in totals.iter_mut().zip(scores) {
            *t += weight * s;
        }
    };
    let mut taints: Vec<i64> = nodes.iter().map(|n| taint_raw(pod, n)).collect();
    normalise(&mut taints, true);
    add(taints, TAINT_WEIGHT);
    let mut preferred: Vec<i64> = nodes.iter().map(|n| node_affinity_raw(pod, n)).collect();
    normalise(&mut preferred, false);
    add(preferred, NODE_AFFINITY_WEIGHT);
    if let Some(mut pods) = affinity::raw_scores(pod, cluster, nodes) {
        normalise_range(&mut pods);
        add(pods, POD_AFFINITY_WEIGHT);
    }
    if let Some(spread) = spread::scores(pod, cluster, nodes) {
        add(spread, SPREAD_WEIGHT);
    }
    totals
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::testing::{node, pod};
    use super::*;

    #[test]
    fn least_allocated_and_balanced_allocation() {
        let mut info = NodeInfo::new(node("n", "4", "4Gi", json!({})));
        let cpu_heavy = pod(
            "p",
            "0",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "0"}}}]}),
        );
        let r = pod_requests(&cpu_heavy, false);
        // After placing: CPU half free, memory all free.
        assert_eq!(least_allocated(r, &info), 75);
        assert_eq!(balanced_allocation(r, &info), 75);
        info.add(&Arc::new(cpu_heavy.clone()), 1);
        assert_eq!(least_allocated(r, &info), 50);
        let bare = pod("b", "0", json!({"containers": [{"name": "c"}]}));
        // 100m of 4000m and 200Mi of 4Gi count for a pod without requests.
        assert_eq!(
            least_allocated(
                pod_requests(&bare, true),
                &NodeInfo::new(node("m", "4", "4Gi", json!({})))
            ),
            (97 + 95) / 2
        );
    }

    #[test]
    fn preferred_node_affinity_and_prefer_no_schedule_taints() {
        let ssd = NodeInfo::new(node(
            "ssd",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "ssd"}},
                   "spec": {"taints": [{"key": "busy", "effect": "PreferNoSchedule"}]}}),
        ));
        let plain = NodeInfo::new(node("plain", "4", "8Gi", json!({})));
        let p = pod(
            "p",
            "100m",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 30, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}),
        );
        assert_eq!(node_affinity_raw(&p, &ssd), 50);
        assert_eq!(node_affinity_raw(&p, &plain), 0);
        assert_eq!(taint_raw(&p, &ssd), 1);
        let tolerant = pod(
            "t",
            "100m",
            json!({"tolerations": [{"key": "busy", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        assert_eq!(taint_raw(&tolerant, &ssd), 0);
        let no_schedule_only = pod(
            "t",
            "100m",
            json!({"tolerations": [{"key": "busy", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(taint_raw(&no_schedule_only, &ssd), 1);

        let mut raw = vec![1, 0];
        normalise(&mut raw, true);
        assert_eq!(raw, [0, 100]);
        let mut raw = vec![50, 0, 25];
        normalise(&mut raw, false);
        assert_eq!(raw, [100, 0, 50]);
        let mut raw = vec![-7, 0, 7];
        normalise_range(&mut raw);
        assert_eq!(raw, [0, 50, 100]);
        let mut raw = vec![3, 3];
        normalise_range(&mut raw);
        assert_eq!(raw, [0, 0]);

        // Weighted: preferred affinity (2 × 100) outweighs the soft taint (3 × 100)? No:
        // the taint costs 300 on ssd, affinity gives it 200, so plain wins.
        let cluster = Cluster::default();
        let totals = total(&p, &cluster, &[&ssd, &plain]);
        assert!(totals[1] > totals[0], "{totals:?}");
        let totals = total(&tolerant, &cluster, &[&ssd, &plain]);
        assert_eq!(totals[0], totals[1]);
    }
}
