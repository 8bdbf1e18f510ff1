//! The Deployment controller, as kube-controller-manager's: each Deployment owns ReplicaSets
//! named `<deployment>-<pod-template-hash>`, one per pod template it has had, and moves pods
//! from the old ones to the new one by its strategy (RollingUpdate within maxSurge and
//! maxUnavailable, or Recreate), numbering revisions so `kubectl rollout` can list and undo
//! them, and reporting progress in its status and conditions.
//!
//! The core is pure: [`plan`] follows kube-controller-manager's sync over working copies of
//! the Deployment and its ReplicaSets and returns the writes it made (which kube-controller-
//! manager would have sent one by one). [`run`] watches Deployments, ReplicaSets and Pods and
//! carries plans out; every ReplicaSet write carries the resourceVersion the plan saw, so a
//! plan made from a stale cache is refused with 409 and made again from fresher state.
//!
//! Scaling a Deployment in the middle of a rollout spreads the change over its active
//! ReplicaSets in proportion to their sizes, with kube-controller-manager's exact rule: each
//! gets `round(replicas × (spec.replicas + maxSurge) / max-replicas annotation) − replicas`,
//! capped by what is left to add, the largest ReplicaSet taking the rounding leftover.
//!
//! Not done: ReplicaFailure conditions (the ReplicaSet controller reports none), the
//! deprecated `rollbackTo` field. Dependents are deleted by the garbage collector, through
//! the owner references set here.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec},
        core::v1::{Pod, PodTemplateSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{ObjectMeta, OwnerReference, Time},
        util::intstr::IntOrString,
    },
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::pods::{controller_ref, controller_uid, is_finished, selector_matches};

/// The revision a ReplicaSet serves (and, on the Deployment, its newest one).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet served before a rollback brought it back, comma-separated.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled (proportional scaling).
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells one template's pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations never copied to ReplicaSets (kubectl skips the same on undo).
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// kube-controller-manager's limit on the revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

const PROGRESSING: &str = "Progressing";
const AVAILABLE: &str = "Available";
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The reasons of the Progressing and Available conditions, in Kubernetes' words.
pub mod reason {
    /// A ReplicaSet of the rollout was scaled.
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    /// The new ReplicaSet could not be created.
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    /// The new ReplicaSet was created.
    pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
    /// An existing ReplicaSet serves the template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout completed.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// No progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// `spec.paused` was set.
    pub const PAUSED: &str = "DeploymentPaused";
    /// `spec.paused` was cleared.
    pub const RESUMED: &str = "DeploymentResumed";
    /// At least `replicas - maxUnavailable` pods are available.
    pub const MINIMUM_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Fewer than `replicas - maxUnavailable` pods are available.
    pub const MINIMUM_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// What stops a Deployment from being planned at all.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// maxSurge or maxUnavailable is neither an integer nor a percentage.
    #[error("invalid {field} {value:?}: want an integer or a percentage such as \"25%\"")]
    IntOrPercent { field: &'static str, value: String },
}

/// An Event to record on the Deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The writes one sync of a Deployment makes, in the order [`run`] makes them.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphan ReplicaSets matching the selector, to take (by name). When there are any, or
    /// releases, the rest waits for the watch to show them.
    pub adopt: Vec<String>,
    /// Owned ReplicaSets whose labels no longer match, to let go (by name).
    pub release: Vec<String>,
    /// The new ReplicaSet to create.
    pub create: Option<ReplicaSet>,
    /// ReplicaSets whose replicas, annotations or minReadySeconds change (each as the plan
    /// saw it, resourceVersion included, with the changes made).
    pub update: Vec<ReplicaSet>,
    /// Old ReplicaSets beyond `revisionHistoryLimit` to delete: name and resourceVersion.
    pub delete: Vec<(String, Option<String>)>,
    /// The Deployment's new revision annotation.
    pub revision: Option<String>,
    /// The Deployment's new status.
    pub status: Option<DeploymentStatus>,
    pub events: Vec<Event>,
    /// When to look again though nothing changes (a progress deadline running out).
    pub requeue: Option<Duration>,
}

/// The pod-template-hash of `template`: FNV-1a (32 bits) over its canonical JSON and the
/// collision count, its decimal form spelt in Kubernetes' safe alphabet (no vowels, no
/// look-alike digits), as kube-controller-manager's `ComputeHash` does over its own encoding.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // serde_json maps are sorted (no `preserve_order`), so the encoding is canonical.
    let encoded = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv1a(0x811c_9dc5, &encoded);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&count.cast_unsigned().to_le_bytes());
        hash = fnv1a(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Kubernetes' `rand.SafeEncodeString`: each byte mapped into an alphabet that cannot spell
/// words.
fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// Whether two pod templates are the same but for the pod-template-hash label, with
/// Kubernetes' semantic equality (an empty map or list equals an absent one).
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let normal = |t: &PodTemplateSpec| {
        let mut v = serde_json::to_value(t).unwrap_or_default();
        if let Some(labels) = v["metadata"]["labels"].as_object_mut() {
            labels.remove(HASH_LABEL);
        }
        prune(&mut v);
        v
    };
    normal(a) == normal(b)
}

/// Drop nulls and empty objects and lists, recursively; true when `v` itself is empty.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, child| !prune(child));
            map.is_empty()
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            items.is_empty()
        }
        _ => false,
    }
}

/// An int-or-percent scaled against `total`, rounding up or down as Kubernetes does.
fn scaled(
    value: Option<&IntOrString>,
    default: &str,
    total: i64,
    round_up: bool,
    field: &'static str,
) -> Result<i64, Error> {
    let bad = |s: &str| Error::IntOrPercent {
        field,
        value: s.to_owned(),
    };
    match value {
        Some(IntOrString::Int(n)) => Ok(i64::from(*n)),
        Some(IntOrString::String(s)) => percent_of(s, total, round_up).ok_or_else(|| bad(s)),
        None => percent_of(default, total, round_up).ok_or_else(|| bad(default)),
    }
}

fn percent_of(s: &str, total: i64, round_up: bool) -> Option<i64> {
    let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
    let product = percent.checked_mul(total)?;
    Some(if round_up {
        product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
    } else {
        product.div_euclid(100)
    })
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) for `desired` replicas; both
/// zero cannot make progress, so maxUnavailable becomes 1 (Kubernetes' `ResolveFenceposts`).
pub fn fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i64,
) -> Result<(i64, i64), Error> {
    let surge = scaled(max_surge, "25%", desired, true, "maxSurge")?.max(0);
    let unavailable = scaled(max_unavailable, "25%", desired, false, "maxUnavailable")?.max(0);
    Ok(if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    })
}

fn spec_replicas(rs: &ReplicaSet) -> i64 {
    i64::from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

fn set_spec_replicas(rs: &mut ReplicaSet, replicas: i64) {
    let replicas = i32::try_from(replicas.max(0)).unwrap_or(i32::MAX);
    rs.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(replicas);
}

fn status_replicas(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().map_or(0, |s| i64::from(s.replicas))
}

fn available(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    )
}

fn ready(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    )
}

/// A numeric annotation; absent or malformed is `None`.
fn annotation_number(meta: &ObjectMeta, key: &str) -> Option<i64> {
    meta.annotations.as_ref()?.get(key)?.parse().ok()
}

/// The revision a ReplicaSet serves; 0 when it has none (or a malformed one).
fn revision(rs: &ReplicaSet) -> i64 {
    annotation_number(&rs.metadata, REVISION).unwrap_or(0)
}

