//! The StatefulSet controller, as kube-controller-manager's: each StatefulSet keeps `replicas`
//! pods with stable identities, `<set>-<ordinal>` for ordinals from `spec.ordinals.start`,
//! each with the hostname of its name under the set's `serviceName` and one
//! PersistentVolumeClaim per `volumeClaimTemplates` entry, `<template>-<set>-<ordinal>`,
//! created before the pod and kept after it (unless the retention policy gives the claim an
//! owner the garbage collector follows).
//!
//! `OrderedReady` (the default) creates ordinal N only once every lower ordinal is Running,
//! Ready and available, and scales down from the highest ordinal, one pod at a time, each
//! gone before the next; `Parallel` creates and deletes all at once. A failed pod is deleted
//! and made again. Each template is a ControllerRevision ([`super::revision`]) named
//! `<set>-<hash>`, which pods carry in `controller-revision-hash`. `RollingUpdate` replaces,
//! from the highest ordinal down to `partition`, one pod at a time (or `maxUnavailable`)
//! each time the previous one is available; `OnDelete` waits for the user to delete pods,
//! which come back at the new revision. The plan is pure ([`plan`]); [`run`] watches
//! StatefulSets, Pods, ControllerRevisions and PersistentVolumeClaims and carries it out.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, StatefulSet},
        core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec},
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
        is_finished, is_ready, phase, ready_since, selector_matches,
    },
    revision::{self, HASH_LABEL},
};

/// The pod label holding the pod's own name (a Service can select one member with it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label upstream's controller history puts on each ControllerRevision: its hash.
const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Who the controller's events say they come from.
const COMPONENT: &str = "statefulset-controller";

/// The set's two revisions: the one pods are at (`status.currentRevision`) and the one they
/// are rolled to (the set's template), each by name with its template.
#[derive(Clone, Debug, Default)]
pub struct Revisions {
    /// The current revision's name, what pods below a partition are made at.
    pub current: String,
    pub current_template: PodTemplateSpec,
    /// The update revision's name, the set's template now.
    pub update: String,
    pub update_template: PodTemplateSpec,
    /// `status.collisionCount`, carried into the status written.
    pub collision_count: i32,
}

/// What to do for one StatefulSet, in this order.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphans that are members of the set (by name) and match its selector, to adopt.
    pub adopt: Vec<String>,
    /// Pods the set controls that are no longer members (relabelled): name, the owner
    /// references they keep.
    pub release: Vec<(String, Value)>,
    /// Claims whose owner references change for the retention policy: name, new list.
    pub claim_owners: Vec<(String, Value)>,
    /// Claims to create (whole objects), before the pods that mount them.
    pub claims: Vec<Value>,
    /// Pods to create (whole objects), lowest ordinal first.
    pub create: Vec<Value>,
    /// Pods whose identity labels were lost: name, the labels to patch back.
    pub relabel: Vec<(String, Value)>,
    /// Pods to delete, by name, in order.
    pub delete: Vec<String>,
    /// The status to write.
    pub status: Value,
    /// When a ready pod becomes available (`minReadySeconds`), to look again then.
    pub requeue: Option<Duration>,
}

/// The parent set's name and the ordinal in a member pod's name, `<set>-<ordinal>` (upstream's
/// `getParentNameAndOrdinal`); `None` for a name of another shape or an ordinal beyond 32 bits.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

/// The name of the set's pod with `ordinal`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The name of the claim from template `claim` for the set's pod with `ordinal`.
pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

fn ordinal_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .name
        .as_deref()
        .and_then(parent_and_ordinal)
        .map(|(_, o)| o)
}

/// The revision a pod was made from.
fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// Running with its Ready condition True (upstream's `isRunningAndReady`).
fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// An int-or-percent of `total`, percentages rounded up (upstream's
/// `GetScaledValueFromIntOrPercent(…, true)`); `None` when it is neither.
fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            let scaled = (percent * i64::from(total) + 99).div_euclid(100);
            i32::try_from(scaled).ok()
        }
    }
}

/// The parts of a set's spec the plan reads, with Kubernetes' defaults.
struct Spec<'a> {
    name: String,
    namespace: String,
    uid: String,
    replicas: i32,
    start: i32,
    /// `OrderedReady`: one pod at a time, in order.
    monotonic: bool,
    strategy: &'a str,
    partition: i32,
    max_unavailable: Option<&'a IntOrString>,
    min_ready: i32,
    service_name: &'a str,
    claims: Vec<Value>,
    when_deleted_delete: bool,
    when_scaled_delete: bool,
}

impl<'a> Spec<'a> {
    fn of(set: &'a StatefulSet) -> Self {
        let spec = set.spec.as_ref();
        let rolling = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref());
        let policy = spec.and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        let deletes = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
        let start = spec
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0);
        Self {
            name: set.name_any(),
            namespace: set.namespace().unwrap_or_default(),
            uid: set.uid().unwrap_or_default(),
            // Ordinals stay within 32 bits, or the names would not read back as members.
            replicas: spec
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                .clamp(0, i32::MAX - start),
            start,
            monotonic: spec.and_then(|s| s.pod_management_policy.as_deref()) != Some("Parallel"),
            strategy: spec
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.type_.as_deref())
                .unwrap_or("RollingUpdate"),
            partition: rolling.and_then(|r| r.partition).unwrap_or(0).max(0),
            max_unavailable: rolling.and_then(|r| r.max_unavailable.as_ref()),
            min_ready: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            service_name: spec.and_then(|s| s.service_name.as_deref()).unwrap_or(""),
            claims: spec
                .and_then(|s| s.volume_claim_templates.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            when_deleted_delete: deletes(policy.and_then(|p| p.when_deleted.as_ref())),
            when_scaled_delete: deletes(policy.and_then(|p| p.when_scaled.as_ref())),
        }
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && ordinal - self.start < self.replicas
    }
}

