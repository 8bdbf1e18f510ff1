//! The scheduler: pods without a node are bound to one, as kube-scheduler does, with its
//! filters and a least-allocated score. The core ([`feasible`], [`score`], [`unschedulable`])
//! is pure; [`run`] watches Pods and Nodes, keeps an "assumed" view of what each node already
//! holds (so a burst of pods is spread in one pass), binds through `pods/binding`, and for a
//! pod that fits nowhere writes the `PodScheduled=False` condition and a FailedScheduling event
//! in kube-scheduler's words ("0/3 nodes are available: 2 Insufficient cpu, …").
//!
//! Filters so far: node readiness and `spec.unschedulable`, taints with effect NoSchedule or
//! NoExecute against tolerations, `nodeSelector`, required node affinity (`matchExpressions`
//! In/NotIn/Exists/DoesNotExist), CPU and memory requests against allocatable minus what
//! the node's pods request, the node's pod count, host ports. Not yet (issue 6): pod
//! affinity and anti-affinity, topology spread, preferred affinity scores, preemption.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, Node, Pod, Toleration};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use strait_api::validate::parse_quantity;
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

/// The scheduler's name in `spec.schedulerName`.
pub const NAME: &str = "default-scheduler";

/// What a pod asks for, or what a node has or holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

/// CPU (milli) and memory (bytes) a pod requests: the sum of its containers, or the largest
/// init container if that is more (init containers run one at a time).
pub fn requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let of = |c: &Container| -> (i64, i64) {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |name: &str, milli: bool| {
            req.and_then(|r| r.get(name))
                .and_then(|q| parse_quantity(&q.0).ok())
                .map(|q| {
                    if milli {
                        i64::try_from(q.milli_value()).unwrap_or(i64::MAX)
                    } else {
                        i64::try_from(q.nanos() / 1_000_000_000).unwrap_or(i64::MAX)
                    }
                })
                .unwrap_or(0)
        };
        (get("cpu", true), get("memory", false))
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

/// What a node offers pods.
pub fn allocatable(node: &Node) -> Resources {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |name: &str| {
        alloc
            .and_then(|a| a.get(name))
            .and_then(|q| parse_quantity(&q.0).ok())
    };
    Resources {
        milli_cpu: get("cpu").map_or(0, |q| i64::try_from(q.milli_value()).unwrap_or(i64::MAX)),
        memory: get("memory").map_or(0, |q| {
            i64::try_from(q.nanos() / 1_000_000_000).unwrap_or(i64::MAX)
        }),
        pods: get("pods").map_or(110, |q| {
            i64::try_from(q.nanos() / 1_000_000_000).unwrap_or(110)
        }),
    }
}

/// What a node holds: its pods' requests and host ports.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub used: Resources,
    pub host_ports: BTreeSet<(String, i32)>,
}

impl Held {
    /// Adds a pod placed on the node.
    pub fn add(&mut self, pod: &Pod) {
        let r = requests(pod);
        self.used.milli_cpu += r.milli_cpu;
        self.used.memory += r.memory;
        self.used.pods += 1;
        self.host_ports.extend(host_ports(pod));
    }
}

fn host_ports(pod: &Pod) -> Vec<(String, i32)> {
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

/// Why `pod` cannot go to `node` (kube-scheduler's reason strings), or nothing if it can.
/// As in kube-scheduler, the filters run in order (NodeUnschedulable, TaintToleration,
/// NodeAffinity, NodePorts, NodeResourcesFit) and the first that fails is the node's reason;
/// only the resource filter names several things at once.
pub fn feasible(pod: &Pod, node: &Node, held: &Held) -> Vec<String> {
    let mut reasons = Vec::new();
    let spec = pod.spec.as_ref();
    let tolerations: &[Toleration] = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let node_spec = node.spec.as_ref();
    if node_spec.and_then(|s| s.unschedulable).unwrap_or(false)
        && !tolerates(
            tolerations,
            "node.kubernetes.io/unschedulable",
            "",
            "NoSchedule",
        )
    {
        return vec!["node(s) were unschedulable".to_owned()];
    }
    if !ready
        && !tolerates(
            tolerations,
            "node.kubernetes.io/not-ready",
            "",
            "NoSchedule",
        )
    {
        return vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_owned()];
    }
    for taint in node_spec.and_then(|s| s.taints.as_deref()).unwrap_or(&[]) {
        if matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerates(
                tolerations,
                &taint.key,
                taint.value.as_deref().unwrap_or(""),
                &taint.effect,
            )
        {
            return vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )];
        }
    }
    let labels = node.labels();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    if !selector_ok || !required_affinity(pod, labels) {
        return vec!["node(s) didn't match Pod's node affinity/selector".to_owned()];
    }
    if host_ports(pod).iter().any(|p| held.host_ports.contains(p)) {
        return vec!["node(s) didn't have free ports for the requested pod ports".to_owned()];
    }
    let want = requests(pod);
    let have = allocatable(node);
    if held.used.pods + 1 > have.pods {
        reasons.push("Too many pods".to_owned());
    }
    if want.milli_cpu > 0 && held.used.milli_cpu + want.milli_cpu > have.milli_cpu {
        reasons.push("Insufficient cpu".to_owned());
    }
    if want.memory > 0 && held.used.memory + want.memory > have.memory {
        reasons.push("Insufficient memory".to_owned());
    }
    reasons
}

