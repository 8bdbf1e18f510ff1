//! The node-local filters, in kube-scheduler's order and words: NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit. They look at one pod and one
//! node (with what the node holds) and nothing else, so other controllers (the DaemonSet
//! controller) can ask the same questions through [`tolerates`], [`untolerated_taint`] and
//! [`node_affinity_matches`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use kube::ResourceExt as _;
use strait_api::validate::parse_quantity;

use super::cache::NodeInfo;

/// kube-scheduler's reason strings, one place for all of them.
pub mod reason {
    pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
    pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
    pub const NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
    pub const TOO_MANY_PODS: &str = "Too many pods";
    pub const CPU: &str = "Insufficient cpu";
    pub const MEMORY: &str = "Insufficient memory";
    pub const POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
    pub const POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
    pub const EXISTING_ANTI_AFFINITY: &str =
        "node(s) didn't satisfy existing pods anti-affinity rules";
    pub const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
    pub const SPREAD_MISSING_LABEL: &str =
        "node(s) didn't match pod topology spread constraints (missing required label)";
}

/// What a pod asks for, or what a node has or holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    /// Adds (`sign` 1) or takes away (`sign` -1) `other`.
    pub fn add(&mut self, other: Resources, sign: i64) {
        self.milli_cpu += sign * other.milli_cpu;
        self.memory += sign * other.memory;
        self.pods += sign * other.pods;
    }
}

/// What kube-scheduler's scores assume a container without requests uses: 100m CPU, 200 MiB.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 << 20;

fn quantity_milli(q: &str) -> Option<i64> {
    parse_quantity(q)
        .ok()
        .map(|q| i64::try_from(q.milli_value()).unwrap_or(i64::MAX))
}

fn quantity_units(q: &str) -> Option<i64> {
    parse_quantity(q)
        .ok()
        .map(|q| i64::try_from(q.nanos() / 1_000_000_000).unwrap_or(i64::MAX))
}

/// CPU (milli) and memory (bytes) a pod requests: the sum of its containers, or the largest
/// init container if that is more (init containers run one at a time). With `non_zero`, a
/// container that requests nothing counts as kube-scheduler's scores count it (100m, 200 MiB).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let of = |c: &Container| -> (i64, i64) {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let cpu = req
            .and_then(|r| r.get("cpu"))
            .and_then(|q| quantity_milli(&q.0));
        let mem = req
            .and_then(|r| r.get("memory"))
            .and_then(|q| quantity_units(&q.0));
        if non_zero {
            (
                cpu.unwrap_or(DEFAULT_MILLI_CPU),
                mem.unwrap_or(DEFAULT_MEMORY),
            )
        } else {
            (cpu.unwrap_or(0), mem.unwrap_or(0))
        }
    };
    let (mut cpu, mut mem) = spec
        .containers
        .iter()
        .map(of)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for init in spec.init_containers.iter().flatten() {
        let (c, m) = of(init);
        cpu = cpu.max(c);
        mem = mem.max(m);
    }
    Resources {
        milli_cpu: cpu,
        memory: mem,
        pods: 1,
    }
}

/// CPU (milli) and memory (bytes) a pod requests, as the resource filter counts them.
pub fn requests(pod: &Pod) -> Resources {
    pod_requests(pod, false)
}

/// What a node offers pods (110 pods when it does not say).
pub fn allocatable(node: &Node) -> Resources {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |name: &str, milli: bool| {
        alloc.and_then(|a| a.get(name)).and_then(|q| {
            if milli {
                quantity_milli(&q.0)
            } else {
                quantity_units(&q.0)
            }
        })
    };
    Resources {
        milli_cpu: get("cpu", true).unwrap_or(0),
        memory: get("memory", false).unwrap_or(0),
        pods: get("pods", false).unwrap_or(110),
    }
}

/// The (protocol, host port) pairs a pod's containers take on their node.
pub fn host_ports(pod: &Pod) -> Vec<(String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port
                .filter(|h| *h > 0)
                .map(|h| (p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()), h))
        })
        .collect()
}