/// The set's pod with `ordinal` at `revision` (made from `template`): the template's labels
/// plus its identity and revision labels, its hostname and subdomain, the claims' volumes
/// ahead of the template's other volumes, and the set as its controller.
pub fn pod_for(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Value {
    let spec = Spec::of(set);
    let name = pod_name(&spec.name, ordinal);
    let mut pod = pods::pod_from_template(
        Some(template),
        &spec.namespace,
        &name,
        controller_ref("apps/v1", "StatefulSet", &set.metadata),
    );
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[HASH_LABEL] = json!(revision);
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    pod["spec"]["hostname"] = json!(name);
    if !spec.service_name.is_empty() {
        pod["spec"]["subdomain"] = json!(spec.service_name);
    }
    let claim_names: Vec<&str> = spec
        .claims
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let mut volumes: Vec<Value> = claim_names
        .iter()
        .map(|c| {
            json!({"name": c, "persistentVolumeClaim": {
                "claimName": claim_name(c, &spec.name, ordinal)}})
        })
        .collect();
    let own = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    volumes.extend(
        own.into_iter()
            .filter(|v| !v["name"].as_str().is_some_and(|n| claim_names.contains(&n))),
    );
    if !volumes.is_empty() {
        pod["spec"]["volumes"] = json!(volumes);
    }
    pod
}

/// One plan in the making: upstream's `updateStatefulSet` over plain objects, recording
/// what it would do instead of doing it.
struct Planner<'a> {
    set: &'a StatefulSet,
    spec: Spec<'a>,
    revisions: &'a Revisions,
    claims: BTreeMap<String, &'a PersistentVolumeClaim>,
    now: jiff::Timestamp,
    plan: Plan,
}

impl Planner<'_> {
    /// Ready, not going away, and available: what lets an ordered set go on.
    fn healthy(&self, pod: &Pod) -> bool {
        running_and_ready(pod)
            && !terminating(pod)
            && is_available(pod, self.spec.min_ready, self.now)
    }

    fn available(&self, pod: &Pod) -> bool {
        running_and_ready(pod) && is_available(pod, self.spec.min_ready, self.now)
    }

    /// The owner references a claim of `pod` (with `ordinal`) should end up with: its own,
    /// less the set's and the pod's, plus those the retention policy asks for (upstream's
    /// `updateClaimOwnerRefForSetAndPod`); `None` when they are already so.
    fn claim_refs(&self, claim: &PersistentVolumeClaim, pod: &Pod, ordinal: i32) -> Option<Value> {
        let condemned = !self.spec.in_range(ordinal);
        let want_set =
            self.spec.when_deleted_delete && !(self.spec.when_scaled_delete && condemned);
        let want_pod = self.spec.when_scaled_delete && condemned;
        let pod_uid = pod.uid().unwrap_or_default();
        let refs = claim.metadata.owner_references.as_deref().unwrap_or(&[]);
        let has_set = refs.iter().any(|r| r.uid == self.spec.uid);
        let has_pod = refs.iter().any(|r| r.uid == pod_uid);
        if has_set == want_set && has_pod == want_pod {
            return None;
        }
        let mut wanted: Vec<Value> = refs
            .iter()
            .filter(|r| r.uid != self.spec.uid && r.uid != pod_uid)
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        if want_set {
            wanted.push(self.set_ref());
        }
        if want_pod {
            wanted.push(
                json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(),
                               "uid": pod_uid}),
            );
        }
        Some(json!(wanted))
    }

    /// A plain (not controlling) reference to the set, as the retention policy puts on claims.
    fn set_ref(&self) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": self.spec.name,
               "uid": self.spec.uid})
    }

    /// The claims of the pod with `ordinal` that do not exist yet, as objects to create.
    fn missing_claims(&mut self, ordinal: i32) {
        let selector_labels = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        for template in &self.spec.claims {
            let Some(tname) = template["metadata"]["name"].as_str() else {
                continue;
            };
            let name = claim_name(tname, &self.spec.name, ordinal);
            let planned = self
                .plan
                .claims
                .iter()
                .any(|c| c["metadata"]["name"] == json!(name));
            if self.claims.contains_key(&name) || planned {
                continue;
            }
            let mut labels: BTreeMap<String, String> =
                serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default();
            labels.extend(selector_labels.clone());
            let mut metadata = json!({"name": name, "namespace": self.spec.namespace,
                                      "labels": labels});
            if template["metadata"]["annotations"].is_object() {
                metadata["annotations"] = template["metadata"]["annotations"].clone();
            }
            if self.spec.when_deleted_delete {
                metadata["ownerReferences"] = json!([self.set_ref()]);
            }
            self.plan.claims.push(json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": metadata, "spec": template["spec"],
            }));
        }
    }

    /// Whether a claim of the pod with `ordinal`, about to be made, cannot be used yet: it
    /// is being deleted, or the retention policy tied it to an earlier pod of that name,
    /// which the garbage collector will delete it after (upstream's `PodClaimIsStale`).
    fn claims_stale(&self, ordinal: i32) -> bool {
        let name = pod_name(&self.spec.name, ordinal);
        self.spec.claims.iter().any(|template| {
            let Some(tname) = template["metadata"]["name"].as_str() else {
                return false;
            };
            self.claims
                .get(&claim_name(tname, &self.spec.name, ordinal))
                .is_some_and(|claim| {
                    claim.metadata.deletion_timestamp.is_some()
                        || (self.spec.when_scaled_delete
                            && claim
                                .metadata
                                .owner_references
                                .iter()
                                .flatten()
                                .any(|r| r.kind == "Pod" && r.name == name))
                })
        })
    }

    /// The retention policy's owner references on the claims of an existing `pod`.
    fn fix_claims(&mut self, pod: &Pod, ordinal: i32) {
        for template in &self.spec.claims {
            let Some(tname) = template["metadata"]["name"].as_str() else {
                continue;
            };
            let name = claim_name(tname, &self.spec.name, ordinal);
            let Some(claim) = self.claims.get(&name) else {
                continue;
            };
            if let Some(refs) = self.claim_refs(claim, pod, ordinal) {
                self.plan.claim_owners.push((name, refs));
            }
        }
    }

    /// The identity labels an existing pod lacks, to patch back.
    fn fix_identity(&mut self, pod: &Pod, ordinal: i32) {
        let name = pod.name_any();
        let labels = pod.labels();
        let index = ordinal.to_string();
        if labels.get(POD_NAME_LABEL) != Some(&name) || labels.get(POD_INDEX_LABEL) != Some(&index)
        {
            self.plan.relabel.push((
                name.clone(),
                json!({POD_NAME_LABEL: name, POD_INDEX_LABEL: index}),
            ));
        }
    }

    /// The pod a missing ordinal gets: at the current revision below the partition of a
    /// rolling update, at the update revision otherwise (upstream's
    /// `newVersionedStatefulSetPod`).
    fn new_pod(&self, ordinal: i32) -> Value {
        let rev = self.revisions;
        let below_partition = self.spec.strategy == "RollingUpdate"
            && ordinal < self.spec.start.saturating_add(self.spec.partition);
        if below_partition {
            pod_for(self.set, &rev.current_template, &rev.current, ordinal)
        } else {
            pod_for(self.set, &rev.update_template, &rev.update, ordinal)
        }
    }

    /// Upstream's `processReplica` for the slot `index`: whether an ordered set must stop.
    fn replica(&mut self, index: usize, slot: Option<&Pod>) -> bool {
        let ordinal = self
            .spec
            .start
            .saturating_add(i32::try_from(index).unwrap_or(i32::MAX));
        let monotonic = self.spec.monotonic;
        let Some(pod) = slot else {
            if self.claims_stale(ordinal) {
                return true;
            }
            self.missing_claims(ordinal);
            let pod = self.new_pod(ordinal);
            self.plan.create.push(pod);
            return monotonic;
        };
        // A pod that ended, failed or not, is deleted and made again once it is gone.
        if is_finished(pod) {
            if !terminating(pod) {
                self.plan.delete.push(pod.name_any());
            }
            return true;
        }
        if phase(pod) == "Pending" {
            self.missing_claims(ordinal);
        }
        if monotonic && !self.healthy(pod) {
            return true;
        }
        self.fix_identity(pod, ordinal);
        self.fix_claims(pod, ordinal);
        false
    }

    /// Upstream's `processCondemned`: whether an ordered set must stop.
    fn condemned(&mut self, pod: &Pod, first_unavailable: Option<&str>) -> bool {
        let monotonic = self.spec.monotonic;
        if terminating(pod) {
            return monotonic;
        }
        // An ordered set removes an unhealthy pod only when it is the first unhealthy one.
        if monotonic && !self.available(pod) && first_unavailable != Some(&pod.name_any()) {
            return true;
        }
        self.plan.delete.push(pod.name_any());
        true
    }

    /// The rolling update: replace pods not at the update revision from the highest ordinal
    /// down to the partition, one at a time or `maxUnavailable` at a time.
    fn roll(&mut self, replicas: &Replicas<'_>) -> usize {
        let partition = usize::try_from(self.spec.partition).unwrap_or(0);
        let update = self.revisions.update.as_str();
        let outdated = |p: &Pod| revision_of(p) != Some(update) && !terminating(p);
        if let Some(max) = self.spec.max_unavailable {
            let max = scaled(max, self.spec.replicas).unwrap_or(1).max(1);
            // Missing pods count as unavailable.
            let healthy = replicas.pods.values().filter(|p| self.healthy(p)).count();
            let unavailable = replicas.size.saturating_sub(healthy);
            let room = usize::try_from(max)
                .unwrap_or(1)
                .saturating_sub(unavailable);
            let victims: Vec<String> = replicas
                .pods
                .range(partition..)
                .rev()
                .map(|(_, p)| *p)
                .filter(|p| outdated(p))
                .take(room)
                .map(|p| p.name_any())
                .collect();
            let deleted = victims.len();
            self.plan.delete.extend(victims);
            return deleted;
        }
        for index in (partition..replicas.size).rev() {
            let Some(pod) = replicas.pods.get(&index) else {
                return 0;
            };
            if outdated(pod) {
                self.plan.delete.push(pod.name_any());
                return 1;
            }
            if !self.healthy(pod) {
                return 0;
            }
        }
        0
    }
}

