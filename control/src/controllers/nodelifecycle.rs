//! The node lifecycle controller, as kube-controller-manager's: node health from heartbeats,
//! the taints that follow it, and taint-based eviction.
//!
//! - Health: a node's heartbeats are its Lease in `kube-node-lease` (`spec.renewTime`) and
//!   its Ready condition's `lastHeartbeatTime`. When neither has changed for the node monitor
//!   grace period (as observed here, so clocks need not agree), its Ready condition and
//!   pressure conditions become Unknown: "Kubelet stopped posting node status.".
//! - Taints: Ready=False gives `node.kubernetes.io/not-ready`, Ready=Unknown
//!   `node.kubernetes.io/unreachable`, each with effects NoSchedule and NoExecute; they go
//!   when the node is Ready again. Pods on a node that is not Ready are marked not Ready.
//! - Eviction: a pod on a node with a NoExecute taint it does not tolerate is deleted at
//!   once; one that tolerates every such taint for a limited `tolerationSeconds` is deleted
//!   when the shortest of them has passed. (New pods tolerate not-ready and unreachable for
//!   300 s unless they say otherwise: the API server's DefaultTolerationSeconds, in
//!   `strait_api::defaults::add_default_tolerations`.)

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use super::events::{now_text, record};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Node, Pod, Taint, Toleration},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::scheduler::tolerates;

/// The name this controller reports as, in events.
const NAME: &str = "node-controller";

/// The default `--node-monitor-grace-period` (Kubernetes 1.33).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(50);

/// How long a node that never posted its status may take to (kube-controller-manager's
/// `--node-startup-grace-period`).
const STARTUP_GRACE: Duration = Duration::from_secs(60);

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The conditions a kubelet posts, all set Unknown when it stops.
const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The last heartbeats seen of one node, and when one last changed (by this process's clock).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    status: Option<String>,
    lease: Option<String>,
    changed_at: Instant,
}

impl Heartbeat {
    /// The heartbeat after observing `status` (the Ready condition's lastHeartbeatTime) and
    /// `lease` (the Lease's renewTime) at `now`.
    pub fn observe(
        previous: Option<&Self>,
        status: Option<String>,
        lease: Option<String>,
        now: Instant,
    ) -> Self {
        match previous {
            Some(p) if p.status == status && p.lease == lease => p.clone(),
            _ => Self {
                status,
                lease,
                changed_at: now,
            },
        }
    }

    /// Silent for longer than `grace` at `now`.
    pub fn stale(&self, grace: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.changed_at) > grace
    }

    /// When it goes stale.
    pub fn deadline(&self, grace: Duration) -> Instant {
        self.changed_at + grace
    }
}

fn condition<'a>(
    node: &'a Node,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// The node's Ready status: "True", "False" or "Unknown" (no condition yet is Unknown).
pub fn ready_status(node: &Node) -> &str {
    condition(node, "Ready").map_or("Unknown", |c| c.status.as_str())
}

/// The status conditions to write when the node's kubelet has gone silent: every kubelet
/// condition Unknown, as kube-controller-manager writes them; `None` when they already are.
pub fn unknown_conditions(node: &Node, now: &str) -> Option<Value> {
    let current: Vec<Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| {
            c.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut changed = false;
    let mut conditions: Vec<Value> = current
        .iter()
        .map(|c| {
            let kind = c["type"].as_str().unwrap_or_default();
            if KUBELET_CONDITIONS.contains(&kind) && c["status"] != "Unknown" {
                changed = true;
                let mut c = c.clone();
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(now);
                c
            } else {
                c.clone()
            }
        })
        .collect();
    for kind in KUBELET_CONDITIONS {
        if !current.iter().any(|c| c["type"] == *kind) {
            changed = true;
            conditions.push(json!({
                "type": kind, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }));
        }
    }
    changed.then(|| json!(conditions))
}

fn taint(key: &str, effect: &str, now: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        // Eviction counts tolerationSeconds from when a NoExecute taint was added.
        time_added: (effect == "NoExecute")
            .then(|| serde_json::from_value(json!(now)).ok())
            .flatten(),
        value: None,
    }
}

fn managed(t: &Taint) -> bool {
    (t.key == NOT_READY || t.key == UNREACHABLE)
        && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
}

