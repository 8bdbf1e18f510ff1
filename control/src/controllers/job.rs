//! The Job controller, as kube-controller-manager's: each Job runs pods from its template
//! until `completions` of them succeed (NonIndexed), or one pod per completion index
//! succeeds (Indexed), at most `parallelism` at a time; it fails once more than
//! `backoffLimit` pods have failed or once it has been active for `activeDeadlineSeconds`.
//! Kubernetes 1.31's terminal sequence is kept: `SuccessCriteriaMet` or `FailureTarget`
//! first, remaining pods deleted, then `Complete` or `Failed` once none is left running.
//! `suspend` deletes the running pods and holds the Job; `ttlSecondsAfterFinished`
//! deletes a finished Job (background propagation: the garbage collector removes its pods),
//! the TTL-after-finished controller's job, folded in here.
//!
//! Differences from kube-controller-manager, on purpose:
//! - No `batch.kubernetes.io/job-tracking` finalizer. Counts come from the pods that exist,
//!   never below what the status already says (a finished pod removed early is not lost;
//!   one removed and replaced by a new finish can be under-counted).
//! - Retries back off exponentially from 1 s, not 10 s (capped at 6 minutes, as
//!   Kubernetes): a crash-looping Job still slows down, and a short Job retries promptly.
//! - No `podFailurePolicy`, `successPolicy`, `backoffLimitPerIndex`, slow-start batches or
//!   orphan adoption (the API server generates a selector on the Job's own uid, so only
//!   pods it created match).
//!
//! The plan is pure ([`plan`]); [`run`] watches Jobs and Pods and carries it out.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    batch::v1::{Job, JobCondition},
    core::v1::Pod,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::pods::{
    self, Expectations, controller_ref, controller_uid, is_active, is_finished, is_ready, phase,
};

/// The component name on events.
const NAME: &str = "job-controller";
/// Label (and, legacy unprefixed, its twin) with the Job's uid on its pods.
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Label with the Job's name on its pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Annotation and label with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// First retry delay after a failure; doubles with each consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay (Kubernetes' `MaxJobPodFailureBackOff` of old).
pub const BACKOFF_CAP: Duration = Duration::from_secs(360);
/// Pods created or deleted per Job per pass (kube-controller-manager's
/// `MaxPodCreateDeletePerSync`).
const MAX_PER_SYNC: usize = 500;
/// Longest generateName base kube-apiserver keeps (63 minus the random suffix).
const MAX_GENERATE_BASE: usize = 58;

/// What to do for one Job.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create: `None` for a NonIndexed Job, the completion index otherwise.
    pub create: Vec<Option<u32>>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// The status to write, when it changed.
    pub status: Option<Value>,
    /// Events to record on the Job.
    pub events: Vec<Event>,
    /// When to look at the Job again though nothing changes (backoff, deadline, TTL).
    pub requeue: Option<Duration>,
    /// `ttlSecondsAfterFinished` has passed: delete the Job.
    pub delete_job: bool,
}

/// An event to record on the Job.
#[derive(Debug, PartialEq)]
pub struct Event {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Kubernetes' reason, e.g. `BackoffLimitExceeded`.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// How the Job is ending, once it is.
#[derive(Clone, Debug, PartialEq)]
enum Ending {
    Success,
    Failure { reason: String, message: String },
}

const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";
const COMPLETED_MESSAGE: &str = "Reached expected number of succeeded pods";

/// The time a Job finished (its Complete or Failed condition), if it has.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    Some(
        status
            .completion_time
            .as_ref()
            .or(condition.last_transition_time.as_ref())
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

/// Whether the Job finished with the given condition type (`Complete` or `Failed`).
pub fn finished_as(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn condition<'a>(conditions: &'a [JobCondition], kind: &str) -> Option<&'a JobCondition> {
    conditions
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
}

/// The Job's conditions as JSON, changed one condition at a time.
struct Conditions {
    list: Vec<Value>,
    now: String,
}

impl Conditions {
    /// Sets condition `kind`; true if it changed. A False condition absent stays absent,
    /// as Kubernetes never adds one (a Job never suspended has no Suspended condition).
    fn set(&mut self, kind: &str, status: &str, reason: &str, message: &str) -> bool {
        let fresh = json!({"type": kind, "status": status, "reason": reason, "message": message,
                           "lastProbeTime": self.now, "lastTransitionTime": self.now});
        match self.list.iter_mut().find(|c| c["type"] == kind) {
            Some(c)
                if c["status"] == status && c["reason"] == reason && c["message"] == message =>
            {
                false
            }
            Some(c) => {
                *c = fresh;
                true
            }
            None if status == "False" => false,
            None => {
                self.list.push(fresh);
                true
            }
        }
    }
}

/// Second-precision RFC 3339, as Kubernetes writes times.
fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The completion index a pod carries (annotation, else label).
pub fn pod_index(pod: &Pod) -> Option<u32> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| pod.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
}