/// Creation order, the not-yet-created last; ties by name (Kubernetes' order).
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| {
        rs.metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::MAX, |t| t.0)
    };
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: a condition with the same status and reason is
/// left alone; one with the same status keeps its transition time.
fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    if let Some(current) = condition(status, &new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &new.type_);
    status.conditions.get_or_insert_default().push(new);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// Sets the desired- and max-replicas annotations; true if they changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i64, max: i64) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_owned(), value);
            changed = true;
        }
    }
    changed
}

/// The Deployment's annotations copied onto its new ReplicaSet, which serves revision
/// `new_revision` unless it already serves a later one; a ReplicaSet brought back records
/// the revision it served before in the revision history. True if anything changed.
fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    replicas: Option<(i64, i64)>,
) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (key, value) in d.annotations() {
        if NOT_COPIED.contains(&key.as_str()) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_number = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(n)) => n,
        // A revision we cannot read is left for a person to fix, as Kubernetes does.
        Some(Err(_)) => return changed,
    };
    if old_number < new_revision {
        annotations.insert(REVISION.to_owned(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = match annotations.get(REVISION_HISTORY).filter(|h| !h.is_empty()) {
                None => old,
                Some(history) => {
                    let mut revisions: Vec<&str> = history.split(',').collect();
                    revisions.push(&old);
                    while revisions.join(",").len() > MAX_REVISION_HISTORY_CHARS
                        && revisions.len() > 1
                    {
                        revisions.remove(0);
                    }
                    revisions.join(",")
                }
            };
            annotations.insert(REVISION_HISTORY.to_owned(), history);
        }
    }
    if let Some((desired, max)) = replicas {
        changed |= set_replicas_annotations(rs, desired, max);
    }
    changed
}

/// Whether the Deployment's pods are all updated and available, for its latest generation.
fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = desired(d);
    i64::from(status.updated_replicas.unwrap_or(0)) == desired
        && i64::from(status.replicas.unwrap_or(0)) == desired
        && i64::from(status.available_replicas.unwrap_or(0)) == desired
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over the Deployment's recorded status.
fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn progress_deadline(d: &Deployment) -> Option<i64> {
    d.spec
        .as_ref()?
        .progress_deadline_seconds
        .filter(|s| *s != i32::MAX)
        .map(i64::from)
}

/// When the last progress plus the deadline is before `now`.
fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let (Some(deadline), Some(c)) = (progress_deadline(d), condition(status, PROGRESSING)) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => c.last_update_time.as_ref().is_some_and(|from| {
            from.0
                .checked_add(SignedDuration::from_secs(deadline))
                .is_ok_and(|until| until < now)
        }),
    }
}

fn desired(d: &Deployment) -> i64 {
    i64::from(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// One sync of one Deployment over working copies, as kube-controller-manager's
/// `syncDeployment`: each step reads what the steps before it wrote.
struct Sync<'a> {
    d: Deployment,
    original: &'a Deployment,
    /// The Deployment's ReplicaSets.
    sets: Vec<ReplicaSet>,
    /// Every ReplicaSet of the namespace (a new name may be taken by another's).
    namespace_sets: &'a [Arc<ReplicaSet>],
    pods: &'a [Arc<Pod>],
    /// maxSurge and maxUnavailable resolved for `spec.replicas`.
    fence: (i64, i64),
    /// Index in `sets` of the ReplicaSet this sync creates.
    created: Option<usize>,
    /// Indexes in `sets` this sync changed.
    updated: BTreeSet<usize>,
    now: Timestamp,
    plan: Plan,
}

/// The writes that sync Deployment `d`, given every ReplicaSet and Pod of its namespace, at
/// `now`. Pure.
pub fn plan(
    d: &Deployment,
    sets: &[Arc<ReplicaSet>],
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> Result<Plan, Error> {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let fence = fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired(d),
    )?;
    let mut sync = Sync {
        d: d.clone(),
        original: d,
        sets: Vec::new(),
        namespace_sets: sets,
        pods,
        fence,
        created: None,
        updated: BTreeSet::new(),
        // Condition times are whole seconds on the wire; keep them so in memory too.
        now: Timestamp::from_second(now.as_second()).unwrap_or(now),
        plan: Plan::default(),
    };
    let status = sync.d.status.get_or_insert_default();
    let selector = d.spec.as_ref().map(|s| &s.selector);
    let selects_all = selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    });
    if selects_all {
        let generation = d.metadata.generation.unwrap_or(0);
        if status.observed_generation.unwrap_or(0) < generation {
            status.observed_generation = Some(generation);
            sync.plan.events.push(Event {
                warning: true,
                reason: "SelectingAll",
                message: "This deployment is selecting all pods. A non-empty selector is required."
                    .to_owned(),
            });
        }
        return Ok(sync.finish());
    }
    sync.claim();
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if d.metadata.deletion_timestamp.is_some() {
        let new = sync.new_rs(false);
        sync.deployment_status(new);
    } else {
        sync.paused_conditions(paused);
        if paused || sync.is_scaling_event() {
            sync.sync_scaling(paused);
        } else if is_rolling(d) {
            sync.rolling();
        } else {
            sync.recreate();
        }
    }
    Ok(sync.finish())
}