/// The node's taints given its Ready status: the lifecycle taints that status calls for,
/// the others as they are; `None` when nothing changes. A taint already there keeps its
/// `timeAdded`.
pub fn taints_for(node: &Node, ready: &str, now: &str) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let key = match ready {
        "False" => Some(NOT_READY),
        "Unknown" if condition(node, "Ready").is_some() => Some(UNREACHABLE),
        // A node that never reported is left to the startup grace period.
        _ => None,
    };
    let wanted: Vec<Taint> = key
        .map(|k| {
            ["NoSchedule", "NoExecute"]
                .iter()
                .map(|e| taint(k, e, now))
                .collect()
        })
        .unwrap_or_default();
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.iter().any(|w| same(w, t)))
        .cloned()
        .collect();
    for w in wanted {
        if !next.iter().any(|t| same(t, &w)) {
            next.push(w);
        }
    }
    (next != current).then_some(next)
}

/// What taint-based eviction does with one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// It stays (no NoExecute taint, or it tolerates them all for ever).
    Never,
    /// Delete it now.
    Now,
    /// Delete it at this moment, unless the taints go first.
    At(jiff::Timestamp),
}

/// Taint-based eviction of `pod` on a node with `taints`, at `now`, as kube-controller-
/// manager's: each NoExecute taint must be tolerated (by the first toleration that does);
/// the shortest `tolerationSeconds` among those tolerations, counted from the later of the
/// newest such taint's `timeAdded` and the pod's creation, is how long the pod may stay.
pub fn eviction(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Eviction::Never;
    }
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut shortest: Option<i64> = None;
    for taint in &no_execute {
        let Some(used) = tolerations
            .iter()
            .find(|t| tolerates(std::slice::from_ref(*t), taint))
        else {
            return Eviction::Now;
        };
        if let Some(seconds) = used.toleration_seconds {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    let Some(seconds) = shortest else {
        return Eviction::Never;
    };
    let added = no_execute
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .max();
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let since = added.into_iter().chain(created).max().unwrap_or(now);
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(seconds.max(0)))
        .unwrap_or(since);
    if at <= now {
        Eviction::Now
    } else {
        Eviction::At(at)
    }
}

/// Whether the pod's Ready condition is True (what marking it not ready changes).
fn pod_ready(pod: &Pod) -> bool {
    super::pods::is_ready(pod)
}

fn pod_reference(pod: &Pod) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(),
           "namespace": pod.namespace(), "uid": pod.uid()})
}

/// Watches Nodes, their Leases and Pods; keeps node health, taints and evictions.
pub async fn run(client: Client, grace: Duration) {
    let changed = Arc::new(Notify::new());
    let (nodes, w1) = cache(
        Api::<Node>::all(client.clone()),
        Default::default(),
        &changed,
        "nodes",
    );
    let (leases, w2) = cache(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        Default::default(),
        &changed,
        "node leases",
    );
    let (pods, w3) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    // kube-controller-manager looks every 5 s (`--node-monitor-period`); a short grace
    // period is looked at more often so that it means what it says.
    let period = (grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    let monitor = async move {
        let _ = tokio::join!(
            nodes.wait_until_ready(),
            leases.wait_until_ready(),
            pods.wait_until_ready()
        );
        let mut heartbeats: HashMap<String, Heartbeat> = HashMap::new();
        loop {
            let now = Instant::now();
            let now_text = now_text();
            let renewals: HashMap<String, Option<String>> = leases
                .state()
                .iter()
                .map(|l| {
                    let renew = l
                        .spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .and_then(|t| serde_json::to_value(t).ok())
                        .and_then(|v| v.as_str().map(str::to_owned));
                    (l.name_any(), renew)
                })
                .collect();
            let mut wake = now + period;
            let mut taints_by_node: BTreeMap<String, (String, Vec<Taint>)> = BTreeMap::new();
            let all_nodes = nodes.state();
            heartbeats.retain(|name, _| all_nodes.iter().any(|n| n.name_any() == *name));
            for node in &all_nodes {
                let name = node.name_any();
                let status_beat = condition(node, "Ready")
                    .and_then(|c| c.last_heartbeat_time.as_ref())
                    .and_then(|t| serde_json::to_value(t).ok())
                    .and_then(|v| v.as_str().map(str::to_owned));
                let beat = Heartbeat::observe(
                    heartbeats.get(&name),
                    status_beat,
                    renewals.get(&name).cloned().flatten(),
                    now,
                );
                let allowed = if condition(node, "Ready").is_some() {
                    grace
                } else {
                    STARTUP_GRACE.max(grace)
                };
                let stale = beat.stale(allowed, now);
                if !stale {
                    wake = wake.min(beat.deadline(allowed) + Duration::from_millis(10));
                }
                heartbeats.insert(name.clone(), beat);
                let mut ready = ready_status(node).to_owned();
                if stale && let Some(conditions) = unknown_conditions(node, &now_text) {
                    match mark_unknown(&client, node, conditions).await {
                        Ok(()) => ready = "Unknown".to_owned(),
                        Err(error) => {
                            warn!(node = %name, %error, "marking the node Unknown failed")
                        }
                    }
                }
                let mut taints = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.clone())
                    .unwrap_or_default();
                // The Ready condition this pass wrote is reflected at once; the watch
                // shows it shortly.
                let mut view = node.as_ref().clone();
                if ready == "Unknown"
                    && let Some(c) = view
                        .status
                        .as_mut()
                        .and_then(|s| s.conditions.as_mut())
                        .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
                {
                    c.status = "Unknown".to_owned();
                }
                if let Some(next) = taints_for(&view, &ready, &now_text) {
                    match set_taints(&client, node, &next).await {
                        Ok(()) => {
                            info!(node = %name, ready = %ready, "node taints updated");
                            taints = next;
                        }
                        Err(error) => {
                            warn!(node = %name, %error, "updating the node's taints failed")
                        }
                    }
                }
                taints_by_node.insert(name, (ready, taints));
            }
            let now_ts = jiff::Timestamp::now();
            for pod in pods.state() {
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                    continue;
                };
                let Some((ready, taints)) = taints_by_node.get(node) else {
                    continue;
                };
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match eviction(&pod, taints, now_ts) {
                    Eviction::Now => {
                        if let Err(error) = evict(&client, &pod).await {
                            warn!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), %error, "taint eviction failed");
                        }
                        continue;
                    }
                    Eviction::At(at) => {
                        let left = at.duration_since(now_ts).unsigned_abs();
                        wake = wake.min(now + left + Duration::from_millis(10));
                    }
                    Eviction::Never => {}
                }
                if ready != "True"
                    && pod_ready(&pod)
                    && let Err(error) = mark_not_ready(&client, &pod).await
                {
                    warn!(pod = %pod.name_any(), %error, "marking the pod not ready failed");
                }
            }
            let _ = tokio::time::timeout_at(wake.into(), changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(w1, w2, w3, monitor);
}