/// Parses `status.completedIndexes` ("1,3-5,7"); malformed parts are skipped.
pub fn parse_indexes(text: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats indexes as Kubernetes does: runs of three or more as "a-b", pairs as "a,b".
pub fn format_indexes(indexes: &BTreeSet<u32>) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(i) => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(first, last)| match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// When a finished pod finished: its containers' latest finish, else when it was deleted
/// (its deletion timestamp less the grace period), else its creation time.
fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten();
    containers
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| {
            let deadline = pod.metadata.deletion_timestamp.as_ref()?.0;
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            deadline.checked_sub(SignedDuration::from_secs(grace)).ok()
        })
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// How long until the next pod may start after consecutive failures: failures since the
/// last success count, each doubling the wait from the latest failure.
pub fn backoff_remaining(succeeded: &[&Pod], failed: &[&Pod], now: Timestamp) -> Option<Duration> {
    let last_success = succeeded.iter().filter_map(|p| finish_time(p)).max();
    let failures: Vec<Timestamp> = failed
        .iter()
        .filter_map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let latest = failures.iter().max()?;
    let exponent = u32::try_from(failures.len() - 1)
        .unwrap_or(u32::MAX)
        .min(16);
    let delay = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    let ready_at = latest
        .checked_add(SignedDuration::try_from(delay).ok()?)
        .ok()?;
    let left = ready_at.duration_since(now);
    left.is_positive().then(|| left.unsigned_abs())
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn nonnegative(n: Option<i32>, default: i32) -> usize {
    usize::try_from(n.unwrap_or(default)).unwrap_or(0)
}

/// The plan for `job` given the pods of its namespace, at `now`. Pure.
pub fn plan(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = job.spec.as_ref() else {
        return plan;
    };
    if job.metadata.deletion_timestamp.is_some()
        || spec
            .managed_by
            .as_deref()
            .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return plan;
    }
    if let Some(finished) = finished_at(job) {
        // Finished Jobs are left alone but for their time to live.
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let expires = finished
                .checked_add(SignedDuration::from_secs(ttl.into()))
                .unwrap_or(finished);
            let left = expires.duration_since(now);
            if left.is_positive() {
                plan.requeue = Some(left.unsigned_abs());
            } else {
                plan.delete_job = true;
            }
        }
        return plan;
    }
    let uid = job.uid().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let owned: Vec<&Pod> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| controller_uid(&p.metadata) == Some(uid.as_str()))
        .collect();
    let suspended = spec.suspend == Some(true);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let completions = spec.completions.map(|c| u32::try_from(c).unwrap_or(0));
    let parallelism = nonnegative(spec.parallelism, 1);
    let backoff_limit = nonnegative(spec.backoff_limit, 6);

    let active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let terminating: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !is_finished(p))
        .collect();
    // A pod deleted before it finished counts as failed (an orphan never reaches Failed),
    // unless only Failed pods are replaced or the deletion is the suspension's.
    let failed_pods: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| {
            phase(p) == "Failed"
                || (!only_failed
                    && !suspended
                    && p.metadata.deletion_timestamp.is_some()
                    && phase(p) != "Succeeded")
        })
        .collect();
    let succeeded_pods: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| phase(p) == "Succeeded")
        .collect();
    let mut failed = failed_pods.len().max(nonnegative(status.failed, 0));
    let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    if indexed {
        let limit = completions.unwrap_or(0);
        completed.extend(
            succeeded_pods
                .iter()
                .filter_map(|p| pod_index(p))
                .filter(|i| *i < limit),
        );
    }
    let succeeded = if indexed {
        completed.len()
    } else {
        succeeded_pods.len().max(nonnegative(status.succeeded, 0))
    };

    let mut conditions = Conditions {
        list: status
            .conditions
            .iter()
            .flatten()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect(),
        now: stamp(now),
    };
    let mut start_time = status.start_time.as_ref().map(|t| t.0);
    if start_time.is_none() && !suspended {
        start_time = Some(now);
    }
    let existing = status.conditions.as_deref().unwrap_or(&[]);
    let mut ending = if let Some(c) = condition(existing, "FailureTarget") {
        Some(Ending::Failure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        })
    } else if condition(existing, "SuccessCriteriaMet").is_some() {
        Some(Ending::Success)
    } else {
        None
    };

    if ending.is_none() {
        // With restartPolicy OnFailure, restarts in place count toward the limit too.
        let on_failure = spec
            .template
            .spec
            .as_ref()
            .is_some_and(|s| s.restart_policy.as_deref() == Some("OnFailure"));
        let restarts: usize = if on_failure {
            active
                .iter()
                .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
                .flatten()
                .map(|c| usize::try_from(c.restart_count).unwrap_or(0))
                .sum()
        } else {
            0
        };
        let deadline = spec
            .active_deadline_seconds
            .zip(start_time)
            .filter(|_| !suspended)
            .and_then(|(secs, start)| start.checked_add(SignedDuration::from_secs(secs)).ok());
        if failed + restarts > backoff_limit {
            ending = Some(Ending::Failure {
                reason: "BackoffLimitExceeded".to_owned(),
                message: BACKOFF_MESSAGE.to_owned(),
            });
        } else if deadline.is_some_and(|d| d <= now) {
            ending = Some(Ending::Failure {
                reason: "DeadlineExceeded".to_owned(),
                message: DEADLINE_MESSAGE.to_owned(),
            });
        } else {
            let done = match completions {
                Some(c) => succeeded >= c as usize,
                None => succeeded > 0 && active.is_empty(),
            };
            if done {
                ending = Some(Ending::Success);
            } else if let Some(deadline) = deadline {
                plan.requeue = Some(deadline.duration_since(now).unsigned_abs());
            }
        }
        match &ending {
            Some(Ending::Failure { reason, message }) => {
                conditions.set("FailureTarget", "True", reason, message);
            }
            Some(Ending::Success) => {
                conditions.set(
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    COMPLETED_MESSAGE,
                );
            }
            None => {}
        }
    }

    let mut completion_time = status.completion_time.as_ref().map(|t| t.0);
    let mut created = 0;
    if let Some(ending) = &ending {
        // Ending: what still runs is stopped, and counts as failed, as in Kubernetes.
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        failed += active.len();
        if active.is_empty() && terminating.is_empty() {
            let (kind, reason, message) = match ending {
                Ending::Success => ("Complete", "CompletionsReached", COMPLETED_MESSAGE),
                Ending::Failure { reason, message } => {
                    ("Failed", reason.as_str(), message.as_str())
                }
            };
            if conditions.set(kind, "True", reason, message) {
                plan.events.push(match ending {
                    Ending::Success => Event {
                        warning: false,
                        reason: "Completed",
                        message: "Job completed".to_owned(),
                    },
                    Ending::Failure { reason, message } => Event {
                        warning: true,
                        reason: if reason == "DeadlineExceeded" {
                            "DeadlineExceeded"
                        } else {
                            "BackoffLimitExceeded"
                        },
                        message: message.clone(),
                    },
                });
            }
            if *ending == Ending::Success {
                completion_time = Some(now);
            }
            if let Some(ttl) = spec.ttl_seconds_after_finished {
                plan.requeue = Some(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
            }
        }
    } else if suspended {
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        if conditions.set("Suspended", "True", "JobSuspended", "Job suspended") {
            plan.events.push(Event {
                warning: false,
                reason: "Suspended",
                message: "Job suspended".to_owned(),
            });
        }
    } else {
        if conditions.set("Suspended", "False", "JobResumed", "Job resumed") {
            // activeDeadlineSeconds counts the time a Job is continuously active.
            start_time = Some(now);
            plan.events.push(Event {
                warning: false,
                reason: "Resumed",
                message: "Job resumed".to_owned(),
            });
        }
        let (create, delete) = if indexed {
            manage_indexed(
                &active,
                &terminating,
                &completed,
                completions.unwrap_or(0),
                parallelism,
                only_failed,
            )
        } else {
            let want = match completions {
                Some(c) => parallelism.min((c as usize).saturating_sub(succeeded)),
                // A work queue: once one pod succeeded no more start.
                None if succeeded > 0 => active.len(),
                None => parallelism,
            };
            let in_flight = active.len() + if only_failed { terminating.len() } else { 0 };
            let create = vec![None; want.saturating_sub(in_flight)];
            (
                create,
                least_valuable(&active, active.len().saturating_sub(want)),
            )
        };
        plan.delete = delete;
        if !create.is_empty() {
            match backoff_remaining(&succeeded_pods, &failed_pods, now) {
                Some(wait) => plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait))),
                None => plan.create = create,
            }
        }
        plan.create.truncate(MAX_PER_SYNC);
        created = plan.create.len();
    }
    plan.delete.truncate(MAX_PER_SYNC);
    if !suspended && ending.is_none() {
        // Pods deleted as excess count as failed when they go, as above; say so now.
        failed += plan.delete.len();
    }

    let deleted: BTreeSet<&str> = plan.delete.iter().map(String::as_str).collect();
    let still_active = active
        .iter()
        .filter(|p| !deleted.contains(p.name_any().as_str()));
    let ready = still_active.clone().filter(|p| is_ready(p)).count();
    let mut new_status = json!({
        "active": count(still_active.count() + created),
        "ready": count(ready),
        "succeeded": count(succeeded),
        "failed": count(failed),
        "terminating": count(terminating.len() + plan.delete.len()),
        "startTime": start_time.map(stamp),
        "completionTime": completion_time.map(stamp),
        "conditions": conditions.list,
    });
    if indexed {
        new_status["completedIndexes"] = json!(format_indexes(&completed));
    }
    let current = serde_json::to_value(&status).unwrap_or_default();
    let changed = new_status.as_object().is_some_and(|want| {
        want.iter().any(|(k, v)| {
            let now = current.get(k).unwrap_or(&Value::Null);
            now != v && !(v == &json!(0) && now.is_null())
        })
    });
    if changed {
        plan.status = Some(new_status);
    }
    plan
}

