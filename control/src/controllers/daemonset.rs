//! The DaemonSet controller, as kube-controller-manager's: one pod per eligible node. A node
//! is eligible when it is not being deleted, matches the template's `nodeSelector` and
//! required node affinity, and has no NoSchedule or NoExecute taint the pod does not tolerate
//! (a pod already there stays while it tolerates the node's NoExecute taints). As upstream
//! since 1.12, pods are not bound here: each carries a required node affinity on
//! `metadata.name` and goes through the scheduler, and carries the tolerations every daemon
//! pod gets. Pods on nodes that are gone, or no longer eligible, are deleted; failed pods are
//! replaced. A template change rolls out node by node (`maxUnavailable`, or `maxSurge`: the
//! new pod first), or waits for pods to be deleted (`OnDelete`); each template is a
//! ControllerRevision ([`super::revision`]) and pods carry its hash. The plan is pure
//! ([`plan`]); [`run`] watches DaemonSets, Nodes, Pods and ControllerRevisions.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, DaemonSet},
        core::v1::{Node, Pod, PodTemplateSpec, Taint, Toleration},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{
    pods::{
        self, Expectations, available_in, controller_ref, controller_uid, is_available,
        is_finished, is_ready, ready_since, selector_matches,
    },
    revision::{self, HASH_LABEL},
    scheduler,
};

/// The deprecated label upstream still puts on daemon pods: the set's generation.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The tolerations every daemon pod gets (`key`, `effect`), as upstream's
/// `AddOrUpdateDaemonPodTolerations`: daemons outlive node trouble, and run on cordoned nodes.
const DEFAULT_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Tolerated only by pods on the host's network, which need no pod network.
const HOST_NETWORK_TOLERATION: (&str, &str) =
    ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// What to do for one DaemonSet.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Orphans matching the selector to adopt, by name.
    pub adopt: Vec<String>,
    /// The status to write.
    pub status: Value,
    /// When a pod becomes available (minReadySeconds) and the set must be looked at again.
    pub requeue: Option<Duration>,
}

/// The node a daemon pod is for: its `nodeName`, or before binding the node its affinity
/// names (`metadata.name In [node]`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|f| {
            let values = f.values.as_deref().unwrap_or(&[]);
            (f.key == "metadata.name" && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// The template with the tolerations every daemon pod gets added (those it lacks).
fn with_default_tolerations(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    let spec = template.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let extra = host_network.then_some(HOST_NETWORK_TOLERATION);
    for (key, effect) in DEFAULT_TOLERATIONS.iter().copied().chain(extra) {
        let present = tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect));
        if !present {
            tolerations.push(Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some(effect.to_owned()),
                ..Toleration::default()
            });
        }
    }
    template
}

/// The pod `ds` would run anywhere: its template with the default tolerations.
fn daemon_pod(ds: &DaemonSet) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| with_default_tolerations(&s.template))
        .unwrap_or_default();
    Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    }
}

/// Whether a daemon pod should be started on `node`, and whether one already there may keep
/// running (upstream's `NodeShouldRunDaemonPod`).
pub fn eligibility(pod: &Pod, node: &Node) -> (bool, bool) {
    let name = node.name_any();
    let pinned_elsewhere = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty() && n != name);
    if node.metadata.deletion_timestamp.is_some()
        || pinned_elsewhere
        || !scheduler::filters::node_affinity_matches(pod, node)
    {
        return (false, false);
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    if scheduler::filters::untolerated_taint(tolerations, taints).is_none() {
        return (true, true);
    }
    let no_execute: Vec<Taint> = taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect();
    (
        false,
        scheduler::filters::untolerated_taint(tolerations, &no_execute).is_none(),
    )
}

/// `maxUnavailable` and `maxSurge` for `desired` nodes (percentages round up, as upstream;
/// both zero means one unavailable).
fn rolling_limits(ds: &DaemonSet, desired: usize) -> (usize, usize) {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let scaled = |v: Option<&IntOrString>, default: usize| match v {
        None => default,
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map_or(default, |p| (p * desired).div_ceil(100)),
    };
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), 0);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), 1);
    if surge == 0 && unavailable == 0 {
        (1, 0)
    } else {
        (unavailable, surge)
    }
}