/// The pod's tolerations (none when it has no spec).
pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// Whether one of `tolerations` tolerates `taint`, as Kubernetes' `ToleratesTaint`: an empty
/// effect matches every effect, an empty key every key (validation allows that only with
/// `Exists`), `Exists` any value, `Equal` (the default) the same value.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            None | Some("" | "Equal") => {
                t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
            Some(_) => false,
        };
        effect_ok && key_ok && value_ok
    })
}

/// The first of `taints` with effect NoSchedule or NoExecute that `tolerations` do not
/// tolerate: what keeps a pod off a node (the TaintToleration filter; the DaemonSet
/// controller asks the same).
pub fn untolerated_taint<'a>(tolerations: &[Toleration], taints: &'a [Taint]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerates(tolerations, taint)
    })
}

fn requirement_matches(e: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = e.values.as_deref().unwrap_or(&[]);
    match e.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => value
            .and_then(|v| v.parse::<i64>().ok())
            .zip(values.first().and_then(|b| b.parse::<i64>().ok()))
            .is_some_and(|(v, b)| if e.operator == "Gt" { v > b } else { v < b }),
        _ => false,
    }
}

/// Whether a node selector term holds for a node with `name` and `labels`: every
/// `matchExpressions` requirement on the labels and every `matchFields` requirement (only
/// `metadata.name` exists) on the name. A term with neither matches nothing, as upstream.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let name = name.to_owned();
    expressions
        .iter()
        .all(|e| requirement_matches(e, labels.get(&e.key)))
        && fields
            .iter()
            .all(|f| f.key == "metadata.name" && requirement_matches(f, Some(&name)))
}

/// Whether `node` satisfies the pod's `nodeSelector` and its required node affinity (any of
/// the `nodeSelectorTerms`): the NodeAffinity filter, which the DaemonSet controller also
/// applies to decide where a daemon pod belongs.
pub fn node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let labels = node.labels();
    let spec = pod.spec.as_ref();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let name = node.name_any();
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| node_selector_term_matches(t, &name, labels))
        })
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        ..Taint::default()
    }
}