/// The `n` pods to delete first: unscheduled, then not ready, then the newest.
fn least_valuable(active: &[&Pod], n: usize) -> Vec<String> {
    let mut ranked = active.to_vec();
    ranked.sort_by_key(|p| {
        let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (scheduled, is_ready(p), std::cmp::Reverse(created))
    });
    ranked.iter().take(n).map(|p| p.name_any()).collect()
}

/// Indexed Jobs: one running pod per pending index, the lowest first; pods with a
/// completed, duplicate or out-of-range index go.
fn manage_indexed(
    active: &[&Pod],
    terminating: &[&Pod],
    completed: &BTreeSet<u32>,
    completions: u32,
    parallelism: usize,
    only_failed: bool,
) -> (Vec<Option<u32>>, Vec<String>) {
    let mut delete = Vec::new();
    let mut running: BTreeMap<u32, Vec<&Pod>> = BTreeMap::new();
    for pod in active {
        match pod_index(pod) {
            Some(i) if i < completions && !completed.contains(&i) => {
                running.entry(i).or_default().push(pod);
            }
            _ => delete.push(pod.name_any()),
        }
    }
    for pods in running.values_mut() {
        if pods.len() > 1 {
            // Keep the oldest of duplicates.
            pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            delete.extend(pods.drain(1..).map(|p| p.name_any()));
        }
    }
    let mut kept: Vec<u32> = running.keys().copied().collect();
    while kept.len() > parallelism {
        if let Some(i) = kept.pop()
            && let Some(pods) = running.get(&i)
        {
            delete.extend(pods.iter().map(|p| p.name_any()));
        }
    }
    let held: BTreeSet<u32> = if only_failed {
        terminating.iter().filter_map(|p| pod_index(p)).collect()
    } else {
        BTreeSet::new()
    };
    let room = parallelism.saturating_sub(kept.len() + held.len());
    let create = (0..completions)
        .filter(|i| !completed.contains(i) && !running.contains_key(i) && !held.contains(i))
        .take(room)
        .map(Some)
        .collect();
    (create, delete)
}