fn rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn is_new(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(HASH_LABEL).is_some_and(|h| h == hash)
}

/// The plan for `ds`, whose current template has revision hash `hash`, given every node and
/// every pod of its namespace, at `now`. Pure.
pub fn plan(
    ds: &DaemonSet,
    hash: &str,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> Plan {
    let uid = ds.uid().unwrap_or_default();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut plan = Plan::default();
    // The set's pods that are not being deleted, by the node they are for.
    let mut by_node: BTreeMap<String, Vec<&Arc<Pod>>> = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let mine = match controller_uid(&pod.metadata) {
            Some(owner) => owner == uid,
            None => {
                let selected = ds
                    .spec
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.selector, pod.labels()));
                let adopt = selected && ds.metadata.deletion_timestamp.is_none();
                if adopt {
                    plan.adopt.push(pod.name_any());
                }
                adopt
            }
        };
        if mine && let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    for list in by_node.values_mut() {
        // Oldest first: the one kept when a node has too many.
        list.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.name_any(),
            )
        });
    }
    let template_pod = daemon_pod(ds);
    let surge_enabled = rolling_update(ds) && rolling_limits(ds, nodes.len()).1 > 0;
    // Nodes that should run the daemon, with its live pods there.
    let mut desired: BTreeMap<String, Vec<&Arc<Pod>>> = BTreeMap::new();
    let mut misscheduled = 0;
    for node in nodes {
        let name = node.name_any();
        let (should_run, should_continue) = eligibility(&template_pod, node);
        let on_node = by_node.remove(&name).unwrap_or_default();
        let (ended, live): (Vec<_>, Vec<_>) = on_node.into_iter().partition(|p| is_finished(p));
        // A failed daemon pod is deleted; its replacement comes on the next pass.
        plan.delete.extend(ended.iter().map(|p| p.name_any()));
        if should_run {
            desired.insert(name.clone(), live.clone());
        } else if !live.is_empty() {
            misscheduled += 1;
        }
        if !should_continue {
            plan.delete.extend(live.iter().map(|p| p.name_any()));
        } else if live.is_empty() {
            if should_run && ended.is_empty() {
                plan.create.push(name);
            }
        } else if surge_enabled {
            // Keep the oldest pod of each template; the old one goes once the new is available.
            let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
                live.iter().partition(|p| is_new(p, hash));
            plan.delete.extend(new.iter().skip(1).map(|p| p.name_any()));
            plan.delete.extend(old.iter().skip(1).map(|p| p.name_any()));
            if let (Some(n), Some(o)) = (new.first(), old.first())
                && is_available(n, min_ready, now)
            {
                plan.delete.push(o.name_any());
            }
        } else {
            plan.delete
                .extend(live.iter().skip(1).map(|p| p.name_any()));
        }
    }
    // Pods for nodes that no longer exist.
    plan.delete.extend(
        by_node
            .values()
            .flatten()
            .filter(|p| !is_finished(p))
            .map(|p| p.name_any()),
    );
    if plan.create.is_empty() && plan.delete.is_empty() && rolling_update(ds) {
        let (create, delete) = roll(ds, hash, &desired, now);
        plan.create = create;
        plan.delete = delete;
    }

    let (mut current, mut ready, mut available, mut updated) = (0, 0, 0, 0);
    for pods in desired.values() {
        let Some(first) = pods.first() else {
            continue;
        };
        current += 1;
        if is_ready(first) {
            ready += 1;
        }
        if is_available(first, min_ready, now) {
            available += 1;
        } else if let Some(since) = ready_since(first) {
            plan.requeue = available_in(since, min_ready, now)
                .into_iter()
                .chain(plan.requeue)
                .min();
        }
        if is_new(first, hash) {
            updated += 1;
        }
    }
    plan.status = json!({
        "desiredNumberScheduled": desired.len(),
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired.len() - available,
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.metadata.generation.unwrap_or(0),
    });
    plan
}