impl Sync<'_> {
    fn desired(&self) -> i64 {
        desired(&self.d)
    }

    fn max_surge(&self) -> i64 {
        if is_rolling(&self.d) { self.fence.0 } else { 0 }
    }

    fn max_unavailable(&self) -> i64 {
        let desired = self.desired();
        if !is_rolling(&self.d) || desired == 0 {
            0
        } else {
            self.fence.1.min(desired)
        }
    }

    fn status(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_default()
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.d
            .spec
            .as_ref()
            .is_some_and(|s| selector_matches(&s.selector, labels))
    }

    /// Kubernetes' ControllerRefManager: owned and matching stays, owned and no longer
    /// matching is released, an orphan that matches is adopted (not while deleting).
    fn claim(&mut self) {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        for rs in self.namespace_sets {
            let matches = self.selects(rs.labels());
            match controller_uid(&rs.metadata) {
                Some(owner) if owner == uid => {
                    if matches {
                        self.sets.push(ReplicaSet::clone(rs));
                    } else if !deleting {
                        self.plan.release.push(rs.name_any());
                    }
                }
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    self.plan.adopt.push(rs.name_any());
                    self.sets.push(ReplicaSet::clone(rs));
                }
                _ => {}
            }
        }
    }

    fn template(&self) -> PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// The oldest ReplicaSet with the Deployment's template.
    fn find_new(&self) -> Option<usize> {
        let template = self.template();
        let mut order: Vec<usize> = (0..self.sets.len()).collect();
        order.sort_by(|a, b| by_creation(&self.sets[*a], &self.sets[*b]));
        order.into_iter().find(|i| {
            self.sets[*i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| same_template(t, &template))
        })
    }

    fn others(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != new).collect()
    }

    fn active(&self, indexes: impl IntoIterator<Item = usize>) -> Vec<usize> {
        indexes
            .into_iter()
            .filter(|i| spec_replicas(&self.sets[*i]) > 0)
            .collect()
    }

    fn sorted_by_creation(&self, mut indexes: Vec<usize>) -> Vec<usize> {
        indexes.sort_by(|a, b| by_creation(&self.sets[*a], &self.sets[*b]));
        indexes
    }

    fn sum(&self, indexes: &[usize], f: fn(&ReplicaSet) -> i64) -> i64 {
        indexes.iter().map(|i| f(&self.sets[*i])).sum()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.sets.len()).collect()
    }

    fn rs_name(&self, i: usize) -> String {
        self.sets[i].name_any()
    }

    fn set_revision(&mut self, revision: String) {
        self.d
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(REVISION.to_owned(), revision);
    }

    /// Kubernetes' `getNewReplicaSet`: the ReplicaSet with the Deployment's template, its
    /// annotations brought up to date, or (when `create`) a new one.
    fn new_rs(&mut self, create: bool) -> Option<usize> {
        let existing = self.find_new();
        let max_old = self
            .others(existing)
            .iter()
            .map(|i| revision(&self.sets[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = existing {
            let mut rs = self.sets[i].clone();
            let mut changed = set_new_rs_annotations(&self.d, &mut rs, new_revision, None);
            let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
            if spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                self.sets[i] = rs;
                self.updated.insert(i);
            }
            let served = self.sets[i]
                .annotations()
                .get(REVISION)
                .cloned()
                .unwrap_or_default();
            self.set_revision(served);
            if progress_deadline(&self.d).is_some()
                && condition(self.status(), PROGRESSING).is_none()
            {
                let message = format!("Found new replica set \"{}\"", self.rs_name(i));
                let c = new_condition(PROGRESSING, "True", reason::FOUND_NEW_RS, message, self.now);
                set_condition(self.status(), c);
            }
            return Some(i);
        }
        if !create {
            return None;
        }
        let collisions = self.status().collision_count;
        let template = self.template();
        let hash = template_hash(&template, collisions);
        let name = format!("{}-{hash}", self.d.name_any());
        if let Some(taken) = self.namespace_sets.iter().find(|rs| rs.name_any() == name) {
            let ours = controller_uid(&taken.metadata) == self.d.metadata.uid.as_deref();
            let same = taken
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| same_template(t, &template));
            // Ours with our template but not claimed (its labels were changed): leave it.
            if !(ours && same) {
                // Another template holds the name: a hash collision; the next sync
                // hashes with the count raised.
                let status = self.status();
                status.collision_count = Some(collisions.unwrap_or(0).saturating_add(1));
            }
            return None;
        }
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.to_owned(), hash.clone());
        let mut rs_template = template;
        rs_template.metadata.get_or_insert_default().labels = Some(labels.clone());
        let mut selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(HASH_LABEL.to_owned(), hash);
        let owner: Option<OwnerReference> =
            serde_json::from_value(controller_ref("apps/v1", "Deployment", &self.d.metadata)).ok();
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: owner.map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(rs_template),
            }),
            status: None,
        };
        let replicas_annotations = (self.desired(), self.desired() + self.max_surge());
        set_new_rs_annotations(&self.d, &mut rs, new_revision, Some(replicas_annotations));
        self.sets.push(rs);
        let i = self.sets.len() - 1;
        self.created = Some(i);
        let replicas = self.new_rs_new_replicas(i);
        set_spec_replicas(&mut self.sets[i], replicas);
        if replicas > 0 {
            self.event(
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        self.set_revision(new_revision.to_string());
        if progress_deadline(&self.d).is_some() {
            let message = format!("Created new replica set \"{name}\"");
            let c = new_condition(
                PROGRESSING,
                "True",
                reason::NEW_REPLICA_SET,
                message,
                self.now,
            );
            set_condition(self.status(), c);
        }
        Some(i)
    }

    fn event(&mut self, reason: &'static str, message: String) {
        self.plan.events.push(Event {
            warning: false,
            reason,
            message,
        });
    }

    /// How many replicas the new ReplicaSet may have now (Kubernetes' `NewRSNewReplicas`).
    fn new_rs_new_replicas(&self, new: usize) -> i64 {
        let desired = self.desired();
        if !is_rolling(&self.d) {
            return desired;
        }
        let current = self.sum(&self.all(), spec_replicas);
        let max_total = desired + self.fence.0;
        let new_replicas = spec_replicas(&self.sets[new]);
        if current >= max_total {
            return new_replicas;
        }
        new_replicas + (max_total - current).min(desired - new_replicas)
    }

    /// Scale one ReplicaSet and refresh its replica annotations; true if its size changed.
    fn scale_rs(&mut self, i: usize, to: i64, operation: &str) -> bool {
        let from = spec_replicas(&self.sets[i]);
        let desired = self.desired();
        let max = desired + self.max_surge();
        let mut rs = self.sets[i].clone();
        let annotations = set_replicas_annotations(&mut rs, desired, max);
        if from == to && !annotations {
            return false;
        }
        set_spec_replicas(&mut rs, to);
        self.sets[i] = rs;
        self.updated.insert(i);
        if from != to {
            let name = self.rs_name(i);
            self.event(
                "ScalingReplicaSet",
                format!("Scaled {operation} replica set {name} from {from} to {to}"),
            );
        }
        from != to
    }

    fn scale_and_record(&mut self, i: usize, to: i64) -> bool {
        let from = spec_replicas(&self.sets[i]);
        if from == to {
            return false;
        }
        self.scale_rs(i, to, if from < to { "up" } else { "down" })
    }

    fn rolling(&mut self) {
        let Some(new) = self.new_rs(true) else {
            return;
        };
        if self.reconcile_new(new) || self.reconcile_old(new) {
            self.rollout_status(Some(new));
            return;
        }
        if deployment_complete(
            &self.d,
            self.d
                .status
                .as_ref()
                .unwrap_or(&DeploymentStatus::default()),
        ) {
            self.cleanup(Some(new));
        }
        self.rollout_status(Some(new));
    }

    fn reconcile_new(&mut self, new: usize) -> bool {
        let desired = self.desired();
        let current = spec_replicas(&self.sets[new]);
        if current == desired {
            return false;
        }
        if current > desired {
            return self.scale_and_record(new, desired);
        }
        let to = self.new_rs_new_replicas(new);
        self.scale_and_record(new, to)
    }

    fn reconcile_old(&mut self, new: usize) -> bool {
        let old = self.active(self.others(Some(new)));
        if self.sum(&old, spec_replicas) == 0 {
            return false;
        }
        let all_pods = self.sum(&self.all(), spec_replicas);
        let min_available = self.desired() - self.fence.1;
        let new_unavailable = spec_replicas(&self.sets[new]) - available(&self.sets[new]);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let old = self.sorted_by_creation(old);
        let cleaned = self.cleanup_unhealthy(&old, max_scaled_down);
        let scaled = self.scale_down_old(new, &old);
        cleaned + scaled > 0
    }

    /// Old pods that are not available go first, oldest ReplicaSet first.
    fn cleanup_unhealthy(&mut self, old: &[usize], max: i64) -> i64 {
        let mut total = 0;
        for &i in old {
            if total >= max {
                break;
            }
            let replicas = spec_replicas(&self.sets[i]);
            let unhealthy = replicas - available(&self.sets[i]);
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let count = (max - total).min(unhealthy);
            self.scale_and_record(i, replicas - count);
            total += count;
        }
        total
    }

    /// Old replicas beyond what keeps `replicas - maxUnavailable` available, oldest first.
    fn scale_down_old(&mut self, new: usize, old: &[usize]) -> i64 {
        let min_available = self.desired() - self.max_unavailable();
        // An old ReplicaSet just scaled down may still report the pods it is removing as
        // available; it cannot keep more than its replicas, so count no more (a stricter
        // reading than kube-controller-manager's, which trusts the lagging status).
        let available_now = old
            .iter()
            .map(|i| available(&self.sets[*i]).min(spec_replicas(&self.sets[*i])))
            .sum::<i64>()
            + available(&self.sets[new]);
        if available_now <= min_available {
            return 0;
        }
        let to_scale_down = available_now - min_available;
        let mut total = 0;
        for &i in old {
            if total >= to_scale_down {
                break;
            }
            let replicas = spec_replicas(&self.sets[i]);
            if replicas == 0 {
                continue;
            }
            let count = replicas.min(to_scale_down - total);
            self.scale_and_record(i, replicas - count);
            total += count;
        }
        total
    }

    /// Recreate: every old ReplicaSet to 0, wait until their pods are gone, then the new.
    fn recreate(&mut self) {
        let new = self.new_rs(false);
        let mut scaled = false;
        for i in self.active(self.others(new)) {
            scaled |= self.scale_and_record(i, 0);
        }
        if scaled || self.old_pods_running(new) {
            self.rollout_status(new);
            return;
        }
        let Some(new) = new.or_else(|| self.new_rs(true)) else {
            return;
        };
        let desired = self.desired();
        self.scale_and_record(new, desired);
        if deployment_complete(
            &self.d,
            self.d
                .status
                .as_ref()
                .unwrap_or(&DeploymentStatus::default()),
        ) {
            self.cleanup(Some(new));
        }
        self.rollout_status(Some(new));
    }

    /// Whether pods of old ReplicaSets still exist (terminating ones included).
    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let old = self.others(new);
        if self.sum(&old, status_replicas) > 0 {
            return true;
        }
        let uids: BTreeSet<&str> = old
            .iter()
            .filter_map(|i| self.sets[*i].metadata.uid.as_deref())
            .collect();
        self.pods.iter().any(|p| {
            self.selects(p.labels())
                && controller_uid(&p.metadata).is_some_and(|u| uids.contains(u))
                && !is_finished(p)
        })
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for other replicas.
    fn is_scaling_event(&mut self) -> bool {
        // Brings the new ReplicaSet's annotations up to date, as Kubernetes does here.
        self.new_rs(false);
        let desired = self.desired();
        self.active(self.all()).iter().any(|i| {
            annotation_number(&self.sets[*i].metadata, DESIRED_REPLICAS)
                .is_some_and(|d| d != desired)
        })
    }

    /// Kubernetes' `sync`: scaling (also while paused) with no rollout progress.
    fn sync_scaling(&mut self, paused: bool) {
        let new = self.new_rs(false);
        self.scale(new);
        if paused {
            self.cleanup(new);
        }
        self.deployment_status(new);
    }

    fn active_or_latest(&self, new: Option<usize>) -> Option<usize> {
        let mut old = self.sorted_by_creation(self.others(new));
        old.reverse();
        if new.is_none() && old.is_empty() {
            return None;
        }
        let active = self.active(old.iter().copied().chain(new));
        match active.as_slice() {
            [] => new.or(old.first().copied()),
            [only] => Some(*only),
            _ => None,
        }
    }

    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.sets[i];
        let desired = self.desired();
        annotation_number(&rs.metadata, DESIRED_REPLICAS) == Some(desired)
            && spec_replicas(rs) == desired
            && available(rs) == desired
    }

    /// Kubernetes' `scale`, with its proportional rule for rollouts under way.
    fn scale(&mut self, new: Option<usize>) {
        let desired = self.desired();
        if let Some(i) = self.active_or_latest(new) {
            self.scale_and_record(i, desired);
            return;
        }
        if let Some(new) = new.filter(|n| self.is_saturated(*n)) {
            for i in self.active(self.others(Some(new))) {
                self.scale_and_record(i, 0);
            }
            return;
        }
        if !is_rolling(&self.d) {
            return;
        }
        let mut all = self.active(self.others(new).into_iter().chain(new));
        let allowed = if desired > 0 {
            desired + self.max_surge()
        } else {
            0
        };
        let to_add = allowed - self.sum(&all, spec_replicas);
        let newest_first = |a: &ReplicaSet, b: &ReplicaSet| by_creation(b, a);
        let operation = match to_add.cmp(&0) {
            Ordering::Greater => {
                // Largest first; among equals the newest.
                all.sort_by(|a, b| {
                    let (a, b) = (&self.sets[*a], &self.sets[*b]);
                    spec_replicas(b)
                        .cmp(&spec_replicas(a))
                        .then_with(|| newest_first(a, b))
                });
                "up"
            }
            Ordering::Less => {
                // Largest first; among equals the oldest.
                all.sort_by(|a, b| {
                    let (a, b) = (&self.sets[*a], &self.sets[*b]);
                    spec_replicas(b)
                        .cmp(&spec_replicas(a))
                        .then_with(|| by_creation(a, b))
                });
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for &i in &all {
            let proportion = self.proportion(i, to_add, added);
            sizes.push(spec_replicas(&self.sets[i]) + proportion);
            added += proportion;
        }
        for (k, &i) in all.iter().enumerate() {
            let mut size = sizes[k];
            if k == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(i, size, operation);
        }
    }

    /// This ReplicaSet's share of `to_add` (Kubernetes' `GetProportion`).
    fn proportion(&self, i: usize, to_add: i64, added: i64) -> i64 {
        let replicas = spec_replicas(&self.sets[i]);
        if replicas == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(i);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// `round(replicas × (spec.replicas + maxSurge) / max-replicas) − replicas`.
    fn fraction(&self, i: usize) -> i64 {
        let rs = &self.sets[i];
        let replicas = spec_replicas(rs);
        let desired = self.desired();
        if desired == 0 {
            return -replicas;
        }
        let deployment_replicas = desired + self.max_surge();
        let annotated = annotation_number(&rs.metadata, MAX_REPLICAS).unwrap_or_else(|| {
            i64::from(self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        });
        if annotated <= 0 {
            return 0;
        }
        // Rounded half up, in integers.
        (2 * replicas * deployment_replicas + annotated) / (2 * annotated) - replicas
    }

    /// Old ReplicaSets beyond `revisionHistoryLimit`, scaled to zero, lowest revision first.
    fn cleanup(&mut self, new: Option<usize>) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .others(new)
            .into_iter()
            .filter(|i| self.sets[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by(|a, b| {
            let (a, b) = (&self.sets[*a], &self.sets[*b]);
            revision(a)
                .cmp(&revision(b))
                .then_with(|| by_creation(a, b))
        });
        for &i in cleanable.iter().take(excess) {
            let rs = &self.sets[i];
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            let busy = status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed.unwrap_or(0)
                || self.updated.contains(&i);
            if !busy {
                self.plan
                    .delete
                    .push((rs.name_any(), rs.metadata.resource_version.clone()));
            }
        }
    }

    /// Kubernetes' `calculateStatus`.
    fn calculate_status(&self, new: Option<usize>) -> DeploymentStatus {
        let all = self.all();
        let available_now = self.sum(&all, available);
        let unavailable = (self.sum(&all, spec_replicas) - available_now).max(0);
        let int = |v: i64| Some(i32::try_from(v).unwrap_or(i32::MAX));
        let current = self.d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: int(self.sum(&all, status_replicas)),
            updated_replicas: int(new.map_or(0, |i| status_replicas(&self.sets[i]))),
            ready_replicas: int(self.sum(&all, ready)),
            available_replicas: int(available_now),
            unavailable_replicas: int(unavailable),
            collision_count: current.collision_count,
            conditions: current.conditions,
            terminating_replicas: current.terminating_replicas,
        };
        let c = if available_now >= self.desired() - self.max_unavailable() {
            new_condition(
                AVAILABLE,
                "True",
                reason::MINIMUM_AVAILABLE,
                "Deployment has minimum availability.".to_owned(),
                self.now,
            )
        } else {
            new_condition(
                AVAILABLE,
                "False",
                reason::MINIMUM_UNAVAILABLE,
                "Deployment does not have minimum availability.".to_owned(),
                self.now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// Kubernetes' `syncDeploymentStatus`: counts, no progress estimate.
    fn deployment_status(&mut self, new: Option<usize>) {
        self.d.status = Some(self.calculate_status(new));
    }

    /// Kubernetes' `syncRolloutStatus`: counts and the Progressing condition.
    fn rollout_status(&mut self, new: Option<usize>) {
        let mut status = self.calculate_status(new);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| condition(s, PROGRESSING))
            .cloned();
        let already_complete = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
        if deadline.is_some() && !already_complete {
            let subject = match new {
                Some(i) => format!("ReplicaSet \"{}\"", self.rs_name(i)),
                None => format!("Deployment \"{}\"", self.d.name_any()),
            };
            if deployment_complete(&self.d, &status) {
                let message = format!("{subject} has successfully progressed.");
                let c = new_condition(
                    PROGRESSING,
                    "True",
                    reason::NEW_RS_AVAILABLE,
                    message,
                    self.now,
                );
                set_condition(&mut status, c);
            } else if deployment_progressing(&self.d, &status) {
                let message = format!("{subject} is progressing.");
                let mut c = new_condition(
                    PROGRESSING,
                    "True",
                    reason::REPLICA_SET_UPDATED,
                    message,
                    self.now,
                );
                // Progress moves lastUpdateTime even when the reason stays the same.
                if let Some(current) = current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time;
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, self.now) {
                let message = format!("{subject} has timed out progressing.");
                let c = new_condition(PROGRESSING, "False", reason::TIMED_OUT, message, self.now);
                set_condition(&mut status, c);
            }
        }
        // ReplicaSets report no failure conditions here, so none is carried over.
        remove_condition(&mut status, REPLICA_FAILURE);
        self.plan.requeue = self.stuck_requeue(&status);
        self.d.status = Some(status);
    }

    /// When an unfinished rollout's progress deadline runs out, to mark it then.
    fn stuck_requeue(&self, status: &DeploymentStatus) -> Option<Duration> {
        let deadline = progress_deadline(&self.d)?;
        let c = condition(status, PROGRESSING)?;
        if matches!(
            c.reason.as_deref(),
            Some(reason::NEW_RS_AVAILABLE | reason::TIMED_OUT)
        ) || deployment_complete(&self.d, status)
        {
            return None;
        }
        let since = c.last_update_time.as_ref()?.0;
        let left = since
            .checked_add(SignedDuration::from_secs(deadline))
            .ok()?
            .duration_since(self.now);
        // A second past the deadline: "timed out" means strictly after it.
        Some(left.max(SignedDuration::ZERO).unsigned_abs() + Duration::from_secs(1))
    }

    /// Kubernetes' `checkPausedConditions`.
    fn paused_conditions(&mut self, paused: bool) {
        if progress_deadline(&self.d).is_none() {
            return;
        }
        let current = condition(self.status(), PROGRESSING).and_then(|c| c.reason.clone());
        if current.as_deref() == Some(reason::TIMED_OUT) {
            return;
        }
        let paused_recorded = current.as_deref() == Some(reason::PAUSED);
        let now = self.now;
        if paused && !paused_recorded {
            let c = new_condition(
                PROGRESSING,
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".to_owned(),
                now,
            );
            set_condition(self.status(), c);
        } else if !paused && paused_recorded {
            let c = new_condition(
                PROGRESSING,
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".to_owned(),
                now,
            );
            set_condition(self.status(), c);
        }
    }

    fn finish(mut self) -> Plan {
        let mut plan = std::mem::take(&mut self.plan);
        if let Some(i) = self.created {
            plan.create = Some(self.sets[i].clone());
        }
        plan.update = self
            .updated
            .iter()
            .filter(|i| Some(**i) != self.created)
            .map(|i| self.sets[*i].clone())
            .collect();
        let revision = self.d.annotations().get(REVISION);
        if revision != self.original.annotations().get(REVISION) {
            plan.revision = revision.cloned();
        }
        let comparable = |s: &Option<DeploymentStatus>| {
            let mut v = serde_json::to_value(s.clone().unwrap_or_default()).unwrap_or_default();
            prune(&mut v);
            v
        };
        if comparable(&self.d.status) != comparable(&self.original.status) {
            plan.status = self.d.status.take();
        }
        plan
    }
}

/// Deployments whose last sync failed, held back before the next try (doubling from 1 s to
/// a minute, as kube-controller-manager's rate-limited work queue does): a write that keeps
/// failing must not become a loop of failures, events and status writes.
#[derive(Debug, Default)]
struct Backoff {
    /// Failures in a row and when to try again, by Deployment uid.
    held: BTreeMap<String, (u32, Instant)>,
}

impl Backoff {
    /// `Err(wait)` while `uid` is held back at `now`.
    fn ready(&self, uid: &str, now: Instant) -> Result<(), Duration> {
        match self.held.get(uid) {
            Some((_, until)) if *until > now => Err(*until - now),
            _ => Ok(()),
        }
    }

    /// Another failure: how long `uid` is held back.
    fn failed(&mut self, uid: &str, now: Instant) -> Duration {
        let failures = self.held.get(uid).map_or(0, |(n, _)| *n) + 1;
        let wait = Duration::from_secs(1 << (failures - 1).min(6)).min(Duration::from_secs(60));
        self.held.insert(uid.to_owned(), (failures, now + wait));
        wait
    }

    fn succeeded(&mut self, uid: &str) {
        self.held.remove(uid);
    }
}

/// The name events and logs give a Deployment.
fn key(d: &Deployment) -> String {
    format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())
}

/// Watches Deployments, ReplicaSets and Pods and syncs each Deployment.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (deployments, w1) = cache(
        Api::<Deployment>::all(client.clone()),
        Default::default(),
        &changed,
        "deployments",
    );
    let (sets, w2) = cache(
        Api::<ReplicaSet>::all(client.clone()),
        Default::default(),
        &changed,
        "replicasets",
    );
    let (pods, w3) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let reconcile = async move {
        let _ = tokio::join!(
            deployments.wait_until_ready(),
            sets.wait_until_ready(),
            pods.wait_until_ready()
        );
        let mut backoff = Backoff::default();
        loop {
            let now = Timestamp::now();
            let mut sets_by_namespace: BTreeMap<String, Vec<Arc<ReplicaSet>>> = BTreeMap::new();
            for rs in sets.state() {
                sets_by_namespace
                    .entry(rs.namespace().unwrap_or_default())
                    .or_default()
                    .push(rs);
            }
            let mut pods_by_namespace: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
            for pod in pods.state() {
                pods_by_namespace
                    .entry(pod.namespace().unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            let mut next = Duration::from_secs(30);
            for d in deployments.state() {
                let uid = d.uid().unwrap_or_default();
                if let Err(wait) = backoff.ready(&uid, Instant::now()) {
                    next = next.min(wait);
                    continue;
                }
                let namespace = d.namespace().unwrap_or_default();
                let sets = sets_by_namespace
                    .get(&namespace)
                    .map_or(&[][..], Vec::as_slice);
                let pods = pods_by_namespace
                    .get(&namespace)
                    .map_or(&[][..], Vec::as_slice);
                let plan = match plan(&d, sets, pods, now) {
                    Ok(plan) => plan,
                    Err(error) => {
                        warn!(deployment = %key(&d), %error, "deployment not synced");
                        next = next.min(backoff.failed(&uid, Instant::now()));
                        continue;
                    }
                };
                if let Some(requeue) = plan.requeue {
                    next = next.min(requeue);
                }
                match carry_out(&client, &d, plan, now).await {
                    Ok(()) => backoff.succeeded(&uid),
                    Err(error) => {
                        warn!(deployment = %key(&d), %error, "deployment sync failed");
                        next = next.min(backoff.failed(&uid, Instant::now()));
                    }
                }
            }
            let _ = tokio::time::timeout(next, changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(w1, w2, w3, reconcile);
}

/// A 409 from a write made against what the cache showed: the watch will show the newer
/// state and the Deployment is planned again from it.
fn stale(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

async fn carry_out(
    client: &Client,
    d: &Deployment,
    plan: Plan,
    now: Timestamp,
) -> kube::Result<()> {
    let namespace = d.namespace().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let uid = d.uid().unwrap_or_default();
    if !plan.adopt.is_empty() || !plan.release.is_empty() {
        for (name, adopt) in plan
            .adopt
            .iter()
            .map(|n| (n, true))
            .chain(plan.release.iter().map(|n| (n, false)))
        {
            let rs = sets.get(name).await?;
            let mut owners: Vec<Value> = rs
                .owner_references()
                .iter()
                .filter(|o| o.uid != uid)
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect();
            if adopt {
                if controller_uid(&rs.metadata).is_some() {
                    continue;
                }
                owners.push(controller_ref("apps/v1", "Deployment", &d.metadata));
            }
            let patch = json!({"metadata": {
                "resourceVersion": rs.resource_version(), "ownerReferences": owners,
            }});
            match sets
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(deployment = %key(d), replicaset = %name, adopt, "replicaset claimed")
                }
                Err(e) if stale(&e) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    if let Some(rs) = &plan.create {
        match sets.create(&PostParams::default(), rs).await {
            Ok(created) => {
                info!(deployment = %key(d), replicaset = %created.name_any(), "replicaset created");
            }
            // The cache had not shown it yet (or another template holds the name, which the
            // next sync sees as a collision).
            Err(e) if stale(&e) => return Ok(()),
            Err(e) => {
                let message = format!(
                    "Failed to create new replica set \"{}\": {e}",
                    rs.name_any()
                );
                let mut status = d.status.clone().unwrap_or_default();
                if progress_deadline(d).is_some() {
                    let c = new_condition(
                        PROGRESSING,
                        "False",
                        reason::FAILED_RS_CREATE,
                        message.clone(),
                        now,
                    );
                    set_condition(&mut status, c);
                    let patch = json!({"status": status});
                    let _ = deployments
                        .patch_status(
                            &d.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await;
                }
                record(
                    client,
                    d,
                    &Event {
                        warning: true,
                        reason: reason::FAILED_RS_CREATE,
                        message,
                    },
                )
                .await;
                return Err(e);
            }
        }
    }
    for rs in &plan.update {
        let spec = rs.spec.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": rs.resource_version(), "annotations": rs.annotations()},
            "spec": {"replicas": spec.replicas, "minReadySeconds": spec.min_ready_seconds},
        });
        match sets
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if stale(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    for (name, resource_version) in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match sets.delete(name, &params).await {
            Ok(_) => info!(deployment = %key(d), replicaset = %name, "old replicaset deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let mut resource_version = d.resource_version();
    if let Some(revision) = &plan.revision {
        let patch = json!({"metadata": {
            "resourceVersion": resource_version, "annotations": {REVISION: revision},
        }});
        match deployments
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(done) => resource_version = done.resource_version(),
            Err(e) if stale(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    if let Some(status) = &plan.status {
        let patch = json!({"metadata": {"resourceVersion": resource_version}, "status": status});
        match deployments
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if stale(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    for event in &plan.events {
        record(client, d, event).await;
    }
    Ok(())
}

/// Record an Event on the Deployment; a failure is logged, never fatal.
async fn record(client: &Client, d: &Deployment, event: &Event) {
    let namespace = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let object = json!({
        "apiVersion": "v1", "kind": "Event",
        // Named as client-go's recorder names events: the object's name and a time in hex.
        "metadata": {"name": format!("{name}.{:x}", Timestamp::now().as_nanosecond()), "namespace": namespace},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                           "namespace": namespace, "uid": d.uid(),
                           "resourceVersion": d.resource_version()},
        "reason": event.reason, "message": event.message,
        "type": if event.warning { "Warning" } else { "Normal" },
        "source": {"component": "deployment-controller"}, "reportingComponent": "deployment-controller",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let created = match serde_json::from_value(object) {
        Ok(object) => events
            .create(&PostParams::default(), &object)
            .await
            .map(drop),
        Err(e) => Err(kube::Error::SerdeError(e)),
    };
    if let Err(error) = created {
        warn!(deployment = %key(d), %error, reason = event.reason, "event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00Z";

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    /// A Deployment of `replicas` pods of `image`, rolling with `surge`/`unavailable`.
    fn deployment(replicas: i32, image: &str, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(image), "revisionHistoryLimit": 10,
                     "progressDeadlineSeconds": 600,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}},
        }))
        .unwrap()
    }

    /// A ReplicaSet of `d` for `image`, as the controller would have made it.
    fn replica_set(
        d: &Deployment,
        image: &str,
        revision: i64,
        replicas: i32,
        created: &str,
    ) -> ReplicaSet {
        let template: PodTemplateSpec = serde_json::from_value(template(image)).unwrap();
        let hash = template_hash(&template, None);
        let mut labels = json!({"app": "web"});
        labels[HASH_LABEL] = json!(hash);
        let mut rs_template = serde_json::to_value(&template).unwrap();
        rs_template["metadata"]["labels"] = labels.clone();
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "namespace": "d", "uid": format!("uid-{hash}"),
                         "labels": labels, "creationTimestamp": created, "generation": 1,
                         "resourceVersion": "7",
                         "annotations": {REVISION: revision.to_string(),
                                         DESIRED_REPLICAS: desired(d).to_string()},
                         "ownerReferences": [controller_ref("apps/v1", "Deployment", &d.metadata)]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": rs_template},
            "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                       "observedGeneration": 1},
        }))
        .unwrap()
    }

    fn arcs(sets: &[ReplicaSet]) -> Vec<Arc<ReplicaSet>> {
        sets.iter().cloned().map(Arc::new).collect()
    }

    fn reasons(status: &DeploymentStatus, type_: &str) -> (String, String, String) {
        let c = condition(status, type_).expect("the condition");
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    }

    #[test]
    fn the_template_hash_is_stable_and_spelt_safely() {
        let a: PodTemplateSpec = serde_json::from_value(template("nginx:1")).unwrap();
        let b: PodTemplateSpec = serde_json::from_value(template("nginx:2")).unwrap();
        let hash = template_hash(&a, None);
        assert_eq!(hash, template_hash(&a.clone(), None));
        // Pinned: a change here renames every ReplicaSet of every Deployment on upgrade.
        assert_eq!(hash, "79bfd649dc");
        assert_ne!(hash, template_hash(&b, None));
        assert_ne!(hash, template_hash(&a, Some(1)));
        assert_ne!(template_hash(&a, Some(1)), template_hash(&a, Some(2)));
        assert!(
            hash.chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        let mut labelled = serde_json::to_value(&a).unwrap();
        labelled["metadata"]["labels"][HASH_LABEL] = json!(hash);
        labelled["spec"]["volumes"] = json!([]);
        assert!(same_template(
            &serde_json::from_value(labelled).unwrap(),
            &a
        ));
        assert!(!same_template(&a, &b));
    }

    #[test]
    fn surge_rounds_up_unavailable_down_and_both_zero_means_one_unavailable() {
        let i = IntOrString::Int;
        let p = |s: &str| IntOrString::String(s.to_owned());
        assert_eq!(fenceposts(Some(&p("25%")), Some(&p("25%")), 10), Ok((3, 2)));
        assert_eq!(fenceposts(Some(&p("25%")), Some(&p("25%")), 1), Ok((1, 0)));
        assert_eq!(fenceposts(Some(&i(0)), Some(&i(0)), 4), Ok((0, 1)));
        assert_eq!(fenceposts(Some(&p("0%")), Some(&p("10%")), 4), Ok((0, 1)));
        assert_eq!(fenceposts(Some(&i(2)), Some(&p("50%")), 5), Ok((2, 2)));
        assert_eq!(fenceposts(None, None, 4), Ok((1, 1)));
        assert_eq!(
            fenceposts(Some(&p("lots")), None, 4),
            Err(Error::IntOrPercent {
                field: "maxSurge",
                value: "lots".into()
            })
        );
    }

    /// Play a rollout to the end: after each plan the ReplicaSets take their new sizes at
    /// once (removed pods stop being available at once), the plan's invariants are checked,
    /// then new pods become available. Returns the ReplicaSets at the end.
    fn roll_out(mut d: Deployment, mut sets: Vec<ReplicaSet>) -> Vec<ReplicaSet> {
        let replicas = desired(&d);
        let (surge, unavailable) = {
            let r = d.spec.as_ref().unwrap().strategy.as_ref().unwrap();
            let r = r.rolling_update.as_ref().unwrap();
            fenceposts(r.max_surge.as_ref(), r.max_unavailable.as_ref(), replicas).unwrap()
        };
        for step in 0..100 {
            let now = at(T0) + SignedDuration::from_secs(step);
            let plan = plan(&d, &arcs(&sets), &[], now).unwrap();
            if let Some(created) = plan.create {
                let mut created = created;
                created.metadata.creation_timestamp = Some(Time(now));
                created.metadata.uid = Some(format!("uid-{step}"));
                sets.push(created);
            }
            for updated in plan.update {
                let i = sets
                    .iter()
                    .position(|s| s.metadata.name == updated.metadata.name)
                    .unwrap();
                sets[i] = updated;
            }
            for rs in &mut sets {
                let status = rs.status.get_or_insert_default();
                let spec = rs.spec.as_ref().unwrap().replicas.unwrap();
                status.replicas = spec;
                status.available_replicas = Some(status.available_replicas.unwrap_or(0).min(spec));
            }
            let total: i64 = sets.iter().map(spec_replicas).sum();
            let up: i64 = sets.iter().map(available).sum();
            assert!(total <= replicas + surge, "step {step}: {total} pods");
            assert!(up >= replicas - unavailable, "step {step}: {up} available");
            for rs in &mut sets {
                let status = rs.status.get_or_insert_default();
                status.available_replicas = Some(status.replicas);
                status.ready_replicas = Some(status.replicas);
            }
            if let Some(status) = plan.status {
                d.status = Some(status);
            }
            if let Some(revision) = plan.revision {
                d.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(REVISION.into(), revision);
            }
            let done = d
                .status
                .as_ref()
                .and_then(|s| condition(s, PROGRESSING))
                .and_then(|c| c.reason.clone());
            if done.as_deref() == Some(reason::NEW_RS_AVAILABLE) {
                return sets;
            }
        }
        panic!("the rollout did not finish: {sets:?}");
    }

    #[test]
    fn rolling_updates_stay_within_surge_and_unavailability() {
        for (surge, unavailable) in [
            (json!(1), json!(0)),
            (json!(0), json!(1)),
            (json!("25%"), json!("25%")),
            (json!(2), json!(2)),
            (json!("100%"), json!(0)),
            (json!(0), json!(0)),
        ] {
            let old = deployment(4, "nginx:1", surge.clone(), unavailable.clone());
            let sets = vec![replica_set(&old, "nginx:1", 1, 4, T0)];
            let d = deployment(4, "nginx:2", surge.clone(), unavailable.clone());
            let end = roll_out(d, sets);
            let sizes: Vec<i64> = end.iter().map(spec_replicas).collect();
            assert_eq!(sizes, [0, 4], "surge {surge}, unavailable {unavailable}");
            assert_eq!(end[1].annotations()[REVISION], "2");
        }
    }

    #[test]
    fn the_first_step_of_a_rolling_update() {
        let old = deployment(4, "nginx:1", json!(1), json!(0));
        let sets = arcs(&[replica_set(&old, "nginx:1", 1, 4, T0)]);
        let mut d = deployment(4, "nginx:2", json!(1), json!(0));
        d.status = Some(
            serde_json::from_value(json!({"observedGeneration": 1, "replicas": 4,
                "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4}))
            .unwrap(),
        );
        let p = plan(&d, &sets, &[], at(T0)).unwrap();
        let new = p.create.expect("a new ReplicaSet");
        let hash = new.labels()[HASH_LABEL].clone();
        assert_eq!(new.name_any(), format!("web-{hash}"));
        assert_eq!(new.spec.as_ref().unwrap().replicas, Some(1));
        let spec = new.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[HASH_LABEL],
            hash
        );
        let template_labels = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref();
        assert_eq!(template_labels.unwrap()[HASH_LABEL], hash);
        assert_eq!(controller_uid(&new.metadata), Some("d-uid"));
        assert_eq!(new.annotations()[REVISION], "2");
        assert_eq!(new.annotations()[DESIRED_REPLICAS], "4");
        assert_eq!(new.annotations()[MAX_REPLICAS], "5");
        assert!(
            p.update.is_empty(),
            "nothing old goes before the new pod is up"
        );
        assert_eq!(p.revision.as_deref(), Some("2"));
        let status = p.status.unwrap();
        assert_eq!(
            reasons(&status, PROGRESSING),
            (
                "True".into(),
                "NewReplicaSetCreated".into(),
                format!("Created new replica set \"web-{hash}\"")
            )
        );
        assert_eq!(reasons(&status, AVAILABLE).1, "MinimumReplicasAvailable");
        assert_eq!(
            p.events[0].message,
            format!("Scaled up replica set web-{hash} from 0 to 1")
        );
    }

    #[test]
    fn recreate_scales_old_to_zero_and_waits_for_their_pods() {
        let recreate = |image: &str| {
            let mut d = deployment(3, image, json!(1), json!(0));
            d.spec.as_mut().unwrap().strategy =
                serde_json::from_value(json!({"type": "Recreate"})).unwrap();
            d
        };
        let old = replica_set(&recreate("nginx:1"), "nginx:1", 1, 3, T0);
        let d = recreate("nginx:2");
        let p = plan(&d, &arcs(std::slice::from_ref(&old)), &[], at(T0)).unwrap();
        assert!(p.create.is_none());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].spec.as_ref().unwrap().replicas, Some(0));

        // Scaled to zero, but a pod is still terminating: still no new ReplicaSet.
        let mut scaled = p.update[0].clone();
        scaled.status.as_mut().unwrap().replicas = 0;
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "old-1", "namespace": "d", "labels": {"app": "web"},
                         "deletionTimestamp": T0,
                         "ownerReferences": [controller_ref("apps/v1", "ReplicaSet", &old.metadata)]},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        let sets = arcs(&[scaled]);
        let p = plan(&d, &sets, &[Arc::new(pod)], at(T0)).unwrap();
        assert!(p.create.is_none() && p.update.is_empty());

        // The pods are gone: the new ReplicaSet comes with every replica at once.
        let p = plan(&d, &sets, &[], at(T0)).unwrap();
        assert_eq!(p.create.unwrap().spec.unwrap().replicas, Some(3));
    }

    #[test]
    fn a_rollback_gives_the_old_replica_set_the_next_revision() {
        let mut d = deployment(2, "nginx:1", json!(1), json!(0));
        d.metadata.annotations = Some(BTreeMap::from([
            (REVISION.to_owned(), "2".to_owned()),
            ("kubernetes.io/change-cause".to_owned(), "undo".to_owned()),
        ]));
        let first = replica_set(&d, "nginx:1", 1, 0, T0);
        let second = replica_set(&d, "nginx:2", 2, 2, "2026-01-01T00:01:00Z");
        let p = plan(&d, &arcs(&[first.clone(), second]), &[], at(T0)).unwrap();
        let back = p
            .update
            .iter()
            .find(|rs| rs.metadata.name == first.metadata.name)
            .unwrap();
        assert_eq!(back.annotations()[REVISION], "3");
        assert_eq!(back.annotations()[REVISION_HISTORY], "1");
        assert_eq!(back.annotations()["kubernetes.io/change-cause"], "undo");
        assert_eq!(p.revision.as_deref(), Some("3"));

        // Brought up within maxSurge like any new ReplicaSet.
        assert_eq!(back.spec.as_ref().unwrap().replicas, Some(1));

        // Served 1, then 3, now back as 7: the history keeps both.
        let mut again = back.clone();
        assert!(set_new_rs_annotations(&d, &mut again, 7, None));
        assert_eq!(again.annotations()[REVISION], "7");
        assert_eq!(again.annotations()[REVISION_HISTORY], "1,3");
        assert!(!set_new_rs_annotations(&d, &mut again, 7, None), "settled");
    }

    #[test]
    fn history_beyond_the_limit_goes_lowest_revision_first() {
        let mut d = deployment(2, "nginx:9", json!(1), json!(0));
        d.spec.as_mut().unwrap().revision_history_limit = Some(2);
        d.status = Some(serde_json::from_value(json!({
            "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}))
        .unwrap());
        let mut sets: Vec<ReplicaSet> = (1..=5)
            .map(|r| {
                replica_set(
                    &d,
                    &format!("nginx:{r}"),
                    r,
                    0,
                    &format!("2026-01-01T00:0{r}:00Z"),
                )
            })
            .collect();
        // Revision 2 still has a pod: it stays, though beyond the limit.
        sets[1].status.as_mut().unwrap().replicas = 1;
        sets.push(replica_set(&d, "nginx:9", 6, 2, "2026-01-01T00:09:00Z"));
        let p = plan(&d, &arcs(&sets), &[], at(T0)).unwrap();
        let deleted: Vec<&str> = p.delete.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(deleted, [sets[0].name_any(), sets[2].name_any()]);
        assert_eq!(p.delete[0].1.as_deref(), Some("7"));
    }

    #[test]
    fn progress_is_reported_then_a_deadline_exceeded() {
        let mut d = deployment(2, "nginx:2", json!(1), json!(0));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
        let mut new = replica_set(&d, "nginx:2", 1, 2, T0);
        new.status = Some(
            serde_json::from_value(
                json!({"replicas": 2, "readyReplicas": 0, "availableReplicas": 0}),
            )
            .unwrap(),
        );
        d.status = Some(serde_json::from_value(json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
                            "lastUpdateTime": T0, "lastTransitionTime": T0}]})).unwrap());
        let sets = arcs(&[new]);
        // More updated pods than the status said: progress, with a fresh update time.
        let p = plan(&d, &sets, &[], at("2026-01-01T00:00:30Z")).unwrap();
        let status = p.status.unwrap();
        let name = sets[0].name_any();
        assert_eq!(
            reasons(&status, PROGRESSING),
            (
                "True".into(),
                "ReplicaSetUpdated".into(),
                format!("ReplicaSet \"{name}\" is progressing.")
            )
        );
        assert_eq!(
            reasons(&status, AVAILABLE),
            (
                "False".into(),
                "MinimumReplicasUnavailable".into(),
                "Deployment does not have minimum availability.".into()
            )
        );
        assert_eq!(p.requeue, Some(Duration::from_secs(61)));

        // Nothing moves for longer than the deadline.
        d.status = Some(status);
        let p = plan(&d, &sets, &[], at("2026-01-01T00:01:31Z")).unwrap();
        let status = p.status.unwrap();
        assert_eq!(
            reasons(&status, PROGRESSING),
            (
                "False".into(),
                "ProgressDeadlineExceeded".into(),
                format!("ReplicaSet \"{name}\" has timed out progressing.")
            )
        );
        assert_eq!(p.requeue, None);
    }

    #[test]
    fn a_paused_deployment_scales_but_does_not_roll_out() {
        let old = deployment(2, "nginx:1", json!(1), json!(0));
        let sets = arcs(&[replica_set(&old, "nginx:1", 1, 2, T0)]);
        let mut d = deployment(3, "nginx:2", json!(1), json!(0));
        d.spec.as_mut().unwrap().paused = Some(true);
        let p = plan(&d, &sets, &[], at(T0)).unwrap();
        assert!(p.create.is_none());
        assert_eq!(p.update[0].spec.as_ref().unwrap().replicas, Some(3));
        assert_eq!(p.update[0].annotations()[DESIRED_REPLICAS], "3");
        let status = p.status.unwrap();
        assert_eq!(
            reasons(&status, PROGRESSING),
            (
                "Unknown".into(),
                "DeploymentPaused".into(),
                "Deployment is paused".into()
            )
        );
        // Resumed: the rollout starts, the condition says so first.
        d.spec.as_mut().unwrap().paused = Some(false);
        d.status = Some(status);
        let sets = arcs(&p.update);
        let p = plan(&d, &sets, &[], at(T0)).unwrap();
        assert_eq!(p.create.unwrap().spec.unwrap().replicas, Some(1));
        assert_eq!(
            reasons(&p.status.unwrap(), PROGRESSING).1,
            "NewReplicaSetCreated"
        );
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 replicas, surge 3: old 8 and new 5 (13 = 10 + 3), then scaled to 20 (surge 5).
        let before = deployment(10, "nginx:1", json!(3), json!(2));
        let mut old = replica_set(&before, "nginx:1", 1, 8, T0);
        let mut new = replica_set(&before, "nginx:2", 2, 5, "2026-01-01T00:01:00Z");
        for rs in [&mut old, &mut new] {
            let a = rs.metadata.annotations.as_mut().unwrap();
            a.insert(MAX_REPLICAS.into(), "13".into());
        }
        new.status.as_mut().unwrap().available_replicas = Some(0);
        let d = deployment(20, "nginx:2", json!(5), json!(2));
        let p = plan(&d, &arcs(&[old, new]), &[], at(T0)).unwrap();
        let sizes: BTreeMap<String, i32> = p
            .update
            .iter()
            .map(|rs| {
                (
                    rs.annotations()[REVISION].clone(),
                    rs.spec.as_ref().unwrap().replicas.unwrap(),
                )
            })
            .collect();
        // 25 allowed: old 8×25/13 = 15.4 → 15, new 5×25/13 = 9.6 → 10.
        assert_eq!(sizes, BTreeMap::from([("1".into(), 15), ("2".into(), 10)]));
        assert!(
            p.update
                .iter()
                .all(|rs| rs.annotations()[DESIRED_REPLICAS] == "20")
        );
    }

    #[test]
    fn failing_deployments_are_held_back_longer_each_time() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        assert_eq!(backoff.ready("a", start), Ok(()));
        assert_eq!(backoff.failed("a", start), Duration::from_secs(1));
        assert_eq!(backoff.ready("a", start), Err(Duration::from_secs(1)));
        assert_eq!(backoff.ready("b", start), Ok(()), "others go on");
        assert_eq!(backoff.failed("a", start), Duration::from_secs(2));
        for _ in 0..10 {
            backoff.failed("a", start);
        }
        assert_eq!(backoff.failed("a", start), Duration::from_secs(60));
        assert_eq!(backoff.ready("a", start + Duration::from_secs(61)), Ok(()));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a", start), Duration::from_secs(1));
    }

    #[test]
    fn orphans_are_adopted_and_strays_released() {
        let d = deployment(1, "nginx:1", json!(1), json!(0));
        let mut orphan = replica_set(&d, "nginx:1", 1, 1, T0);
        orphan.metadata.owner_references = None;
        let mut stray = replica_set(&d, "nginx:0", 0, 0, T0);
        stray.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "other".to_owned())]));
        let p = plan(&d, &arcs(&[orphan.clone(), stray.clone()]), &[], at(T0)).unwrap();
        assert_eq!(p.adopt, [orphan.name_any()]);
        assert_eq!(p.release, [stray.name_any()]);
    }
}