async fn mark_unknown(client: &Client, node: &Node, conditions: Value) -> kube::Result<()> {
    let name = node.name_any();
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "status": {"conditions": conditions},
    });
    Api::<Node>::all(client.clone())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!(node = %name, "kubelet stopped posting node status; node is Unknown");
    let involved = json!({"apiVersion": "v1", "kind": "Node", "name": name, "uid": name});
    // Node events live in `default`, as kube-controller-manager's do.
    let mut involved = involved;
    involved["namespace"] = json!("default");
    let message = format!("Node {name} status is now: NodeNotReady");
    if let Err(error) = record(client, involved, NAME, "Normal", "NodeNotReady", &message).await {
        warn!(node = %name, %error, "recording the NodeNotReady event failed");
    }
    Ok(())
}

async fn set_taints(client: &Client, node: &Node, taints: &[Taint]) -> kube::Result<()> {
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": taints},
    });
    Api::<Node>::all(client.clone())
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(drop)
}

async fn mark_not_ready(client: &Client, pod: &Pod) -> kube::Result<()> {
    let conditions: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(|mut c| {
            if c["type"] == "Ready" {
                c["status"] = json!("False");
                c["lastTransitionTime"] = json!(now_text());
            }
            c
        })
        .collect();
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": {"conditions": conditions},
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    record(
        client,
        pod_reference(pod),
        NAME,
        "Warning",
        "NodeNotReady",
        "Node is not ready",
    )
    .await
}