/// One step of a rolling update over the nodes that should run the daemon (each with its
/// live pods, oldest first): the nodes to create a new pod on and the old pods to delete, as
/// upstream's `rollingUpdate`. Old pods that are unavailable are replaced at once; available
/// ones only while fewer than `maxUnavailable` nodes lack an available pod (or, with
/// `maxSurge`, a new pod starts beside the old one, which goes when the new is available).
fn roll(
    ds: &DaemonSet,
    hash: &str,
    desired: &BTreeMap<String, Vec<&Arc<Pod>>>,
    now: jiff::Timestamp,
) -> (Vec<String>, Vec<String>) {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (max_unavailable, max_surge) = rolling_limits(ds, desired.len());
    let mut create = Vec::new();
    let mut delete = Vec::new();
    let mut candidates = Vec::new();
    let mut busy = 0;
    for (node, pods) in desired {
        let new = pods.iter().find(|p| is_new(p, hash));
        let old = pods.iter().find(|p| !is_new(p, hash));
        match (new, old) {
            (None, None) => busy += 1,
            (Some(new), None) => {
                if max_surge == 0 && !is_available(new, min_ready, now) {
                    busy += 1;
                }
            }
            (Some(new), Some(old)) => {
                busy += 1;
                if max_surge > 0 && is_available(new, min_ready, now) {
                    delete.push(old.name_any());
                }
            }
            (None, Some(old)) => {
                let replacement = if max_surge == 0 {
                    old.name_any()
                } else {
                    node.clone()
                };
                if is_available(old, min_ready, now) {
                    candidates.push(replacement);
                } else if max_surge == 0 {
                    delete.push(replacement);
                } else {
                    create.push(replacement);
                }
            }
        }
    }
    let budget = if max_surge == 0 {
        max_unavailable
    } else {
        max_surge
    };
    let room = budget.saturating_sub(busy).min(candidates.len());
    if max_surge == 0 {
        delete.extend(candidates.into_iter().take(room));
    } else {
        create.extend(candidates.into_iter().take(room));
    }
    (create, delete)
}

/// The pod `ds` runs on `node`: its template with the default tolerations, the revision
/// labels, and a required node affinity for `node` alone (upstream replaces the template's
/// required node affinity, already checked against the node).
pub fn pod_for_node(ds: &DaemonSet, hash: &str, node: &str) -> Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| with_default_tolerations(&s.template));
    let mut pod = pods::pod_from_template(
        template.as_ref(),
        &ds.namespace().unwrap_or_default(),
        &format!("{}-", ds.name_any()),
        controller_ref("apps/v1", "DaemonSet", &ds.metadata),
    );
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[HASH_LABEL] = json!(hash);
    labels[TEMPLATE_GENERATION_LABEL] = json!(ds.metadata.generation.unwrap_or(0).to_string());
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    let affinity = &mut pod["spec"]["affinity"];
    if !affinity.is_object() {
        *affinity = json!({});
    }
    if !affinity["nodeAffinity"].is_object() {
        affinity["nodeAffinity"] = json!({});
    }
    affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}
        ]}],
    });
    pod
}