/// The plan for `set` at `revisions`, given every pod and claim of its namespace, at `now`.
/// Pure.
pub fn plan(
    set: &StatefulSet,
    revisions: &Revisions,
    pods: &[Arc<Pod>],
    claims: &[Arc<PersistentVolumeClaim>],
    now: jiff::Timestamp,
) -> Plan {
    let spec = Spec::of(set);
    let deleting = set.metadata.deletion_timestamp.is_some();
    let selector = set.spec.as_ref().map(|s| &s.selector);
    // Members: named as the set's pods and matching its selector (upstream's ClaimPods).
    let member = |pod: &Pod| {
        selector.is_some_and(|s| selector_matches(s, pod.labels()))
            && pod
                .metadata
                .name
                .as_deref()
                .and_then(parent_and_ordinal)
                .is_some_and(|(parent, _)| parent == spec.name)
    };
    let mut adopt = Vec::new();
    let mut release = Vec::new();
    let mut owned: Vec<&Pod> = Vec::new();
    for pod in pods {
        match controller_uid(&pod.metadata) {
            Some(owner) if owner == spec.uid && member(pod) => owned.push(pod),
            // A set being deleted releases nothing (upstream's ClaimPods).
            Some(owner) if owner == spec.uid && !deleting => {
                let others: Vec<Value> = pod
                    .owner_references()
                    .iter()
                    .filter(|r| r.uid != spec.uid)
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect();
                release.push((pod.name_any(), json!(others)));
            }
            None if !deleting && !terminating(pod) && member(pod) => {
                adopt.push(pod.name_any());
                owned.push(pod);
            }
            _ => {}
        }
    }
    let mut replicas = Replicas {
        size: usize::try_from(spec.replicas).unwrap_or(0),
        pods: BTreeMap::new(),
    };
    let mut condemned: Vec<&Pod> = Vec::new();
    for &pod in &owned {
        match ordinal_of(pod) {
            Some(o) if spec.in_range(o) => {
                if let Ok(index) = usize::try_from(o - spec.start) {
                    replicas.pods.insert(index, pod);
                }
            }
            Some(_) => condemned.push(pod),
            None => {}
        }
    }
    // Scale down takes the highest ordinal first.
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));
    let claims = claims.iter().map(|c| (c.name_any(), c.as_ref())).collect();
    let mut planner = Planner {
        set,
        spec,
        revisions,
        claims,
        now,
        plan: Plan {
            adopt,
            release,
            ..Plan::default()
        },
    };
    let rolled = if deleting {
        // Being deleted: its pods are the garbage collector's, as upstream only counts them.
        0
    } else {
        steps(&mut planner, &replicas, &condemned)
    };
    let existing: Vec<&Pod> = replicas
        .pods
        .values()
        .copied()
        .chain(condemned.iter().copied())
        .collect();
    planner.plan.requeue = existing
        .iter()
        .filter(|p| running_and_ready(p))
        .filter_map(|p| ready_since(p))
        .filter_map(|since| available_in(since, planner.spec.min_ready, now))
        .min();
    planner.plan.status = status(&planner, &existing, rolled);
    planner.plan
}