/// A pod for `job`, from its template: owned by the Job, labelled with its uid and name,
/// and for Indexed Jobs carrying its completion index (annotation, label, hostname
/// `<job>-<index>` and the `JOB_COMPLETION_INDEX` variable).
pub fn pod_for(job: &Job, index: Option<u32>) -> Value {
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let spec = job.spec.as_ref();
    let mut base = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    if base.len() > MAX_GENERATE_BASE {
        let mut cut = MAX_GENERATE_BASE - 1;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
        base.push('-');
    }
    let mut pod = pods::pod_from_template(
        spec.map(|s| &s.template),
        &job.namespace().unwrap_or_default(),
        &base,
        controller_ref("batch/v1", "Job", &job.metadata),
    );
    let manual = spec.and_then(|s| s.manual_selector) == Some(true);
    let meta = &mut pod["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    if !manual {
        // The API server puts these in the template; a Job stored without them still
        // gets pods that say whose they are.
        for (key, value) in [
            (CONTROLLER_UID, &uid),
            ("controller-uid", &uid),
            (JOB_NAME, &name),
            ("job-name", &name),
        ] {
            if meta["labels"].get(key).is_none() {
                meta["labels"][key] = json!(value);
            }
        }
    }
    if let Some(i) = index {
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        meta["annotations"][COMPLETION_INDEX] = json!(i.to_string());
        meta["labels"][COMPLETION_INDEX] = json!(i.to_string());
        let pod_spec = &mut pod["spec"];
        if pod_spec.get("hostname").is_none_or(Value::is_null) {
            pod_spec["hostname"] = json!(format!("{name}-{i}"));
        }
        let env = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}}});
        for list in ["initContainers", "containers"] {
            let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in containers {
                if !container["env"].is_array() {
                    container["env"] = json!([]);
                }
                if let Some(vars) = container["env"].as_array_mut()
                    && !vars.iter().any(|v| v["name"] == "JOB_COMPLETION_INDEX")
                {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

/// Status writes not yet seen through the watch, per object uid: until the watch shows
/// the resourceVersion a write returned, the object is not planned again, or a condition
/// change (and its event) would be planned twice. Held at most [`pods::EXPECTATIONS_TTL`].
#[derive(Debug, Default)]
pub(crate) struct StatusWrites {
    written: HashMap<String, (u64, Instant)>,
}

impl StatusWrites {
    /// Record that a write to `uid` returned `resource_version`.
    pub(crate) fn wrote(&mut self, uid: &str, resource_version: Option<String>) {
        if let Some(rv) = resource_version.and_then(|rv| rv.parse().ok()) {
            self.written.insert(uid.to_owned(), (rv, Instant::now()));
        }
    }

    /// Whether the watch's copy (at `seen`) includes the last write to `uid`.
    pub(crate) fn caught_up(&mut self, uid: &str, seen: Option<String>) -> bool {
        let Some((rv, since)) = self.written.get(uid) else {
            return true;
        };
        let seen = seen.and_then(|s| s.parse::<u64>().ok());
        if seen.is_none_or(|s| s >= *rv) || since.elapsed() >= pods::EXPECTATIONS_TTL {
            self.written.remove(uid);
            return true;
        }
        false
    }
}

/// Watches Jobs and Pods and runs each Job's pods.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (jobs, w1) = cache(
        Api::<Job>::all(client.clone()),
        Default::default(),
        &changed,
        "jobs",
    );
    let (pods, w2) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let reconcile = async move {
        let _ = tokio::join!(jobs.wait_until_ready(), pods.wait_until_ready());
        let mut expectations = Expectations::default();
        let mut writes = StatusWrites::default();
        loop {
            let now = Timestamp::now();
            let mut next = Duration::from_secs(30);
            let mut by_namespace: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
            for pod in pods.state() {
                by_namespace
                    .entry(pod.namespace().unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            for job in jobs.state() {
                let namespace = job.namespace().unwrap_or_default();
                let uid = job.uid().unwrap_or_default();
                let in_namespace = by_namespace.get(&namespace).map_or(&[][..], Vec::as_slice);
                // Every pod the Job owns, finished ones too: a pod that ran and ended
                // before this pass was still seen being created.
                let owned_now = in_namespace
                    .iter()
                    .filter(|p| controller_uid(&p.metadata) == Some(uid.as_str()))
                    .count();
                let still_there = |n: &str| {
                    in_namespace
                        .iter()
                        .any(|p| p.name_any() == n && is_active(p))
                };
                if !expectations.satisfied(&uid, owned_now, still_there)
                    || !writes.caught_up(&uid, job.resource_version())
                {
                    continue;
                }
                let plan = plan(&job, in_namespace, now);
                if let Some(requeue) = plan.requeue {
                    next = next.min(requeue);
                }
                let done = Box::pin(carry_out(&client, &job, &plan, &mut writes)).await;
                expectations.expect(&uid, owned_now, done.created, done.deleted);
                if let Err(error) = done.result {
                    warn!(job = %format!("{namespace}/{}", job.name_any()), %error, "job sync failed");
                    // Try again soon rather than at the next resync.
                    next = next.min(Duration::from_secs(1));
                }
            }
            let _ = tokio::time::timeout(next, changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // Boxed: the loop's state is large, and the controllers share one task's stack.
    tokio::join!(w1, w2, Box::pin(reconcile));
}

/// What [`carry_out`] got done before any error.
struct Done {
    created: usize,
    deleted: Vec<String>,
    result: kube::Result<()>,
}

async fn carry_out(client: &Client, job: &Job, plan: &Plan, writes: &mut StatusWrites) -> Done {
    let mut done = Done {
        created: 0,
        deleted: Vec::new(),
        result: Ok(()),
    };
    done.result = carry_out_steps(client, job, plan, writes, &mut done).await;
    done
}

async fn carry_out_steps(
    client: &Client,
    job: &Job,
    plan: &Plan,
    writes: &mut StatusWrites,
    done: &mut Done,
) -> kube::Result<()> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let key = format!("{namespace}/{name}");
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    if plan.delete_job {
        // The TTL-after-finished controller's delete: background propagation, and only
        // this Job (a Job re-created under the same name is not touched).
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: job.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match jobs.delete(&name, &params).await {
            Ok(_) => info!(job = %key, "finished job deleted after its ttl"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(error) => return Err(error),
        }
        return Ok(());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for index in &plan.create {
        let pod: Pod =
            serde_json::from_value(pod_for(job, *index)).map_err(kube::Error::SerdeError)?;
        let created = match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => created,
            Err(error) => {
                event(
                    client,
                    job,
                    true,
                    "FailedCreate",
                    &format!("Error creating: {error}"),
                )
                .await;
                return Err(error);
            }
        };
        done.created += 1;
        info!(job = %key, pod = %created.name_any(), "pod created");
        let message = format!("Created pod: {}", created.name_any());
        event(client, job, false, "SuccessfulCreate", &message).await;
    }
    for victim in &plan.delete {
        match pods.delete(victim, &DeleteParams::default()).await {
            Ok(_) => {
                info!(job = %key, pod = %victim, "pod deleted");
                let message = format!("Deleted pod: {victim}");
                event(client, job, false, "SuccessfulDelete", &message).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
        done.deleted.push(victim.clone());
    }
    if let Some(status) = &plan.status {
        let written = jobs
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await?;
        writes.wrote(&job.uid().unwrap_or_default(), written.resource_version());
    }
    for e in &plan.events {
        event(client, job, e.warning, e.reason, &e.message).await;
    }
    Ok(())
}

/// Record an event on the Job; a failure is logged, never fatal.
async fn event(client: &Client, job: &Job, warning: bool, reason: &str, message: &str) {
    let involved = json!({"apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
                          "namespace": job.namespace(), "uid": job.uid()});
    let type_ = if warning { "Warning" } else { "Normal" };
    if let Err(error) = super::events::record(client, involved, NAME, type_, reason, message).await
    {
        warn!(job = %job.name_any(), %error, reason, "event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn job(spec: Value) -> Job {
        job_with(spec, json!({}))
    }

    fn job_with(spec: Value, status: Value) -> Job {
        let mut full = json!({
            "template": {"metadata": {"labels": {CONTROLLER_UID: "job-uid"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
            "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        });
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "d", "uid": "job-uid"},
            "spec": full, "status": status,
        }))
        .unwrap()
    }

    /// A pod of the Job: `state` is Running, Ready, Succeeded, Failed or Terminating;
    /// `finished` the time its container ended.
    fn pod(name: &str, state: &str, index: Option<u32>, finished: &str) -> Arc<Pod> {
        let phase = match state {
            "Ready" | "Terminating" => "Running",
            other => other,
        };
        let mut value = json!({
            "metadata": {"name": name, "namespace": "d", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                              "uid": "job-uid", "controller": true}]},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if state == "Ready" {"True"} else {"False"}}]},
        });
        if !finished.is_empty() {
            value["status"]["containerStatuses"] = json!([{"name": "c", "ready": false, "restartCount": 0,
                "image": "", "imageID": "", "state": {"terminated": {"exitCode": 0, "finishedAt": finished}}}]);
        }
        if state == "Terminating" {
            // Deleted at NOW with the default grace period.
            value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:30Z");
            value["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        }
        if let Some(i) = index {
            value["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn types(plan: &Plan) -> Vec<(String, String, String)> {
        plan.status.as_ref().unwrap()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                    c["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The Job as the watch would show it after `plan`'s status write.
    fn after(j: &Job, plan: &Plan) -> Job {
        let mut value = serde_json::to_value(j).unwrap();
        value["status"] = plan.status.clone().unwrap();
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn completions_run_at_most_parallelism_at_a_time() {
        let j = job(json!({"completions": 3, "parallelism": 2}));
        let p = plan(&j, &[], at(NOW));
        assert_eq!(p.create, [None, None]);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status["active"], 2);
        assert_eq!(status["startTime"], NOW);

        let pods = [
            pod("pi-a", "Succeeded", None, "2026-01-01T00:09:00Z"),
            pod("pi-b", "Ready", None, ""),
        ];
        let p = plan(&j, &pods, at(NOW));
        assert_eq!(p.create, [None], "one left to run beside the running one");
        assert_eq!(p.status.as_ref().unwrap()["succeeded"], 1);
        assert_eq!(p.status.as_ref().unwrap()["ready"], 1);

        let pods = [
            pod("pi-a", "Succeeded", None, "2026-01-01T00:09:00Z"),
            pod("pi-b", "Ready", None, ""),
            pod("pi-c", "Ready", None, ""),
        ];
        let p = plan(&j, &pods, at(NOW));
        assert!(p.create.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn success_sets_success_criteria_met_then_complete() {
        let j = job(json!({"completions": 2}));
        let pods = [
            pod("pi-a", "Succeeded", None, "2026-01-01T00:09:00Z"),
            pod("pi-b", "Succeeded", None, "2026-01-01T00:09:30Z"),
        ];
        let p = plan(&j, &pods, at(NOW));
        assert_eq!(
            types(&p),
            [
                (
                    "SuccessCriteriaMet".into(),
                    "True".into(),
                    "CompletionsReached".into()
                ),
                (
                    "Complete".into(),
                    "True".into(),
                    "CompletionsReached".into()
                ),
            ]
        );
        let status = p.status.as_ref().unwrap();
        assert_eq!(status["succeeded"], 2);
        assert_eq!(status["completionTime"], NOW);
        assert_eq!(p.events[0].reason, "Completed");
        // Finished: nothing more, not even a status write.
        assert_eq!(plan(&after(&j, &p), &pods, at(NOW)), Plan::default());
    }

    #[test]
    fn a_work_queue_completes_when_one_succeeded_and_the_rest_ended() {
        let j = job(json!({"parallelism": 2, "completions": null}));
        let running = [
            pod("pi-a", "Succeeded", None, "2026-01-01T00:09:00Z"),
            pod("pi-b", "Ready", None, ""),
        ];
        let p = plan(&j, &running, at(NOW));
        assert!(p.create.is_empty(), "no new pods once one succeeded");
        assert!(!types(&p).iter().any(|c| c.0 == "Complete"));
        let ended = [
            pod("pi-a", "Succeeded", None, "2026-01-01T00:09:00Z"),
            pod("pi-b", "Succeeded", None, "2026-01-01T00:09:30Z"),
        ];
        assert!(
            types(&plan(&j, &ended, at(NOW)))
                .iter()
                .any(|c| c.0 == "Complete")
        );
    }

    #[test]
    fn failures_back_off_and_then_exceed_the_limit() {
        let j = job(json!({"backoffLimit": 2}));
        let one = [pod("pi-a", "Failed", None, "2026-01-01T00:09:59.500Z")];
        let p = plan(&j, &one, at(NOW));
        assert!(p.create.is_empty(), "one second of backoff after a failure");
        assert_eq!(p.requeue, Some(Duration::from_millis(500)));
        assert_eq!(plan(&j, &one, at("2026-01-01T00:10:01Z")).create, [None]);
        // Two consecutive failures: two seconds from the latest.
        let two = [
            pod("pi-a", "Failed", None, "2026-01-01T00:09:50Z"),
            pod("pi-b", "Failed", None, "2026-01-01T00:09:59Z"),
        ];
        assert_eq!(
            plan(&j, &two, at(NOW)).requeue,
            Some(Duration::from_secs(1))
        );
        assert_eq!(plan(&j, &two, at(NOW)).status.unwrap()["failed"], 2);

        let three = [
            pod("pi-a", "Failed", None, "2026-01-01T00:09:00Z"),
            pod("pi-b", "Failed", None, "2026-01-01T00:09:10Z"),
            pod("pi-c", "Failed", None, "2026-01-01T00:09:30Z"),
        ];
        let p = plan(&j, &three, at(NOW));
        assert_eq!(
            types(&p),
            [
                (
                    "FailureTarget".into(),
                    "True".into(),
                    "BackoffLimitExceeded".into()
                ),
                (
                    "Failed".into(),
                    "True".into(),
                    "BackoffLimitExceeded".into()
                ),
            ]
        );
        assert_eq!(p.status.as_ref().unwrap()["completionTime"], Value::Null);
        assert_eq!(p.events[0].reason, "BackoffLimitExceeded");
        assert_eq!(p.events[0].message, BACKOFF_MESSAGE);
        assert!(p.create.is_empty());
    }

    #[test]
    fn backoff_counts_only_failures_since_the_last_success() {
        let pods = [
            pod("a", "Failed", None, "2026-01-01T00:00:00Z"),
            pod("b", "Failed", None, "2026-01-01T00:00:01Z"),
            pod("c", "Succeeded", None, "2026-01-01T00:00:02Z"),
            pod("d", "Failed", None, "2026-01-01T00:09:59Z"),
        ];
        let refs: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        let (ok, failed): (Vec<&Pod>, Vec<&Pod>) =
            refs.iter().partition(|p| phase(p) == "Succeeded");
        assert_eq!(
            backoff_remaining(&ok, &failed, at("2026-01-01T00:09:59.500Z")),
            Some(Duration::from_millis(500))
        );
        // Twelve in a row: capped at six minutes.
        let many: Vec<Arc<Pod>> = (0..12)
            .map(|i| pod(&format!("f{i}"), "Failed", None, "2026-01-01T00:00:00Z"))
            .collect();
        let refs: Vec<&Pod> = many.iter().map(AsRef::as_ref).collect();
        assert_eq!(
            backoff_remaining(&[], &refs, at("2026-01-01T00:00:00Z")),
            Some(BACKOFF_CAP)
        );
    }

    #[test]
    fn the_deadline_fails_the_job_and_stops_its_pods() {
        let j = job_with(
            json!({"activeDeadlineSeconds": 60, "parallelism": 2, "completions": 4}),
            json!({"startTime": "2026-01-01T00:09:30Z"}),
        );
        let pods = [
            pod("pi-a", "Ready", None, ""),
            pod("pi-b", "Ready", None, ""),
        ];
        let p = plan(&j, &pods, at(NOW));
        assert!(p.delete.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(30)));

        let late = at("2026-01-01T00:10:30Z");
        let p = plan(&j, &pods, late);
        assert_eq!(p.delete, ["pi-a", "pi-b"]);
        assert_eq!(
            types(&p),
            [(
                "FailureTarget".into(),
                "True".into(),
                "DeadlineExceeded".into()
            )],
            "Failed waits for the pods to go"
        );
        let status = p.status.as_ref().unwrap();
        assert_eq!(
            (status["active"].clone(), status["failed"].clone()),
            (json!(0), json!(2))
        );
        assert_eq!(status["terminating"], 2);

        let j = after(&j, &p);
        let p = plan(&j, &[], late);
        assert_eq!(
            types(&p).last().unwrap(),
            &("Failed".into(), "True".into(), "DeadlineExceeded".into())
        );
        assert_eq!(p.status.as_ref().unwrap()["failed"], 2, "no double count");
        assert_eq!(p.events[0].message, DEADLINE_MESSAGE);
    }

    #[test]
    fn indexed_jobs_run_each_index_and_report_completed_indexes() {
        let j = job(json!({"completionMode": "Indexed", "completions": 6, "parallelism": 3}));
        let pods = [
            pod("pi-0-a", "Succeeded", Some(0), "2026-01-01T00:09:00Z"),
            pod("pi-1-a", "Succeeded", Some(1), "2026-01-01T00:09:00Z"),
            pod("pi-2-a", "Succeeded", Some(2), "2026-01-01T00:09:00Z"),
            pod("pi-3-a", "Ready", Some(3), ""),
            pod("pi-3-b", "Ready", Some(3), ""),
            pod("pi-5-a", "Succeeded", Some(5), "2026-01-01T00:09:00Z"),
            pod("pi-9-a", "Ready", Some(9), ""),
        ];
        let p = plan(&j, &pods, at(NOW));
        assert_eq!(p.create, [Some(4)]);
        assert_eq!(p.delete, ["pi-9-a", "pi-3-b"]);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status["completedIndexes"], "0-2,5");
        assert_eq!(status["succeeded"], 4);

        let pod = pod_for(&j, Some(4));
        assert_eq!(pod["metadata"]["generateName"], "pi-4-");
        assert_eq!(pod["metadata"]["annotations"][COMPLETION_INDEX], "4");
        assert_eq!(pod["metadata"]["labels"][COMPLETION_INDEX], "4");
        assert_eq!(pod["metadata"]["labels"][JOB_NAME], "pi");
        assert_eq!(pod["metadata"]["labels"]["controller-uid"], "job-uid");
        assert_eq!(pod["spec"]["hostname"], "pi-4");
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
    }

    #[test]
    fn a_failed_index_runs_again_after_backoff() {
        let j = job(json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2}));
        let pods = [
            pod("pi-0-a", "Succeeded", Some(0), "2026-01-01T00:09:00Z"),
            pod("pi-1-a", "Failed", Some(1), "2026-01-01T00:09:59.500Z"),
        ];
        let p = plan(&j, &pods, at(NOW));
        assert!(p.create.is_empty(), "backing off");
        assert_eq!(p.status.as_ref().unwrap()["completedIndexes"], "0");
        assert_eq!(
            plan(&j, &pods, at("2026-01-01T00:10:01Z")).create,
            [Some(1)]
        );
    }

    #[test]
    fn index_sets_print_as_kubernetes_prints_them() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(format_indexes(&set(&[0, 1, 2, 5])), "0-2,5");
        assert_eq!(format_indexes(&set(&[1, 2, 4, 6, 7, 8])), "1,2,4,6-8");
        assert_eq!(format_indexes(&set(&[])), "");
        assert_eq!(parse_indexes("1,3-5,x,7"), set(&[1, 3, 4, 5, 7]));
    }

    #[test]
    fn suspend_stops_pods_and_resume_restarts_the_clock() {
        let j = job(json!({"suspend": true, "parallelism": 2, "completions": 2}));
        let pods = [pod("pi-a", "Ready", None, "")];
        let p = plan(&j, &pods, at(NOW));
        assert_eq!(p.delete, ["pi-a"]);
        assert!(p.create.is_empty());
        assert_eq!(
            types(&p),
            [("Suspended".into(), "True".into(), "JobSuspended".into())]
        );
        let status = p.status.as_ref().unwrap();
        assert_eq!(status["failed"], 0, "suspension is no failure");
        assert_eq!(status["startTime"], Value::Null);

        let mut resumed = serde_json::to_value(after(&j, &p)).unwrap();
        resumed["spec"]["suspend"] = json!(false);
        let resumed: Job = serde_json::from_value(resumed).unwrap();
        let later = at("2026-01-01T00:20:00Z");
        let p = plan(&resumed, &[], later);
        assert_eq!(p.create, [None, None]);
        assert_eq!(
            types(&p),
            [("Suspended".into(), "False".into(), "JobResumed".into())]
        );
        assert_eq!(
            p.status.as_ref().unwrap()["startTime"],
            "2026-01-01T00:20:00Z"
        );
    }

    #[test]
    fn a_finished_job_is_deleted_after_its_ttl() {
        let j = job_with(
            json!({"ttlSecondsAfterFinished": 30}),
            json!({"completionTime": "2026-01-01T00:09:50Z",
                   "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        let p = plan(&j, &[], at(NOW));
        assert!(!p.delete_job);
        assert_eq!(p.requeue, Some(Duration::from_secs(20)));
        assert!(plan(&j, &[], at("2026-01-01T00:10:20Z")).delete_job);
        // No TTL: kept.
        let kept = job_with(json!({}), serde_json::to_value(&j.status).unwrap());
        assert_eq!(
            plan(&kept, &[], at("2027-01-01T00:00:00Z")),
            Plan::default()
        );
    }

    #[test]
    fn deleted_pods_count_as_failed_and_are_replaced() {
        let j = job(json!({"completions": 1, "backoffLimit": 6}));
        let pods = [pod("pi-a", "Terminating", None, "")];
        let p = plan(&j, &pods, at(NOW));
        assert_eq!(p.status.as_ref().unwrap()["failed"], 1);
        assert_eq!(p.status.as_ref().unwrap()["terminating"], 1);
        // Replaced at once by default (TerminatingOrFailed); after backoff from its
        // deletion time.
        assert!(p.create.is_empty() && p.requeue.is_some());
        let later = plan(&j, &pods, at("2026-01-01T00:10:05Z"));
        assert_eq!(later.create, [None]);
        // podReplacementPolicy Failed: not while it terminates, and not counted yet.
        let strict = job(json!({"completions": 1, "podReplacementPolicy": "Failed"}));
        let p = plan(&strict, &pods, at("2026-01-01T00:10:05Z"));
        assert!(p.create.is_empty());
        assert_eq!(p.status.as_ref().unwrap()["failed"], 0);
        // Counts never go below what the status already says.
        let counted = job_with(
            json!({"completions": 3}),
            json!({"succeeded": 2, "failed": 1}),
        );
        let p = plan(&counted, &[], at(NOW));
        assert_eq!(p.create, [None]);
        let status = p.status.as_ref().unwrap();
        assert_eq!(
            (status["succeeded"].clone(), status["failed"].clone()),
            (json!(2), json!(1))
        );
    }

    #[test]
    fn jobs_of_other_controllers_and_pods_of_other_jobs_are_left_alone() {
        let j = job(json!({"managedBy": "example.com/queue"}));
        assert_eq!(plan(&j, &[], at(NOW)), Plan::default());
        let mut foreign = Pod::clone(&pod("other", "Ready", None, ""));
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        let p = plan(&job(json!({})), &[Arc::new(foreign)], at(NOW));
        assert_eq!(p.create, [None]);
        assert!(p.delete.is_empty());
    }
}