/// Watches DaemonSets, Nodes, Pods and ControllerRevisions and keeps each set's daemons.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (sets, w1) = cache(
        Api::<DaemonSet>::all(client.clone()),
        Default::default(),
        &changed,
        "daemonsets",
    );
    let (pods, w2) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let (nodes, w3) = cache(
        Api::<Node>::all(client.clone()),
        Default::default(),
        &changed,
        "nodes",
    );
    let (revisions, w4) = cache(
        Api::<ControllerRevision>::all(client.clone()),
        Default::default(),
        &changed,
        "controllerrevisions",
    );
    let reconcile = async move {
        let _ = tokio::join!(
            sets.wait_until_ready(),
            pods.wait_until_ready(),
            nodes.wait_until_ready(),
            revisions.wait_until_ready()
        );
        let mut expectations = Expectations::default();
        let mut known: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut by_namespace: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
            for pod in pods.state() {
                by_namespace
                    .entry(pod.namespace().unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            let node_list = nodes.state();
            let all_revisions = revisions.state();
            let mut requeue = Duration::from_secs(30);
            let mut seen = BTreeSet::new();
            for ds in sets.state() {
                // The agents' DaemonSet shows host processes, not pods: making pods for it
                // would run a second agent per node. Its status is super::agents'.
                if super::agents::is_host_agent(&ds) {
                    continue;
                }
                let namespace = ds.namespace().unwrap_or_default();
                let uid = ds.uid().unwrap_or_default();
                seen.insert(uid.clone());
                let key = format!("{namespace}/{}", ds.name_any());
                let in_namespace = by_namespace.get(&namespace).map_or(&[][..], Vec::as_slice);
                let owned_now = in_namespace
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && controller_uid(&p.metadata) == Some(uid.as_str())
                    })
                    .count();
                let still_there = |n: &str| {
                    in_namespace
                        .iter()
                        .any(|p| p.name_any() == n && p.metadata.deletion_timestamp.is_none())
                };
                if !expectations.satisfied(&uid, owned_now, still_there) {
                    continue;
                }
                let hash = match sync_revisions(&client, &ds, &all_revisions, in_namespace).await {
                    Ok(hash) => hash,
                    Err(error) => {
                        warn!(daemonset = %key, %error, "daemonset revision sync failed");
                        continue;
                    }
                };
                let plan = plan(&ds, &hash, &node_list, in_namespace, jiff::Timestamp::now());
                if let Some(at) = plan.requeue {
                    requeue = requeue.min(at);
                }
                if let Err(error) = carry_out(&client, &ds, &hash, &plan).await {
                    warn!(daemonset = %key, %error, "daemonset sync failed");
                    continue;
                }
                expectations.expect(
                    &uid,
                    owned_now + plan.adopt.len(),
                    plan.create.len(),
                    plan.delete.clone(),
                );
            }
            for gone in known.difference(&seen) {
                expectations.forget(gone);
            }
            known = seen;
            let _ = tokio::time::timeout(requeue, changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(w1, w2, w3, w4, reconcile);
}

/// Brings the set's ControllerRevisions up to date and returns its template's hash.
async fn sync_revisions(
    client: &Client,
    ds: &DaemonSet,
    all: &[Arc<ControllerRevision>],
    pods: &[Arc<Pod>],
) -> kube::Result<String> {
    let namespace = ds.namespace().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let owned = revision::owned(all, &uid);
    let in_use: BTreeSet<String> = pods
        .iter()
        .filter(|p| controller_uid(&p.metadata) == Some(uid.as_str()))
        .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
        .collect();
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let sync = revision::sync(&ds.name_any(), &template, &owned, &in_use, limit);
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    if sync.create {
        let object = revision::object(
            &sync,
            &namespace,
            &template,
            HASH_LABEL,
            controller_ref("apps/v1", "DaemonSet", &ds.metadata),
            ds.annotations(),
        );
        if revision::create(&api, object).await? {
            info!(daemonset = %format!("{namespace}/{}", ds.name_any()), revision = %sync.name, "revision created");
        }
    }
    revision::renumber_and_prune(&api, &sync).await?;
    Ok(sync.hash)
}

async fn carry_out(client: &Client, ds: &DaemonSet, hash: &str, plan: &Plan) -> kube::Result<()> {
    let namespace = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{namespace}/{name}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for orphan in &plan.adopt {
        let patch = json!({"metadata": {"ownerReferences": [
            controller_ref("apps/v1", "DaemonSet", &ds.metadata)
        ]}});
        pods.patch(orphan, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for node in &plan.create {
        let pod: Pod = serde_json::from_value(pod_for_node(ds, hash, node))
            .map_err(kube::Error::SerdeError)?;
        let created = pods.create(&PostParams::default(), &pod).await?;
        info!(daemonset = %key, pod = %created.name_any(), %node, "pod created");
    }
    for victim in &plan.delete {
        match pods.delete(victim, &DeleteParams::default()).await {
            Ok(_) => info!(daemonset = %key, pod = %victim, "pod deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    let current = serde_json::to_value(&ds.status).unwrap_or_default();
    if pods::status_differs(&current, &plan.status) {
        let sets: Api<DaemonSet> = Api::namespaced(client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": plan.status})),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:01:00Z";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn ds(extra: Value) -> DaemonSet {
        let mut value = json!({
            "metadata": {"name": "agent", "namespace": "d", "uid": "ds-uid", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        });
        if let (Some(spec), Value::Object(e)) = (value["spec"].as_object_mut(), extra) {
            spec.extend(e);
        }
        serde_json::from_value(value).unwrap()
    }

    fn node(name: &str, extra: Value) -> Arc<Node> {
        let mut value = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        if let Value::Object(e) = extra {
            for (k, v) in e {
                value[k.as_str()] = v;
            }
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    /// A pod of the set on `node` with revision `hash`; `ready` or not; `phase`.
    fn pod(name: &str, node: &str, hash: &str, ready: bool, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "creationTimestamp": "2026-01-01T00:00:00Z",
                             "labels": {"app": "agent", HASH_LABEL: hash},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                                  "uid": "ds-uid", "controller": true}]},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                                          "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn one_pod_per_eligible_node_and_none_where_taints_or_selectors_say_no() {
        let nodes = vec![
            node("a", json!({})),
            node(
                "b",
                json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}}),
            ),
            node("c", json!({"spec": {"unschedulable": true}})),
            node(
                "gone",
                json!({"metadata": {"name": "gone", "deletionTimestamp": NOW}}),
            ),
        ];
        let p = plan(&ds(json!({})), "h1", &nodes, &[], now());
        assert_eq!(p.create, ["a", "c"], "cordoned nodes still get daemons");
        assert_eq!(p.status["desiredNumberScheduled"], 2);
        assert_eq!(p.status["numberUnavailable"], 2);

        let tolerant = ds(
            json!({"template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
            "containers": [{"name": "c"}], "nodeSelector": {"kubernetes.io/hostname": "b"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}]}}}),
        );
        assert_eq!(plan(&tolerant, "h1", &nodes, &[], now()).create, ["b"]);

        // A pod on a node that became ineligible, one on a node that is gone, a failed one.
        let pods = vec![
            pod("on-b", "b", "h1", true, "Running"),
            pod("on-x", "x", "h1", true, "Running"),
            pod("failed-a", "a", "h1", false, "Failed"),
            pod("on-c", "c", "h1", true, "Running"),
        ];
        let p = plan(&ds(json!({})), "h1", &nodes, &pods, now());
        assert_eq!(
            p.delete,
            ["failed-a", "on-x"],
            "a NoSchedule taint keeps the daemon already there"
        );
        assert!(
            p.create.is_empty(),
            "a failed pod is replaced once it is gone"
        );
        assert_eq!(p.status["numberMisscheduled"], 1);
        assert_eq!(p.status["currentNumberScheduled"], 1);
    }

    #[test]
    fn no_execute_taints_evict_and_no_schedule_taints_only_keep_new_pods_away() {
        let nodes = vec![
            node(
                "ns",
                json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
            ),
            node(
                "ne",
                json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
            ),
        ];
        let pods = vec![
            pod("stays", "ns", "h1", true, "Running"),
            pod("goes", "ne", "h1", true, "Running"),
        ];
        let p = plan(&ds(json!({})), "h1", &nodes, &pods, now());
        assert_eq!(p.delete, ["goes"]);
        assert!(p.create.is_empty());
        assert_eq!(p.status["desiredNumberScheduled"], 0);
        // As kube-controller-manager counts: a pod where the daemon should not run is
        // misscheduled even when it may continue running there.
        assert_eq!(p.status["numberMisscheduled"], 2);
    }

    #[test]
    fn created_pods_target_their_node_through_the_scheduler_with_daemon_tolerations() {
        let pod: Pod = serde_json::from_value(pod_for_node(&ds(json!({})), "h1", "a")).unwrap();
        assert_eq!(target_node(&pod).as_deref(), Some("a"));
        assert!(pod.spec.as_ref().unwrap().node_name.is_none());
        assert_eq!(pod.labels()[HASH_LABEL], "h1");
        assert_eq!(pod.labels()[TEMPLATE_GENERATION_LABEL], "3");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert_eq!(tolerations.len(), DEFAULT_TOLERATIONS.len());
        assert!(tolerations.iter().any(|t| t.key.as_deref()
            == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")));
        let host =
            ds(json!({"template": {"spec": {"hostNetwork": true, "containers": [{"name": "c"}]}}}));
        let pod: Pod = serde_json::from_value(pod_for_node(&host, "h1", "a")).unwrap();
        assert_eq!(
            pod.spec.unwrap().tolerations.unwrap().len(),
            DEFAULT_TOLERATIONS.len() + 1
        );
    }

    #[test]
    fn a_rolling_update_replaces_at_most_max_unavailable_available_pods() {
        let nodes = vec![
            node("a", json!({})),
            node("b", json!({})),
            node("c", json!({})),
        ];
        let old = vec![
            pod("pa", "a", "h1", true, "Running"),
            pod("pb", "b", "h1", true, "Running"),
            pod("pc", "c", "h1", true, "Running"),
        ];
        let p = plan(&ds(json!({})), "h2", &nodes, &old, now());
        assert_eq!(
            (p.create.len(), p.delete.as_slice()),
            (0, &["pa".to_owned()][..])
        );
        assert_eq!(p.status["updatedNumberScheduled"], 0);

        // a is being replaced (its new pod not ready yet): nothing more goes.
        let mid = vec![
            pod("na", "a", "h2", false, "Running"),
            pod("pb", "b", "h1", true, "Running"),
            pod("pc", "c", "h1", false, "Running"),
        ];
        let p = plan(&ds(json!({})), "h2", &nodes, &mid, now());
        assert_eq!(
            p.delete,
            ["pc"],
            "an unavailable old pod is replaced at once"
        );
        let mid = vec![
            pod("na", "a", "h2", false, "Running"),
            pod("pb", "b", "h1", true, "Running"),
            pod("pc", "c", "h1", true, "Running"),
        ];
        assert_eq!(
            plan(&ds(json!({})), "h2", &nodes, &mid, now()),
            Plan {
                status: plan(&ds(json!({})), "h2", &nodes, &mid, now()).status,
                ..Plan::default()
            }
        );

        // OnDelete: nothing is replaced by the controller.
        let on_delete = ds(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert!(
            plan(&on_delete, "h2", &nodes, &old, now())
                .delete
                .is_empty()
        );
    }

    #[test]
    fn with_max_surge_the_new_pod_starts_before_the_old_one_goes() {
        let surge = ds(json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}}}));
        let nodes = vec![
            node("a", json!({})),
            node("b", json!({})),
            node("c", json!({})),
        ];
        let old = vec![
            pod("pa", "a", "h1", true, "Running"),
            pod("pb", "b", "h1", true, "Running"),
            pod("pc", "c", "h1", true, "Running"),
        ];
        let p = plan(&surge, "h2", &nodes, &old, now());
        assert_eq!(p.create, ["a", "b"], "50% of 3 rounds up to 2");
        assert!(p.delete.is_empty());
        let both = vec![
            pod("pa", "a", "h1", true, "Running"),
            pod("na", "a", "h2", true, "Running"),
            pod("pb", "b", "h1", true, "Running"),
            pod("nb", "b", "h2", false, "Running"),
            pod("pc", "c", "h1", true, "Running"),
        ];
        let p = plan(&surge, "h2", &nodes, &both, now());
        assert_eq!(p.delete, ["pa"]);
        assert!(p.create.is_empty());
    }
}