/// The pods in the set's ordinal range, by index from the first ordinal; those missing
/// are absent, so a huge `replicas` costs nothing until its pods exist.
struct Replicas<'a> {
    size: usize,
    pods: BTreeMap<usize, &'a Pod>,
}

/// Pods a parallel set creates in one pass at most (kube-controller-manager's batch limit);
/// the rest come in the next passes.
const BURST: usize = 500;

/// The replicas, the condemned, then the update; how many pods the update deleted.
fn steps(planner: &mut Planner<'_>, replicas: &Replicas<'_>, condemned: &[&Pod]) -> usize {
    let monotonic = planner.spec.monotonic;
    for index in 0..replicas.size {
        if planner.plan.create.len() >= BURST {
            // Only pods that exist are left to look at in this pass.
            for (&index, &pod) in replicas.pods.range(index..) {
                planner.replica(index, Some(pod));
            }
            break;
        }
        if planner.replica(index, replicas.pods.get(&index).copied()) && monotonic {
            return 0;
        }
    }
    for pod in condemned {
        if let Some(ordinal) = ordinal_of(pod) {
            planner.fix_claims(pod, ordinal);
        }
    }
    // The first unavailable pod: among the replicas by ordinal (a missing one counts), else
    // the lowest condemned.
    let first_unavailable = (0..replicas.size)
        .find(|i| !replicas.pods.get(i).is_some_and(|p| planner.healthy(p)))
        .and_then(|i| i32::try_from(i).ok())
        .map(|i| pod_name(&planner.spec.name, planner.spec.start.saturating_add(i)))
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|p| !planner.healthy(p))
                .map(|p| p.name_any())
        });
    for pod in condemned {
        if planner.condemned(pod, first_unavailable.as_deref()) && monotonic {
            return 0;
        }
    }
    if planner.spec.strategy == "OnDelete" {
        return 0;
    }
    planner.roll(replicas)
}

/// The set's status: its pods counted as upstream counts them, a finished rolling update
/// making the update revision current.
fn status(planner: &Planner<'_>, existing: &[&Pod], rolled: usize) -> Value {
    let revisions = planner.revisions;
    let ready = existing.iter().filter(|p| running_and_ready(p)).count();
    let available = existing.iter().filter(|p| planner.available(p)).count();
    let live = || existing.iter().filter(|p| !terminating(p));
    let mut current = live()
        .filter(|p| revision_of(p) == Some(revisions.current.as_str()))
        .count();
    // Pods the update deletes are no longer current, though the watch still shows them.
    current = current.saturating_sub(rolled);
    let updated = live()
        .filter(|p| revision_of(p) == Some(revisions.update.as_str()))
        .count();
    let mut current_revision = revisions.current.clone();
    let want = usize::try_from(planner.spec.replicas).unwrap_or(0);
    if planner.spec.strategy == "RollingUpdate"
        && updated == want
        && ready == want
        && existing.len() == want
    {
        current = updated;
        current_revision = revisions.update.clone();
    }
    json!({
        "observedGeneration": planner.set.metadata.generation.unwrap_or(0),
        "replicas": existing.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": revisions.update,
        "collisionCount": revisions.collision_count,
    })
}