/// Delete a pod for a NoExecute taint, saying so in its conditions and an event first.
async fn evict(client: &Client, pod: &Pod) -> kube::Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let conditions = super::pods::with_disruption_target(
        pod,
        "DeletionByTaintManager",
        "Taint manager: deleting due to NoExecute taint",
        &now_text(),
    );
    // The whole list is written: only over the state it was computed from.
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": {"conditions": conditions},
    });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(error) => return Err(error),
    }
    let message = format!("Marking for deletion Pod {namespace}/{name}");
    if let Err(error) = record(
        client,
        pod_reference(pod),
        NAME,
        "Normal",
        "TaintManagerEviction",
        &message,
    )
    .await
    {
        warn!(pod = %name, %error, "recording the eviction event failed");
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(pod = %format!("{namespace}/{name}"), "evicted for a NoExecute taint");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, taints: Value) -> Node {
        let mut value =
            json!({"metadata": {"name": "n"}, "spec": {"taints": taints}, "status": {}});
        if let Some(ready) = ready {
            value["status"]["conditions"] = json!([
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "MemoryPressure", "status": "False"},
            ]);
        }
        serde_json::from_value(value).unwrap()
    }

    fn pod(tolerations: Value, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "creationTimestamp": created},
            "spec": {"containers": [], "tolerations": tolerations},
        }))
        .unwrap()
    }

    fn ts(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    #[test]
    fn a_silent_node_goes_stale_after_the_grace_period() {
        let start = Instant::now();
        let grace = Duration::from_secs(4);
        let beat = Heartbeat::observe(None, None, Some("t1".to_owned()), start);
        assert!(!beat.stale(grace, start + Duration::from_secs(3)));
        // The same renewTime seen later is no heartbeat.
        let later = start + Duration::from_secs(3);
        let same = Heartbeat::observe(Some(&beat), None, Some("t1".to_owned()), later);
        assert!(same.stale(grace, start + Duration::from_secs(5)));
        let renewed = Heartbeat::observe(Some(&beat), None, Some("t2".to_owned()), later);
        assert!(!renewed.stale(grace, start + Duration::from_secs(5)));
        assert_eq!(renewed.deadline(grace), later + grace);
    }

    #[test]
    fn a_stale_node_reports_every_kubelet_condition_unknown() {
        let conditions =
            unknown_conditions(&node(Some("True"), json!([])), "2026-01-02T00:00:00Z").unwrap();
        let ready = &conditions[0];
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert_eq!(ready["lastHeartbeatTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conditions[1]["status"], "Unknown");
        // Pressure conditions the node never posted are added as never updated.
        assert!(
            conditions
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "PIDPressure" && c["reason"] == "NodeStatusNeverUpdated")
        );
        let already: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"conditions":
            KUBELET_CONDITIONS.iter().map(|k| json!({"type": k, "status": "Unknown"})).collect::<Vec<_>>()}}))
        .unwrap();
        assert_eq!(unknown_conditions(&already, "x"), None);
    }

    #[test]
    fn taints_follow_the_ready_condition_and_others_stay() {
        let now = "2026-01-02T00:00:00Z";
        let user = json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]);
        let lost = taints_for(&node(Some("Unknown"), user.clone()), "Unknown", now).unwrap();
        assert_eq!(
            keys(&lost),
            [
                "gpu:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert!(lost[2].time_added.is_some());
        assert!(lost[1].time_added.is_none());
        let tainted = node(Some("Unknown"), serde_json::to_value(&lost).unwrap());
        assert_eq!(taints_for(&tainted, "Unknown", now), None);
        let not_ready = taints_for(&tainted, "False", now).unwrap();
        assert_eq!(
            keys(&not_ready),
            [
                "gpu:NoSchedule",
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        let back = taints_for(&tainted, "True", now).unwrap();
        assert_eq!(keys(&back), ["gpu:NoSchedule"]);
        // A node that never reported waits for the startup grace period.
        assert_eq!(taints_for(&node(None, json!([])), "Unknown", now), None);
    }

    #[test]
    fn eviction_follows_tolerations_and_their_seconds() {
        let now = ts("2026-01-02T00:00:10Z");
        let unreachable: Vec<Taint> = serde_json::from_value(json!([
            {"key": UNREACHABLE, "effect": "NoSchedule"},
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-02T00:00:00Z"},
        ]))
        .unwrap();
        let created = "2026-01-01T00:00:00Z";
        assert_eq!(
            eviction(&pod(json!([]), created), &unreachable, now),
            Eviction::Now
        );
        assert_eq!(
            eviction(&pod(json!([]), created), &[], now),
            Eviction::Never
        );
        let short = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]);
        assert_eq!(
            eviction(&pod(short, created), &unreachable, now),
            Eviction::Now
        );
        let long = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
        assert_eq!(
            eviction(&pod(long.clone(), created), &unreachable, now),
            Eviction::At(ts("2026-01-02T00:05:00Z"))
        );
        // A pod that arrived after the taint gets its full toleration.
        assert_eq!(
            eviction(&pod(long, "2026-01-02T00:00:05Z"), &unreachable, now),
            Eviction::At(ts("2026-01-02T00:05:05Z"))
        );
        let forever = json!([{"operator": "Exists"}]);
        assert_eq!(
            eviction(&pod(forever, created), &unreachable, now),
            Eviction::Never
        );
    }
}