/// Whether a toleration matches a taint (`Exists` matches any value; an empty key with
/// `Exists` matches every taint; an empty effect matches every effect).
fn tolerates(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == key,
        };
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or("") == value,
        };
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == effect);
        key_ok && value_ok && effect_ok
    })
}

/// `requiredDuringSchedulingIgnoredDuringExecution` node affinity: any term whose
/// expressions all hold.
fn required_affinity(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    let Some(required) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        term.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
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
        })
    })
}

/// The least-allocated score (0–100) of placing `pod` on a node holding `held`: the mean of
/// the free CPU and memory fractions afterwards, as kube-scheduler's NodeResourcesFit default.
pub fn score(pod: &Pod, node: &Node, held: &Held) -> i64 {
    let want = requests(pod);
    let have = allocatable(node);
    let free = |cap: i64, used: i64| {
        if cap <= 0 {
            0
        } else {
            ((cap - used).max(0) * 100) / cap
        }
    };
    let cpu = free(
        have.milli_cpu,
        held.used.milli_cpu + want.milli_cpu.max(100),
    );
    let mem = free(have.memory, held.used.memory + want.memory.max(200 << 20));
    (cpu + mem) / 2
}

/// The message of a pod that fits nowhere: "0/N nodes are available: …", reasons counted
/// and sorted as kube-scheduler writes them.
pub fn unschedulable(nodes: usize, reasons: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons.iter().flatten() {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    if nodes == 0 {
        "no nodes available to schedule pods".to_owned()
    } else if parts.is_empty() {
        format!("0/{nodes} nodes are available.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

/// Picks the node for `pod`: the feasible one with the best score (ties to the node holding
/// fewer pods, then by name). `Err` carries the unschedulable message.
pub fn choose(
    pod: &Pod,
    nodes: &[Arc<Node>],
    held: &BTreeMap<String, Held>,
) -> Result<String, String> {
    let empty = Held::default();
    let mut best: Option<(i64, i64, String)> = None;
    let mut reasons = Vec::new();
    for node in nodes {
        let name = node.name_any();
        let h = held.get(&name).unwrap_or(&empty);
        let why = feasible(pod, node, h);
        if !why.is_empty() {
            reasons.push(why);
            continue;
        }
        let candidate = (score(pod, node, h), -h.used.pods, name);
        let better = match &best {
            None => true,
            Some(b) => {
                (candidate.0, candidate.1) > (b.0, b.1)
                    || ((candidate.0, candidate.1) == (b.0, b.1) && candidate.2 < b.2)
            }
        };
        if better {
            best = Some(candidate);
        }
    }
    best.map(|b| b.2)
        .ok_or_else(|| unschedulable(nodes.len(), &reasons))
}

fn pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Watches Pods and Nodes and binds pending pods.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (pods, w1) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let (nodes, w2) = cache(
        Api::<Node>::all(client.clone()),
        Default::default(),
        &changed,
        "nodes",
    );
    let schedule = async move {
        let _ = tokio::join!(pods.wait_until_ready(), nodes.wait_until_ready());
        // Pods bound by this scheduler whose binding the watch has not shown yet.
        let mut assumed: BTreeMap<String, String> = BTreeMap::new();
        // The last message given to each unschedulable pod (not repeated).
        let mut reported: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let all = pods.state();
            let node_list: Vec<Arc<Node>> = nodes.state();
            let mut held: BTreeMap<String, Held> = BTreeMap::new();
            let mut waiting: Vec<Arc<Pod>> = Vec::new();
            for pod in &all {
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                match pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| !n.is_empty())
                {
                    Some(node) => {
                        assumed.remove(&key);
                        if !matches!(
                            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        ) {
                            held.entry(node).or_default().add(pod);
                        }
                    }
                    None if pending(pod) => match assumed.get(&key) {
                        Some(node) => held.entry(node.clone()).or_default().add(pod),
                        None => waiting.push(Arc::clone(pod)),
                    },
                    None => {}
                }
            }
            waiting.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
            for pod in waiting {
                let namespace = pod.namespace().unwrap_or_default();
                let name = pod.name_any();
                let key = format!("{namespace}/{name}");
                match choose(&pod, &node_list, &held) {
                    Ok(node) => match bind(&client, &namespace, &name, &node).await {
                        Ok(()) => {
                            info!(pod = %key, %node, "scheduled");
                            held.entry(node.clone()).or_default().add(&pod);
                            assumed.insert(key.clone(), node);
                            reported.remove(&key);
                        }
                        Err(error) => warn!(pod = %key, %error, "binding failed"),
                    },
                    Err(message) => {
                        if reported.get(&key) != Some(&message) {
                            if let Err(error) = report(&client, &pod, &message).await {
                                warn!(pod = %key, %error, "failed to report FailedScheduling");
                            }
                            reported.insert(key, message);
                        }
                    }
                }
            }
            // Unschedulable pods are tried again on every change, and every 10 s.
            let _ = tokio::time::timeout(Duration::from_secs(10), changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(w1, w2, schedule);
}

async fn bind(client: &Client, namespace: &str, name: &str, node: &str) -> kube::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(drop)
}

/// `PodScheduled=False` (Unschedulable) on the pod and a FailedScheduling event.
async fn report(client: &Client, pod: &Pod, message: &str) -> kube::Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now,
    }]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        // Named as client-go's recorder names events: the object's name and a time in hex.
        "metadata": {"name": format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond()), "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace, "uid": pod.uid()},
        "reason": "FailedScheduling", "message": message, "type": "Warning",
        "source": {"component": NAME}, "reportingComponent": NAME,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let event = serde_json::from_value(event).map_err(kube::Error::SerdeError)?;
    events
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, extra: serde_json::Value) -> Arc<Node> {
        let mut value = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        if let (Some(v), serde_json::Value::Object(e)) = (value.as_object_mut(), extra) {
            for (k, x) in e {
                if let (Some(existing), Some(x)) =
                    (v.get_mut(&k).and_then(|e| e.as_object_mut()), x.as_object())
                {
                    existing.extend(x.clone());
                } else {
                    v.insert(k, x);
                }
            }
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn pod(cpu: &str, extra: serde_json::Value) -> Pod {
        let mut value = json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}});
        if let (Some(spec), serde_json::Value::Object(e)) = (value["spec"].as_object_mut(), extra) {
            spec.extend(e);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn resources_taints_and_selectors_filter_with_upstream_words() {
        let nodes = vec![
            node("small", "1", "1Gi", json!({})),
            node(
                "tainted",
                "8",
                "8Gi",
                json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
            ),
            node("off", "8", "8Gi", json!({"spec": {"unschedulable": true}})),
        ];
        let big = pod("2", json!({}));
        let message = choose(&big, &nodes, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            message,
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {gpu: yes}, 1 node(s) were unschedulable."
        );
        let tolerant = pod(
            "2",
            json!({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(
            choose(&tolerant, &nodes, &BTreeMap::new()).unwrap(),
            "tainted"
        );
        let pinned = pod(
            "100m",
            json!({"nodeSelector": {"kubernetes.io/hostname": "tainted"}}),
        );
        assert_eq!(
            choose(&pinned, &nodes, &BTreeMap::new()).unwrap_err(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {gpu: yes}, 1 node(s) were unschedulable."
        );
        let affinity = pod(
            "100m",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["small"]}]}]}}}}),
        );
        assert_eq!(
            choose(&affinity, &nodes, &BTreeMap::new()).unwrap(),
            "small"
        );
    }

    #[test]
    fn what_nodes_hold_counts_and_the_emptier_node_wins() {
        let nodes = vec![
            node("a", "2", "4Gi", json!({})),
            node("b", "2", "4Gi", json!({})),
        ];
        let p = pod("500m", json!({}));
        let mut held = BTreeMap::new();
        held.entry("a".to_owned())
            .or_insert_with(Held::default)
            .add(&p);
        assert_eq!(choose(&p, &nodes, &held).unwrap(), "b", "least allocated");
        let mut full = Held::default();
        for _ in 0..4 {
            full.add(&p);
        }
        assert_eq!(feasible(&p, &nodes[0], &full), ["Insufficient cpu"]);
        let not_ready = node(
            "n",
            "8",
            "8Gi",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        assert_eq!(
            feasible(&p, &not_ready, &Held::default()),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
        let with_port = pod(
            "0",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let mut ports = Held::default();
        ports.add(&with_port);
        assert_eq!(
            feasible(&with_port, &nodes[0], &ports),
            ["node(s) didn't have free ports for the requested pod ports"]
        );
        assert_eq!(requests(&pod("250m", json!({}))).milli_cpu, 250);
    }
}