/// Why `pod` cannot go to the node `info` describes (kube-scheduler's reason strings), or
/// nothing if it can, judged by the node-local filters. As in kube-scheduler they run in order
/// and the first that fails is the node's reason; only the resource filter names several.
/// A node that is not Ready counts as tainted `node.kubernetes.io/not-ready:NoSchedule`, the
/// taint Kubernetes' node lifecycle controller would put there.
pub fn feasible(pod: &Pod, info: &NodeInfo) -> Vec<String> {
    let node = &info.node;
    let tolerations = tolerations(pod);
    let node_spec = node.spec.as_ref();
    if node_spec.and_then(|s| s.unschedulable).unwrap_or(false)
        && !tolerates(
            tolerations,
            &taint("node.kubernetes.io/unschedulable", "NoSchedule"),
        )
    {
        return vec![reason::UNSCHEDULABLE.to_owned()];
    }
    if !node_ready(node)
        && !tolerates(
            tolerations,
            &taint("node.kubernetes.io/not-ready", "NoSchedule"),
        )
    {
        return vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_owned()];
    }
    let taints = node_spec.and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    if let Some(taint) = untolerated_taint(tolerations, taints) {
        return vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        )];
    }
    if !node_affinity_matches(pod, node) {
        return vec![reason::NODE_AFFINITY.to_owned()];
    }
    if host_ports(pod)
        .iter()
        .any(|p| info.host_ports.get(p).is_some_and(|n| *n > 0))
    {
        return vec![reason::NODE_PORTS.to_owned()];
    }
    let want = requests(pod);
    let have = info.allocatable;
    let used = info.requested;
    let mut reasons = Vec::new();
    if used.pods + 1 > have.pods {
        reasons.push(reason::TOO_MANY_PODS.to_owned());
    }
    if want.milli_cpu > 0 && used.milli_cpu + want.milli_cpu > have.milli_cpu {
        reasons.push(reason::CPU.to_owned());
    }
    if want.memory > 0 && used.memory + want.memory > have.memory {
        reasons.push(reason::MEMORY.to_owned());
    }
    reasons
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::testing::{node, pod};
    use super::*;

    fn info(node: Arc<Node>) -> NodeInfo {
        NodeInfo::new(node)
    }

    #[test]
    fn unschedulable_not_ready_and_tainted_nodes_are_refused_unless_tolerated() {
        let off = info(node(
            "off",
            "8",
            "8Gi",
            json!({"spec": {"unschedulable": true}}),
        ));
        let p = pod("p", "100m", json!({}));
        assert_eq!(feasible(&p, &off), [reason::UNSCHEDULABLE]);
        let tolerant = pod(
            "p",
            "100m",
            json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}),
        );
        assert!(feasible(&tolerant, &off).is_empty());

        let not_ready = info(node(
            "n",
            "8",
            "8Gi",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ));
        assert_eq!(
            feasible(&p, &not_ready),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );

        let gpu = info(node(
            "g",
            "8",
            "8Gi",
            json!({"spec": {"taints": [
                {"key": "soft", "effect": "PreferNoSchedule"},
                {"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
        ));
        assert_eq!(
            feasible(&p, &gpu),
            ["node(s) had untolerated taint {gpu: yes}"]
        );
        let equal = pod(
            "p",
            "100m",
            json!({"tolerations": [{"key": "gpu", "value": "yes"}]}),
        );
        assert!(feasible(&equal, &gpu).is_empty(), "Equal is the default");
        let other_value = pod(
            "p",
            "100m",
            json!({"tolerations": [{"key": "gpu", "value": "no", "effect": "NoSchedule"}]}),
        );
        assert!(!feasible(&other_value, &gpu).is_empty());
        let everything = pod(
            "p",
            "100m",
            json!({"tolerations": [{"operator": "Exists"}]}),
        );
        assert!(feasible(&everything, &gpu).is_empty());
        let wrong_effect = pod(
            "p",
            "100m",
            json!({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]}),
        );
        assert!(!feasible(&wrong_effect, &gpu).is_empty());
    }

    #[test]
    fn node_selector_and_required_node_affinity_with_fields() {
        let n = node(
            "n1",
            "8",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "ssd", "cores": "16"}}}),
        );
        let cases = [
            (json!({"nodeSelector": {"disk": "ssd"}}), true),
            (json!({"nodeSelector": {"disk": "hdd"}}), false),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                    {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]}}}}),
                true,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
                true,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
                false,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}, {"key": "disk", "operator": "NotIn", "values": ["hdd"]}]}]}}}}),
                true,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}),
                false,
            ),
        ];
        for (extra, fits) in cases {
            let p = pod("p", "100m", extra.clone());
            assert_eq!(node_affinity_matches(&p, &n), fits, "{extra}");
            let why = feasible(&p, &info(Arc::clone(&n)));
            if fits {
                assert!(why.is_empty(), "{extra}: {why:?}");
            } else {
                assert_eq!(why, [reason::NODE_AFFINITY], "{extra}");
            }
        }
    }

    #[test]
    fn ports_pods_cpu_and_memory_count_what_the_node_holds() {
        let mut n = info(node(
            "n",
            "1",
            "1Gi",
            json!({"status": {"allocatable": {"pods": "3"}}}),
        ));
        let with_port = pod(
            "web",
            "0",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        n.add(&Arc::new(with_port.clone()), 1);
        assert_eq!(feasible(&with_port, &n), [reason::NODE_PORTS]);
        let half = pod("half", "500m", json!({}));
        n.add(&Arc::new(half.clone()), 1);
        assert!(feasible(&half, &n).is_empty());
        n.add(&Arc::new(half.clone()), 1);
        assert_eq!(feasible(&half, &n), [reason::TOO_MANY_PODS, reason::CPU]);
        n.add(&Arc::new(half.clone()), -1);
        let big = pod(
            "big",
            "100m",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "2Gi"}}}]}),
        );
        assert_eq!(feasible(&big, &n), [reason::MEMORY]);
        assert_eq!(requests(&pod("q", "250m", json!({}))).milli_cpu, 250);
        let init = pod(
            "i",
            "250m",
            json!({"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        assert_eq!(
            requests(&init).milli_cpu,
            2000,
            "the largest init container"
        );
        let bare = pod("b", "0", json!({"containers": [{"name": "c"}]}));
        assert_eq!(
            pod_requests(&bare, true),
            Resources {
                milli_cpu: 100,
                memory: 200 << 20,
                pods: 1
            }
        );
    }
}