/// Watches StatefulSets, Pods, ControllerRevisions and PersistentVolumeClaims and keeps each
/// set's pods and claims.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (sets, w1) = cache(
        Api::<StatefulSet>::all(client.clone()),
        Default::default(),
        &changed,
        "statefulsets",
    );
    let (pods, w2) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let (revisions, w3) = cache(
        Api::<ControllerRevision>::all(client.clone()),
        Default::default(),
        &changed,
        "controllerrevisions",
    );
    let (claims, w4) = cache(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        Default::default(),
        &changed,
        "persistentvolumeclaims",
    );
    let reconcile = async move {
        let _ = tokio::join!(
            sets.wait_until_ready(),
            pods.wait_until_ready(),
            revisions.wait_until_ready(),
            claims.wait_until_ready()
        );
        let mut expectations = Expectations::default();
        let mut known: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut pods_by_namespace: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
            for pod in pods.state() {
                pods_by_namespace
                    .entry(pod.namespace().unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            let mut claims_by_namespace: BTreeMap<String, Vec<Arc<PersistentVolumeClaim>>> =
                BTreeMap::new();
            for claim in claims.state() {
                claims_by_namespace
                    .entry(claim.namespace().unwrap_or_default())
                    .or_default()
                    .push(claim);
            }
            let all_revisions = revisions.state();
            let mut requeue = Duration::from_secs(30);
            let mut seen = BTreeSet::new();
            for set in sets.state() {
                let namespace = set.namespace().unwrap_or_default();
                let uid = set.uid().unwrap_or_default();
                seen.insert(uid.clone());
                let key = format!("{namespace}/{}", set.name_any());
                let in_namespace = pods_by_namespace
                    .get(&namespace)
                    .map_or(&[][..], Vec::as_slice);
                let owned_now = in_namespace
                    .iter()
                    .filter(|p| {
                        !terminating(p) && controller_uid(&p.metadata) == Some(uid.as_str())
                    })
                    .count();
                let still_there = |n: &str| {
                    in_namespace
                        .iter()
                        .any(|p| p.name_any() == n && !terminating(p))
                };
                if !expectations.satisfied(&uid, owned_now, still_there) {
                    continue;
                }
                let revs = match sync_revisions(&client, &set, &all_revisions, in_namespace).await {
                    Ok(Some(revs)) => revs,
                    // A revision name collided: the set's collisionCount went up, and its
                    // watch brings it back with a new name to try.
                    Ok(None) => continue,
                    Err(error) => {
                        warn!(statefulset = %key, %error, "statefulset revision sync failed");
                        continue;
                    }
                };
                let in_claims = claims_by_namespace
                    .get(&namespace)
                    .map_or(&[][..], Vec::as_slice);
                let plan = plan(&set, &revs, in_namespace, in_claims, jiff::Timestamp::now());
                if let Some(at) = plan.requeue {
                    requeue = requeue.min(at);
                }
                if let Err(error) = carry_out(&client, &set, &plan).await {
                    warn!(statefulset = %key, %error, "statefulset sync failed");
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

/// Brings the set's ControllerRevisions up to date (upstream's `getStatefulSetRevisions`
/// and `truncateHistory`) and returns its current and update revisions; `None` after a name
/// collision, once `status.collisionCount` is raised.
async fn sync_revisions(
    client: &Client,
    set: &StatefulSet,
    all: &[Arc<ControllerRevision>],
    pods: &[Arc<Pod>],
) -> kube::Result<Option<Revisions>> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.uid().unwrap_or_default();
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let status = set.status.as_ref();
    let collision_count = status.and_then(|s| s.collision_count).unwrap_or(0);
    let current_name = status
        .and_then(|s| s.current_revision.clone())
        .unwrap_or_default();
    let owned = revision::owned(all, &uid);
    let mut in_use: BTreeSet<String> = pods
        .iter()
        .filter(|p| controller_uid(&p.metadata) == Some(uid.as_str()))
        .filter_map(|p| revision_of(p).map(str::to_owned))
        .collect();
    in_use.insert(current_name.clone());
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let mut sync = revision::sync(&name, &template, &owned, &in_use, limit);
    if sync.create && collision_count != 0 {
        sync.hash = revision::hash_with_collisions(&template, collision_count);
        sync.name = format!("{name}-{}", sync.hash);
    }
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    if sync.create {
        let object = revision::object(
            &sync,
            &namespace,
            &template,
            REVISION_HASH_LABEL,
            controller_ref("apps/v1", "StatefulSet", &set.metadata),
            set.annotations(),
        );
        if revision::create(&api, object).await? {
            info!(statefulset = %format!("{namespace}/{name}"), revision = %sync.name, "revision created");
        } else {
            // Ours and the watch has not shown it yet, or another object's name: then the
            // next name is tried, as upstream counts collisions.
            let existing = api.get(&sync.name).await?;
            let ours = controller_uid(&existing.metadata) == Some(uid.as_str())
                && existing.data.as_ref().map(|d| &d.0) == Some(&revision::data(&template));
            if !ours {
                let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
                let patch = json!({"status": {"collisionCount": collision_count + 1}});
                sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok(None);
            }
        }
    }
    revision::renumber_and_prune(&api, &sync).await?;
    let current = owned
        .iter()
        .filter(|r| r.name_any() == current_name)
        .find_map(|r| revision::template(r).map(|t| (r.name_any(), t)));
    let (current, current_template) =
        current.unwrap_or_else(|| (sync.name.clone(), template.clone()));
    Ok(Some(Revisions {
        current,
        current_template,
        update: sync.name,
        update_template: template,
        collision_count,
    }))
}

async fn carry_out(client: &Client, set: &StatefulSet, plan: &Plan) -> kube::Result<()> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = format!("{namespace}/{name}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    for orphan in &plan.adopt {
        let patch = json!({"metadata": {"ownerReferences": [
            controller_ref("apps/v1", "StatefulSet", &set.metadata)
        ]}});
        pods.patch(orphan, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for (pod, refs) in &plan.release {
        let patch = json!({"metadata": {"ownerReferences": refs}});
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        info!(statefulset = %key, %pod, "pod released");
    }
    for (claim, refs) in &plan.claim_owners {
        let patch = json!({"metadata": {"ownerReferences": refs}});
        claims
            .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for claim in &plan.claims {
        let claim_name = claim["metadata"]["name"].as_str().unwrap_or_default();
        let object: PersistentVolumeClaim =
            serde_json::from_value(claim.clone()).map_err(kube::Error::SerdeError)?;
        match claims.create(&PostParams::default(), &object).await {
            Ok(_) => {
                info!(statefulset = %key, claim = %claim_name, "claim created");
                let message = format!("create Claim {claim_name} in StatefulSet {name} success");
                record(client, set, "Normal", "SuccessfulCreate", &message).await;
            }
            // Made earlier; the watch had not shown it yet.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(error) => {
                let message = format!(
                    "create Claim {claim_name} in StatefulSet {name} failed error: {error}"
                );
                record(client, set, "Warning", "FailedCreate", &message).await;
                return Err(error);
            }
        }
    }
    for pod in &plan.create {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let object: Pod = serde_json::from_value(pod.clone()).map_err(kube::Error::SerdeError)?;
        match pods.create(&PostParams::default(), &object).await {
            Ok(_) => {
                info!(statefulset = %key, pod = %pod_name, "pod created");
                let message = format!("create Pod {pod_name} in StatefulSet {name} successful");
                record(client, set, "Normal", "SuccessfulCreate", &message).await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(error) => {
                let message =
                    format!("create Pod {pod_name} in StatefulSet {name} failed error: {error}");
                record(client, set, "Warning", "FailedCreate", &message).await;
                return Err(error);
            }
        }
    }
    for (pod, labels) in &plan.relabel {
        let patch = json!({"metadata": {"labels": labels}});
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for victim in &plan.delete {
        match pods.delete(victim, &DeleteParams::default()).await {
            Ok(_) => {
                info!(statefulset = %key, pod = %victim, "pod deleted");
                let message = format!("delete Pod {victim} in StatefulSet {name} successful");
                record(client, set, "Normal", "SuccessfulDelete", &message).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    let current = serde_json::to_value(&set.status).unwrap_or_default();
    if pods::status_differs(&current, &plan.status) {
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": plan.status})),
        )
        .await?;
    }
    Ok(())
}

/// An event on the set, as `kubectl describe` shows them; one that cannot be written is
/// only logged, as the work it reports is done.
async fn record(client: &Client, set: &StatefulSet, type_: &str, reason: &str, message: &str) {
    let involved = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set.name_any(),
                          "namespace": set.namespace(), "uid": set.uid()});
    if let Err(error) =
        super::events::record(client, involved, COMPONENT, type_, reason, message).await
    {
        let key = format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any());
        warn!(statefulset = %key, %error, "event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:01:00Z";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}],
                     "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}))
        .unwrap()
    }

    /// A set of `replicas` with a `data` claim template; `extra` merges into its spec.
    fn set(replicas: i32, extra: Value) -> StatefulSet {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "sts-uid", "generation": 4},
            "spec": {"replicas": replicas, "serviceName": "web-svc", "podManagementPolicy": "OrderedReady",
                     "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                     "template": template("b"),
                     "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
        });
        if let (Some(spec), Value::Object(e)) = (value["spec"].as_object_mut(), extra) {
            spec.extend(e);
        }
        serde_json::from_value(value).unwrap()
    }

    fn revisions() -> Revisions {
        Revisions {
            current: "web-r1".into(),
            current_template: template("a"),
            update: "web-r2".into(),
            update_template: template("b"),
            collision_count: 0,
        }
    }

    /// The set's pod `ordinal` at revision `rev`, Running and `ready` (for a minute) or not.
    fn pod(ordinal: i32, rev: &str, ready: bool) -> Arc<Pod> {
        pod_in(ordinal, rev, "Running", ready)
    }

    fn pod_in(ordinal: i32, rev: &str, phase: &str, ready: bool) -> Arc<Pod> {
        let name = pod_name("web", ordinal);
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "uid": format!("{name}-uid"),
                             "labels": {"app": "web", HASH_LABEL: rev, POD_NAME_LABEL: name,
                                        POD_INDEX_LABEL: ordinal.to_string()},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                                  "uid": "sts-uid", "controller": true}]},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                                          "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
            }))
            .unwrap(),
        )
    }

    fn terminating_pod(ordinal: i32, rev: &str) -> Arc<Pod> {
        let mut p = Pod::clone(&pod(ordinal, rev, true));
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        Arc::new(p)
    }

    fn claim(name: &str, owners: Value) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d",
                "ownerReferences": owners}, "spec": {}}))
            .unwrap(),
        )
    }

    fn names(values: &[Value]) -> Vec<&str> {
        values
            .iter()
            .map(|v| v["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn names_and_ordinals_read_as_upstream_reads_them() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-1a"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(
            parent_and_ordinal("web-99999999999"),
            None,
            "beyond 32 bits"
        );
        assert_eq!(claim_name("data", "web", 3), "data-web-3");
        assert_eq!(scaled(&IntOrString::String("25%".into()), 5), Some(2));
        assert_eq!(scaled(&IntOrString::Int(3), 5), Some(3));
        assert_eq!(scaled(&IntOrString::String("x".into()), 5), None);
    }

    #[test]
    fn ordered_ready_makes_each_claim_then_its_pod_once_the_previous_pod_is_ready() {
        let s = set(3, json!({}));
        let p = plan(&s, &revisions(), &[], &[], now());
        assert_eq!(names(&p.claims), ["data-web-0"]);
        assert_eq!(names(&p.create), ["web-0"]);
        let made = &p.claims[0];
        assert_eq!(
            made["metadata"]["labels"],
            json!({"app": "web", "tier": "db"})
        );
        assert_eq!(made["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(
            made["metadata"]["ownerReferences"].is_null(),
            "Retain: no owner"
        );

        let new: Pod = serde_json::from_value(p.create[0].clone()).unwrap();
        let labels = new.labels();
        assert_eq!(labels[POD_NAME_LABEL], "web-0");
        assert_eq!(labels[POD_INDEX_LABEL], "0");
        assert_eq!(labels[HASH_LABEL], "web-r2");
        assert_eq!(labels["app"], "web");
        assert_eq!(controller_uid(&new.metadata), Some("sts-uid"));
        let spec = new.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-svc"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(
            volumes.len(),
            2,
            "the claim replaces the template's volume of its name"
        );
        assert_eq!(volumes[0].name, "data");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-web-0"
        );
        assert_eq!(volumes[1].name, "tmp");

        // web-0 exists but is not ready: nothing more.
        let unready = vec![pod(0, "web-r2", false)];
        let claims = vec![claim("data-web-0", json!([]))];
        let p = plan(&s, &revisions(), &unready, &claims, now());
        assert!(p.create.is_empty() && p.claims.is_empty() && p.delete.is_empty());
        assert_eq!(p.status["replicas"], 1);
        assert_eq!(p.status["readyReplicas"], 0);

        let ready = vec![pod(0, "web-r2", true)];
        let p = plan(&s, &revisions(), &ready, &claims, now());
        assert_eq!(names(&p.claims), ["data-web-1"]);
        assert_eq!(names(&p.create), ["web-1"]);

        // Ordinals start where spec.ordinals says.
        let from_five = set(2, json!({"ordinals": {"start": 5}}));
        assert_eq!(
            names(&plan(&from_five, &revisions(), &[], &[], now()).create),
            ["web-5"]
        );
    }

    #[test]
    fn parallel_makes_every_missing_pod_at_once() {
        let s = set(3, json!({"podManagementPolicy": "Parallel"}));
        let p = plan(&s, &revisions(), &[pod(1, "web-r2", false)], &[], now());
        assert_eq!(names(&p.create), ["web-0", "web-2"]);
        assert_eq!(names(&p.claims), ["data-web-0", "data-web-2"]);
    }

    #[test]
    fn a_huge_set_is_made_a_burst_at_a_time() {
        let ordered = set(i32::MAX, json!({}));
        assert_eq!(
            names(&plan(&ordered, &revisions(), &[], &[], now()).create),
            ["web-0"]
        );
        let parallel = set(
            i32::MAX,
            json!({"podManagementPolicy": "Parallel", "ordinals": {"start": i32::MAX}}),
        );
        let p = plan(&parallel, &revisions(), &[], &[], now());
        assert!(p.create.is_empty(), "ordinals end at i32::MAX");
        let parallel = set(i32::MAX, json!({"podManagementPolicy": "Parallel"}));
        let p = plan(
            &parallel,
            &revisions(),
            &[pod(3000, "web-r2", false)],
            &[],
            now(),
        );
        assert_eq!(p.create.len(), BURST);
        assert_eq!(p.status["replicas"], 1);
    }

    #[test]
    fn scale_down_takes_the_highest_ordinal_first_and_waits_for_it_to_go() {
        let s = set(1, json!({}));
        let three = vec![
            pod(0, "web-r2", true),
            pod(2, "web-r2", true),
            pod(1, "web-r2", true),
        ];
        let p = plan(&s, &revisions(), &three, &[], now());
        assert_eq!(p.delete, ["web-2"]);
        assert!(
            p.create.is_empty() && p.claims.is_empty(),
            "claims are kept"
        );

        let going = vec![
            pod(0, "web-r2", true),
            pod(1, "web-r2", true),
            terminating_pod(2, "web-r2"),
        ];
        let p = plan(&s, &revisions(), &going, &[], now());
        assert!(p.delete.is_empty(), "web-2 must be gone before web-1 goes");
        assert_eq!(p.status["replicas"], 3);

        // An unhealthy pod blocks scale down unless it is the first unhealthy one.
        let sick = vec![
            pod(0, "web-r2", true),
            pod(1, "web-r2", false),
            pod(2, "web-r2", false),
        ];
        assert!(plan(&s, &revisions(), &sick, &[], now()).delete.is_empty());
        let sick_top = vec![
            pod(0, "web-r2", true),
            pod(1, "web-r2", true),
            pod(2, "web-r2", false),
        ];
        assert_eq!(
            plan(&s, &revisions(), &sick_top, &[], now()).delete,
            ["web-2"]
        );

        let parallel = set(1, json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(
            plan(&parallel, &revisions(), &three, &[], now()).delete,
            ["web-2", "web-1"]
        );
    }

    #[test]
    fn a_finished_pod_is_deleted_and_made_again_once_gone() {
        let s = set(2, json!({}));
        let failed = vec![pod_in(0, "web-r2", "Failed", false), pod(1, "web-r2", true)];
        let p = plan(&s, &revisions(), &failed, &[], now());
        assert_eq!(p.delete, ["web-0"]);
        assert!(p.create.is_empty());
        let gone = vec![pod(1, "web-r2", true)];
        assert_eq!(
            names(&plan(&s, &revisions(), &gone, &[], now()).create),
            ["web-0"]
        );
    }

    #[test]
    fn a_rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
        let s = set(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
        );
        let old = vec![
            pod(0, "web-r1", true),
            pod(1, "web-r1", true),
            pod(2, "web-r1", true),
        ];
        let p = plan(&s, &revisions(), &old, &[], now());
        assert_eq!(p.delete, ["web-2"]);
        assert_eq!(
            p.status["currentReplicas"], 2,
            "the deleted pod no longer counts"
        );
        assert_eq!(p.status["updatedReplicas"], 0);
        assert_eq!(p.status["currentRevision"], "web-r1");
        assert_eq!(p.status["updateRevision"], "web-r2");

        // web-2 gone: it comes back at the update revision, and nothing else moves meanwhile.
        let without_2 = vec![pod(0, "web-r1", true), pod(1, "web-r1", true)];
        let p = plan(&s, &revisions(), &without_2, &[], now());
        assert_eq!(names(&p.create), ["web-2"]);
        assert_eq!(p.create[0]["metadata"]["labels"][HASH_LABEL], "web-r2");
        assert_eq!(p.create[0]["spec"]["containers"][0]["image"], "b");
        assert!(p.delete.is_empty());

        let new_2_unready = vec![
            pod(0, "web-r1", true),
            pod(1, "web-r1", true),
            pod(2, "web-r2", false),
        ];
        assert!(
            plan(&s, &revisions(), &new_2_unready, &[], now())
                .delete
                .is_empty()
        );
        let new_2 = vec![
            pod(0, "web-r1", true),
            pod(1, "web-r1", true),
            pod(2, "web-r2", true),
        ];
        assert_eq!(plan(&s, &revisions(), &new_2, &[], now()).delete, ["web-1"]);

        let done = vec![
            pod(0, "web-r1", true),
            pod(1, "web-r2", true),
            pod(2, "web-r2", true),
        ];
        let p = plan(&s, &revisions(), &done, &[], now());
        assert!(p.delete.is_empty(), "web-0 is below the partition");
        assert_eq!(p.status["updatedReplicas"], 2);
        assert_eq!(p.status["currentRevision"], "web-r1");

        // Below the partition a missing pod comes back at the current revision.
        let without_0 = vec![pod(1, "web-r2", true), pod(2, "web-r2", true)];
        let p = plan(&s, &revisions(), &without_0, &[], now());
        assert_eq!(p.create[0]["metadata"]["labels"][HASH_LABEL], "web-r1");
        assert_eq!(p.create[0]["spec"]["containers"][0]["image"], "a");
    }

    #[test]
    fn max_unavailable_replaces_that_many_at_once() {
        let s = set(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}),
        );
        let old = vec![
            pod(0, "web-r1", true),
            pod(1, "web-r1", true),
            pod(2, "web-r1", true),
        ];
        assert_eq!(
            plan(&s, &revisions(), &old, &[], now()).delete,
            ["web-2", "web-1"]
        );
        let one_down = vec![
            pod(0, "web-r1", true),
            pod(1, "web-r1", true),
            pod(2, "web-r2", false),
        ];
        assert!(
            plan(&s, &revisions(), &one_down, &[], now())
                .delete
                .is_empty(),
            "an ordered set waits for every pod to be ready"
        );
        let parallel = set(
            3,
            json!({"podManagementPolicy": "Parallel", "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}),
        );
        assert_eq!(
            plan(&parallel, &revisions(), &one_down, &[], now()).delete,
            ["web-1"],
            "one unavailable already"
        );
    }

    #[test]
    fn on_delete_waits_for_the_user_and_remakes_pods_at_the_update_revision() {
        let s = set(2, json!({"updateStrategy": {"type": "OnDelete"}}));
        let old = vec![pod(0, "web-r1", true), pod(1, "web-r1", true)];
        let p = plan(&s, &revisions(), &old, &[], now());
        assert!(p.delete.is_empty() && p.create.is_empty());
        let without_1 = vec![pod(0, "web-r1", true)];
        let p = plan(&s, &revisions(), &without_1, &[], now());
        assert_eq!(p.create[0]["metadata"]["labels"][HASH_LABEL], "web-r2");
        let all_new = vec![pod(0, "web-r2", true), pod(1, "web-r2", true)];
        let p = plan(&s, &revisions(), &all_new, &[], now());
        assert_eq!(
            p.status["currentRevision"], "web-r1",
            "as upstream, OnDelete never completes"
        );
    }

    #[test]
    fn a_finished_rollout_makes_the_update_revision_current() {
        let s = set(2, json!({"minReadySeconds": 100}));
        let all_new = vec![pod(0, "web-r2", true), pod(1, "web-r2", true)];
        let p = plan(&s, &revisions(), &all_new, &[], now());
        assert_eq!(
            p.status,
            json!({"observedGeneration": 4, "replicas": 2, "readyReplicas": 2,
                   "availableReplicas": 0, "currentReplicas": 2, "updatedReplicas": 2,
                   "currentRevision": "web-r2", "updateRevision": "web-r2", "collisionCount": 0})
        );
        assert_eq!(p.requeue, Some(Duration::from_secs(40)));
    }

    #[test]
    fn members_are_adopted_and_pods_no_longer_members_released() {
        let s = set(2, json!({}));
        let orphan = |name: &str| {
            let mut p = Pod::clone(&pod(0, "web-r2", true));
            p.metadata.name = Some(name.to_owned());
            p.metadata.owner_references = None;
            Arc::new(p)
        };
        let p = plan(
            &s,
            &revisions(),
            &[orphan("web-0"), orphan("other-1")],
            &[],
            now(),
        );
        assert_eq!(p.adopt, ["web-0"]);
        assert_eq!(names(&p.create), ["web-1"]);

        // A pod relabelled out of the selector is released, and no longer counted.
        let mut relabelled = Pod::clone(&pod(1, "web-r2", true));
        relabelled.labels_mut().insert("app".into(), "debug".into());
        let pods = vec![pod(0, "web-r2", true), Arc::new(relabelled)];
        let p = plan(&s, &revisions(), &pods, &[], now());
        assert_eq!(p.release, [("web-1".to_owned(), json!([]))]);
        assert_eq!(p.status["replicas"], 1);
    }

    #[test]
    fn the_retention_policy_sets_claim_owners_and_stale_claims_wait() {
        let set_ref = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "sts-uid"});
        let delete_both = set(
            1,
            json!({"persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Delete", "whenScaled": "Delete"}}),
        );
        let p = plan(&delete_both, &revisions(), &[], &[], now());
        assert_eq!(p.claims[0]["metadata"]["ownerReferences"], json!([set_ref]));

        // Scaling down: the condemned pod's claim is handed to the pod, the kept one to the set.
        let pods = vec![pod(0, "web-r2", true), pod(1, "web-r2", true)];
        let claims = vec![
            claim("data-web-0", json!([])),
            claim("data-web-1", json!([set_ref])),
        ];
        let p = plan(&delete_both, &revisions(), &pods, &claims, now());
        assert_eq!(
            p.claim_owners,
            [
                ("data-web-0".to_owned(), json!([set_ref])),
                (
                    "data-web-1".to_owned(),
                    json!([{"apiVersion": "v1", "kind": "Pod",
                    "name": "web-1", "uid": "web-1-uid"}])
                ),
            ]
        );
        assert_eq!(p.delete, ["web-1"]);

        // Scaled up again before the old claim is collected: web-1 waits for it.
        let up = set(
            2,
            json!({"persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
        );
        let stale = vec![claim(
            "data-web-1",
            json!([{"apiVersion": "v1", "kind": "Pod",
            "name": "web-1", "uid": "web-1-uid"}]),
        )];
        let p = plan(&up, &revisions(), &[pod(0, "web-r2", true)], &stale, now());
        assert!(p.create.is_empty());

        // Retain keeps claims free of the set's and the pods' references.
        let retain = set(1, json!({}));
        let claims = vec![claim("data-web-0", json!([set_ref]))];
        let p = plan(
            &retain,
            &revisions(),
            &[pod(0, "web-r2", true)],
            &claims,
            now(),
        );
        assert_eq!(p.claim_owners, [("data-web-0".to_owned(), json!([]))]);
    }
}
