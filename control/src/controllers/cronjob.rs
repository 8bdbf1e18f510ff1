//! The CronJob controller, as kube-controller-manager's (its "v2" controller): at each time
//! the schedule names, in `spec.timeZone` (UTC when unset), a Job from `jobTemplate` named
//! `<cronjob>-<scheduled time in minutes since the epoch>` (the name is the lock that keeps
//! a time from running twice), owned by the CronJob and annotated with
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`. Only the most recent missed time is
//! started; more than 100 missed times also warn. `concurrencyPolicy` Forbid skips a time
//! while a Job runs, Replace deletes the running Jobs first; `startingDeadlineSeconds`
//! bounds how late a start may be; `suspend` stops new starts; finished Jobs beyond
//! `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` are deleted, oldest first.
//!
//! The decision is a pure function of the CronJob, its Jobs and the time ([`plan`]);
//! [`run`] watches CronJobs and Jobs, wakes at the next scheduled time and carries it out.
//! One difference: an unfinished Job this controller created (it carries the
//! scheduled-timestamp annotation) counts as active even when `status.active` lost it,
//! where Kubernetes would only warn; a Job someone else made the CronJob own still only
//! draws the `UnexpectedJob` warning.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use strait_api::cron::{self, Schedule};

use super::{
    job::{StatusWrites, finished_as, finished_at},
    pods::{controller_ref, controller_uid},
};

/// The component name on events.
const NAME: &str = "cronjob-controller";
/// Annotation with the time a Job was scheduled for, RFC 3339 in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed times beyond which the controller warns (it still starts the latest).
pub const MISSED_LIMIT: usize = 100;
/// Slack after a scheduled time before looking, so the time has surely passed.
const NEXT_DELTA: Duration = Duration::from_millis(100);

/// What to do for one CronJob.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// A Job to create, for this scheduled time.
    pub create: Option<(Value, Timestamp)>,
    /// Jobs to delete (Replace, history limits), by name, with background propagation.
    pub delete: Vec<String>,
    /// The status to write (without the Job to create, which is added once it exists),
    /// when it changed or a Job is created.
    pub status: Option<Value>,
    /// Events to record on the CronJob.
    pub events: Vec<Event>,
    /// When to look again: the next scheduled time.
    pub requeue: Option<Duration>,
}

/// An event to record on the CronJob.
#[derive(Debug, PartialEq)]
pub struct Event {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Kubernetes' reason, e.g. `JobAlreadyActive`.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: String) -> Self {
        Self {
            warning: false,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Self {
            warning: true,
            reason,
            message,
        }
    }
}

/// The Job name for a scheduled time: the CronJob's name and the time in minutes.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 as Go writes it: `Z` for a zero offset, else `±hh:mm`.
fn rfc3339_in(t: Timestamp, zone: &TimeZone) -> String {
    let zoned = t.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// When the Job was scheduled for, from its annotation.
fn scheduled_for(job: &Job) -> Option<Timestamp> {
    job.annotations().get(SCHEDULED_TIMESTAMP)?.parse().ok()
}

fn reference(job: &Job) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
           "namespace": job.namespace(), "uid": job.uid(),
           "resourceVersion": job.resource_version()})
}

/// The Job for `scheduled`, from the CronJob's template.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, zone: &TimeZone) -> Value {
    let template = cj.spec.as_ref().map(|s| &s.job_template);
    let template_meta = template.and_then(|t| t.metadata.as_ref());
    let labels = template_meta
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut annotations = template_meta
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.to_owned(), rfc3339_in(scheduled, zone));
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": job_name(&cj.name_any(), scheduled),
            "namespace": cj.namespace(),
            "labels": labels, "annotations": annotations,
            "ownerReferences": [controller_ref("batch/v1", "CronJob", &cj.metadata)],
        },
        "spec": template.and_then(|t| t.spec.as_ref()),
    })
}

/// The plan for `cj` given the Jobs of its namespace, at `now`. Pure.
pub fn plan(cj: &CronJob, jobs: &[Arc<Job>], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = cj.spec.as_ref() else {
        return plan;
    };
    let uid = cj.uid().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let owned: Vec<&Job> = jobs
        .iter()
        .map(AsRef::as_ref)
        .filter(|j| controller_uid(&j.metadata) == Some(uid.as_str()))
        .collect();
    let listed: Vec<Value> = status
        .active
        .iter()
        .flatten()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let listed_uids: BTreeSet<&str> = listed.iter().filter_map(|r| r["uid"].as_str()).collect();

    // The active list: Jobs still running that we started, by name (which carries the time).
    let mut active: Vec<Value> = Vec::new();
    for job in &owned {
        let job_uid = job.uid().unwrap_or_default();
        let in_list = listed_uids.contains(job_uid.as_str());
        let finished = finished_at(job).is_some();
        if finished {
            if in_list {
                let condition = if finished_as(job, "Failed") {
                    "Failed"
                } else {
                    "Complete"
                };
                plan.events.push(Event::normal(
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {condition}",
                        job.name_any()
                    ),
                ));
            }
        } else if job.metadata.deletion_timestamp.is_some() {
            // Being deleted (replaced, or by someone): no longer running for us.
        } else if in_list {
            let kept = listed.iter().find(|r| r["uid"] == job_uid.as_str());
            active.push(kept.cloned().unwrap_or_else(|| reference(job)));
        } else if scheduled_for(job).is_some() {
            active.push(reference(job));
        } else {
            plan.events.push(Event::warning(
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            ));
        }
    }
    let owned_uids: BTreeSet<String> = owned.iter().filter_map(|j| j.uid()).collect();
    for missing in listed
        .iter()
        .filter(|r| !owned_uids.contains(r["uid"].as_str().unwrap_or_default()))
    {
        plan.events.push(Event::normal(
            "MissingJob",
            format!(
                "Active job went missing: {}",
                missing["name"].as_str().unwrap_or_default()
            ),
        ));
    }
    active.sort_by_key(|r| r["name"].as_str().map(str::to_owned));

    let last_successful = owned
        .iter()
        .filter(|j| finished_as(j, "Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        .chain(status.last_successful_time.as_ref().map(|t| t.0))
        .max();
    // The latest time started: the status's, or a Job's whose status write was lost.
    let mut last_scheduled = owned
        .iter()
        .filter_map(|j| scheduled_for(j))
        .chain(status.last_schedule_time.as_ref().map(|t| t.0))
        .max();

    plan.delete = history_to_delete(spec, &owned);
    for victim in &plan.delete {
        plan.events.push(Event::normal(
            "SuccessfulDelete",
            format!("Deleted job {victim}"),
        ));
    }

    if let Some((scheduled, zone)) = decide(cj, &active, last_scheduled, &owned, now, &mut plan) {
        if spec.concurrency_policy.as_deref() == Some("Replace") {
            for running in &active {
                let victim = running["name"].as_str().unwrap_or_default().to_owned();
                plan.events.push(Event::normal(
                    "SuccessfulDelete",
                    format!("Deleted job {victim}"),
                ));
                plan.delete.push(victim);
            }
            active.clear();
        }
        plan.create = Some((job_for(cj, scheduled, &zone), scheduled));
        last_scheduled = Some(scheduled);
    }

    let new_status = json!({
        "active": active,
        "lastScheduleTime": last_scheduled.map(stamp),
        "lastSuccessfulTime": last_successful.map(stamp),
    });
    let current = serde_json::to_value(&status).unwrap_or_default();
    let changed = new_status.as_object().is_some_and(|want| {
        want.iter().any(|(k, v)| {
            let now = current.get(k).unwrap_or(&Value::Null);
            now != v && !(now.is_null() && v.as_array().is_some_and(Vec::is_empty))
        })
    });
    if changed || plan.create.is_some() {
        plan.status = Some(new_status);
    }
    plan
}

/// Whether a Job starts now, and for which time (with the zone it is in); records why
/// not as events, and when to look again.
fn decide(
    cj: &CronJob,
    active: &[Value],
    last_scheduled: Option<Timestamp>,
    owned: &[&Job],
    now: Timestamp,
    plan: &mut Plan,
) -> Option<(Timestamp, TimeZone)> {
    let spec = cj.spec.as_ref()?;
    if cj.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let zone = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(name) => match cron::zone(name) {
            Ok(zone) => zone,
            Err(error) => {
                plan.events.push(Event::warning(
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {error}"),
                ));
                return None;
            }
        },
    };
    if spec.suspend == Some(true) {
        return None;
    }
    if spec.schedule.contains("TZ") {
        plan.events.push(Event::warning(
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see \
                 https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                spec.schedule
            ),
        ));
    }
    let schedule = match Schedule::parse(&spec.schedule, zone.clone()) {
        Ok(schedule) => schedule,
        Err(error) => {
            plan.events.push(Event::warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {error}", spec.schedule),
            ));
            return None;
        }
    };
    plan.requeue = schedule
        .next(now)
        .map(|next| next.duration_since(now).unsigned_abs() + NEXT_DELTA);

    let created = cj.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut earliest = last_scheduled.or(created).unwrap_or(now);
    if let Some(deadline) = spec.starting_deadline_seconds {
        // Times older than the deadline are not started at all.
        let window_start = now
            .checked_sub(SignedDuration::from_secs(deadline))
            .unwrap_or(now);
        earliest = earliest.max(window_start);
    }
    let (scheduled, missed) = schedule.most_recent(earliest, now, MISSED_LIMIT)?;
    if missed > MISSED_LIMIT {
        plan.events.push(Event::warning(
            "TooManyMissedTimes",
            format!(
                "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                estimate_missed(&schedule, earliest, now)
            ),
        ));
    }
    let name = job_name(&cj.name_any(), scheduled);
    if owned.iter().any(|j| j.name_any() == name) || last_scheduled == Some(scheduled) {
        // This time is already started.
        return None;
    }
    if spec.concurrency_policy.as_deref() == Some("Forbid") && !active.is_empty() {
        plan.events.push(Event::normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .to_owned(),
        ));
        return None;
    }
    Some((scheduled, zone))
}

/// Kubernetes' estimate of missed times: the time since the first, over the interval
/// between the first two.
fn estimate_missed(schedule: &Schedule, earliest: Timestamp, now: Timestamp) -> i64 {
    let Some(first) = schedule.next(earliest) else {
        return 0;
    };
    let Some(second) = schedule.next(first) else {
        return 1;
    };
    let interval = second.duration_since(first).as_secs().max(1);
    now.duration_since(first).as_secs() / interval + 1
}

/// Finished Jobs beyond the history limits, oldest (by start time, unstarted last) first.
fn history_to_delete(
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    owned: &[&Job],
) -> Vec<String> {
    let mut delete = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else {
            continue;
        };
        let mut finished: Vec<&&Job> = owned
            .iter()
            .filter(|j| finished_as(j, kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let keep = usize::try_from(limit).unwrap_or(0);
        if finished.len() <= keep {
            continue;
        }
        finished.sort_by_key(|j| {
            let started = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            (started.is_none(), started, j.name_any())
        });
        let excess = finished.len() - keep;
        delete.extend(finished.iter().take(excess).map(|j| j.name_any()));
    }
    delete
}

/// Watches CronJobs and Jobs and starts each CronJob's Jobs on time.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (cronjobs, w1) = cache(
        Api::<CronJob>::all(client.clone()),
        Default::default(),
        &changed,
        "cronjobs",
    );
    let (jobs, w2) = cache(
        Api::<Job>::all(client.clone()),
        Default::default(),
        &changed,
        "jobs",
    );
    let reconcile = async move {
        let _ = tokio::join!(cronjobs.wait_until_ready(), jobs.wait_until_ready());
        let mut writes = StatusWrites::default();
        // Jobs created or deleted, by name, not yet seen (or still seen) through the watch.
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let mut said = Said::default();
        loop {
            let now = Timestamp::now();
            let mut next = Duration::from_secs(30);
            let mut by_namespace: BTreeMap<String, Vec<Arc<Job>>> = BTreeMap::new();
            for job in jobs.state() {
                by_namespace
                    .entry(job.namespace().unwrap_or_default())
                    .or_default()
                    .push(job);
            }
            let mut alive = BTreeSet::new();
            for cj in cronjobs.state() {
                let namespace = cj.namespace().unwrap_or_default();
                let uid = cj.uid().unwrap_or_default();
                alive.insert(uid.clone());
                let in_namespace = by_namespace.get(&namespace).map_or(&[][..], Vec::as_slice);
                if pending.get(&uid).is_some_and(|p| !p.seen(in_namespace))
                    || !writes.caught_up(&uid, cj.resource_version())
                {
                    continue;
                }
                pending.remove(&uid);
                let plan = plan(&cj, in_namespace, now);
                if let Some(requeue) = plan.requeue {
                    next = next.min(requeue);
                }
                let mut done = Pending::default();
                let result = Box::pin(carry_out(
                    &client,
                    &cj,
                    &plan,
                    &mut writes,
                    &mut done,
                    &mut said,
                ))
                .await;
                if !done.created.is_empty() || !done.deleted.is_empty() {
                    pending.insert(uid.clone(), done);
                }
                if let Err(error) = result {
                    warn!(cronjob = %format!("{namespace}/{}", cj.name_any()), %error, "cronjob sync failed");
                    next = next.min(Duration::from_secs(1));
                }
            }
            said.retain(&alive);
            pending.retain(|uid, _| alive.contains(uid));
            let _ = tokio::time::timeout(next, changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // Boxed: the loop's state is large, and the controllers share one task's stack.
    tokio::join!(w1, w2, Box::pin(reconcile));
}

/// Jobs a CronJob created and deleted that the watch has yet to show; the CronJob waits
/// for them (at most [`super::pods::EXPECTATIONS_TTL`]), or it would start a time twice.
#[derive(Debug, Default)]
struct Pending {
    created: Vec<String>,
    deleted: Vec<String>,
    since: Option<std::time::Instant>,
}

impl Pending {
    fn seen(&self, jobs: &[Arc<Job>]) -> bool {
        let present = |name: &str| {
            jobs.iter()
                .any(|j| j.name_any() == name && j.metadata.deletion_timestamp.is_none())
        };
        self.since
            .is_some_and(|s| s.elapsed() >= super::pods::EXPECTATIONS_TTL)
            || (self.created.iter().all(|n| present(n)) && !self.deleted.iter().any(|n| present(n)))
    }
}

/// Events already recorded per CronJob uid: the plan repeats its reasons on every pass
/// (a skipped time is skipped again until the next), and each is said once.
#[derive(Debug, Default)]
struct Said {
    by_owner: HashMap<String, BTreeSet<String>>,
}

impl Said {
    /// Whether this event is new for `owner` (and remember it).
    fn first_time(&mut self, owner: &str, event: &Event) -> bool {
        let seen = self.by_owner.entry(owner.to_owned()).or_default();
        if seen.len() > 256 {
            seen.clear();
        }
        seen.insert(format!("{}\u{0}{}", event.reason, event.message))
    }

    fn forget(&mut self, owner: &str) {
        self.by_owner.remove(owner);
    }

    fn retain(&mut self, alive: &BTreeSet<String>) {
        self.by_owner.retain(|uid, _| alive.contains(uid));
    }
}

async fn carry_out(
    client: &Client,
    cj: &CronJob,
    plan: &Plan,
    writes: &mut StatusWrites,
    done: &mut Pending,
    said: &mut Said,
) -> kube::Result<()> {
    let namespace = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let key = format!("{namespace}/{name}");
    let uid = cj.uid().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    done.since = Some(std::time::Instant::now());
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for victim in &plan.delete {
        match jobs.delete(victim, &background).await {
            Ok(_) => info!(cronjob = %key, job = %victim, "job deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
        done.deleted.push(victim.clone());
    }
    let mut status = plan.status.clone();
    if let Some((job, scheduled)) = &plan.create {
        let job: Job = serde_json::from_value(job.clone()).map_err(kube::Error::SerdeError)?;
        let job_name = job.name_any();
        let created = match jobs.create(&PostParams::default(), &job).await {
            Ok(created) => {
                info!(cronjob = %key, job = %job_name, scheduled = %scheduled, "job created");
                let message = format!("Created job {job_name}");
                event(client, cj, false, "SuccessfulCreate", &message).await;
                Some(created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created before (the status write was lost) or by someone else: ours
                // only if we control it.
                let existing = jobs.get(&job_name).await?;
                (controller_uid(&existing.metadata) == Some(uid.as_str())).then_some(existing)
            }
            Err(error) => {
                let message = format!("Error creating job: {error}");
                event(client, cj, true, "FailedCreate", &message).await;
                return Err(error);
            }
        };
        match (created, status.as_mut()) {
            (Some(created), Some(status)) => {
                done.created.push(created.name_any());
                if let Some(active) = status["active"].as_array_mut()
                    && !active.iter().any(|r| r["uid"] == json!(created.uid()))
                {
                    active.push(reference(&created));
                }
            }
            // Someone else's Job holds the name: this time is not ours to record.
            (None, _) => status = None,
            (Some(_), None) => {}
        }
    }
    if let Some(status) = status {
        let api: Api<CronJob> = Api::namespaced(client.clone(), &namespace);
        let written = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await?;
        writes.wrote(&uid, written.resource_version());
    }
    if !done.created.is_empty() {
        // A new run: what held the last one back may be said again.
        said.forget(&uid);
    }
    for e in &plan.events {
        if said.first_time(&uid, e) {
            event(client, cj, e.warning, e.reason, &e.message).await;
        }
    }
    Ok(())
}

/// Record an event on the CronJob; a failure is logged, never fatal.
async fn event(client: &Client, cj: &CronJob, warning: bool, reason: &str, message: &str) {
    let involved = json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": cj.name_any(),
                          "namespace": cj.namespace(), "uid": cj.uid()});
    let type_ = if warning { "Warning" } else { "Normal" };
    if let Err(error) = super::events::record(client, involved, NAME, type_, reason, message).await
    {
        warn!(cronjob = %cj.name_any(), %error, reason, "event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A CronJob created at 2026-01-01T00:00:00Z; `spec` and `status` add fields.
    fn cronjob(spec: Value, status: Value) -> CronJob {
        let mut full = json!({
            "schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                     "containers": [{"name": "c", "image": "busybox"}]}}}},
        });
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "d", "uid": "cj-uid",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": full, "status": status,
        }))
        .unwrap()
    }

    /// A Job of the CronJob for `scheduled`: `state` is Running, Complete or Failed.
    fn job(scheduled: &str, state: &str, started: &str) -> Arc<Job> {
        let t = at(scheduled);
        let mut value = json!({
            "metadata": {"name": job_name("tick", t), "namespace": "d", "uid": format!("uid-{scheduled}"),
                         "annotations": {SCHEDULED_TIMESTAMP: scheduled},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick",
                                              "uid": "cj-uid", "controller": true}]},
            "spec": {"template": {}},
            "status": {"startTime": started},
        });
        if state != "Running" {
            value["status"]["conditions"] = json!([{"type": state, "status": "True"}]);
        }
        if state == "Complete" {
            value["status"]["completionTime"] = json!(started);
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    /// The CronJob after `plan` was carried out (the created Job listed as active).
    fn after(cj: &CronJob, plan: &Plan) -> CronJob {
        let mut value = serde_json::to_value(cj).unwrap();
        let mut status = plan.status.clone().unwrap();
        if let Some((job, _)) = &plan.create {
            let name = job["metadata"]["name"].as_str().unwrap();
            status["active"].as_array_mut().unwrap().push(json!({
                "kind": "Job", "name": name, "namespace": "d",
                "uid": format!("uid-{}", job["metadata"]["annotations"][SCHEDULED_TIMESTAMP].as_str().unwrap())}));
        }
        value["status"] = status;
        serde_json::from_value(value).unwrap()
    }

    fn created(plan: &Plan) -> Option<(String, Timestamp)> {
        plan.create
            .as_ref()
            .map(|(job, t)| (job["metadata"]["name"].as_str().unwrap().to_owned(), *t))
    }

    fn reasons(plan: &Plan) -> Vec<&'static str> {
        plan.events.iter().map(|e| e.reason).collect()
    }

    #[test]
    fn it_starts_a_job_at_each_scheduled_time() {
        let cj = cronjob(json!({}), json!({}));
        let early = plan(&cj, &[], at("2026-01-01T00:04:00Z"));
        assert_eq!(early.create, None);
        assert_eq!(
            early.requeue,
            Some(Duration::from_secs(60) + NEXT_DELTA),
            "wakes at 00:05"
        );

        let p = plan(&cj, &[], at("2026-01-01T00:05:02Z"));
        let (job, scheduled) = p.create.clone().unwrap();
        assert_eq!(scheduled, at("2026-01-01T00:05:00Z"));
        // Minutes since the epoch: 1767225900 s / 60.
        assert_eq!(job["metadata"]["name"], "tick-29453765");
        assert_eq!(
            job["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            "2026-01-01T00:05:00Z"
        );
        assert_eq!(job["metadata"]["labels"]["team"], "a");
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "cj-uid");
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox"
        );
        assert_eq!(
            p.status.as_ref().unwrap()["lastScheduleTime"],
            "2026-01-01T00:05:00Z"
        );
        assert_eq!(p.requeue, Some(Duration::from_secs(298) + NEXT_DELTA));

        // Once started, not again for the same time, even before the status shows it.
        let running = [job_at("2026-01-01T00:05:00Z")];
        assert_eq!(plan(&cj, &running, at("2026-01-01T00:05:30Z")).create, None);
        let cj = after(&cj, &p);
        assert_eq!(plan(&cj, &running, at("2026-01-01T00:06:00Z")).create, None);
        // Allow: the next time starts beside the running one.
        assert_eq!(
            created(&plan(&cj, &running, at("2026-01-01T00:10:00Z")))
                .unwrap()
                .1,
            at("2026-01-01T00:10:00Z")
        );
    }

    fn job_at(scheduled: &str) -> Arc<Job> {
        job(scheduled, "Running", scheduled)
    }

    #[test]
    fn only_the_latest_missed_time_starts_and_too_many_warn() {
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:00:00Z"}),
        );
        let p = plan(&cj, &[], at("2026-01-01T00:17:00Z"));
        assert_eq!(created(&p).unwrap().1, at("2026-01-01T00:15:00Z"));
        assert!(!reasons(&p).contains(&"TooManyMissedTimes"));

        // A day of five-minute times missed (288): warn, and still start the latest.
        let p = plan(&cj, &[], at("2026-01-02T00:01:00Z"));
        assert_eq!(created(&p).unwrap().1, at("2026-01-02T00:00:00Z"));
        let warning = p
            .events
            .iter()
            .find(|e| e.reason == "TooManyMissedTimes")
            .unwrap();
        assert!(warning.warning);
        assert_eq!(
            warning.message,
            "too many missed start times: 288. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
        );
    }

    #[test]
    fn forbid_skips_a_time_while_a_job_runs_and_starts_it_once_that_ends() {
        let cj = cronjob(
            json!({"concurrencyPolicy": "Forbid"}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z",
                   "active": [{"kind": "Job", "name": job_name("tick", at("2026-01-01T00:05:00Z")),
                               "namespace": "d", "uid": "uid-2026-01-01T00:05:00Z"}]}),
        );
        let running = [job_at("2026-01-01T00:05:00Z")];
        let p = plan(&cj, &running, at("2026-01-01T00:10:10Z"));
        assert_eq!(p.create, None);
        assert_eq!(reasons(&p), ["JobAlreadyActive"]);
        assert!(!p.events[0].warning);

        // The running Job ends at 00:11: the missed 00:10 starts then.
        let ended = [job(
            "2026-01-01T00:05:00Z",
            "Complete",
            "2026-01-01T00:11:00Z",
        )];
        let p = plan(&cj, &ended, at("2026-01-01T00:11:00Z"));
        assert_eq!(created(&p).unwrap().1, at("2026-01-01T00:10:00Z"));
        assert_eq!(reasons(&p), ["SawCompletedJob"]);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status["active"], json!([]));
        assert_eq!(status["lastSuccessfulTime"], "2026-01-01T00:11:00Z");

        // With a 30 s starting deadline the 00:10 time is too late by then: skipped,
        // and the next start is 00:15.
        let strict = cronjob(
            json!({"concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 30}),
            serde_json::to_value(&cj.status).unwrap(),
        );
        let p = plan(&strict, &ended, at("2026-01-01T00:11:00Z"));
        assert_eq!(p.create, None);
        assert_eq!(p.requeue, Some(Duration::from_secs(240) + NEXT_DELTA));
        assert_eq!(
            created(&plan(&strict, &ended, at("2026-01-01T00:15:20Z")))
                .unwrap()
                .1,
            at("2026-01-01T00:15:00Z")
        );
    }

    #[test]
    fn replace_deletes_the_running_job_and_starts_the_new_one() {
        let cj = cronjob(
            json!({"concurrencyPolicy": "Replace"}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        let running = [job_at("2026-01-01T00:05:00Z")];
        let p = plan(&cj, &running, at("2026-01-01T00:10:01Z"));
        assert_eq!(p.delete, [job_name("tick", at("2026-01-01T00:05:00Z"))]);
        assert_eq!(created(&p).unwrap().1, at("2026-01-01T00:10:00Z"));
        assert_eq!(p.status.as_ref().unwrap()["active"], json!([]));
        assert_eq!(reasons(&p), ["SuccessfulDelete"]);
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let cj = cronjob(
            json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}),
            json!({"lastScheduleTime": "2026-01-01T00:25:00Z"}),
        );
        let jobs = [
            job("2026-01-01T00:05:00Z", "Complete", "2026-01-01T00:05:01Z"),
            job("2026-01-01T00:10:00Z", "Failed", "2026-01-01T00:10:01Z"),
            job("2026-01-01T00:15:00Z", "Complete", "2026-01-01T00:15:01Z"),
            job("2026-01-01T00:20:00Z", "Failed", "2026-01-01T00:20:01Z"),
            job("2026-01-01T00:25:00Z", "Complete", "2026-01-01T00:25:01Z"),
        ];
        let p = plan(&cj, &jobs, at("2026-01-01T00:26:00Z"));
        assert_eq!(
            p.delete,
            [
                job_name("tick", at("2026-01-01T00:05:00Z")),
                job_name("tick", at("2026-01-01T00:10:00Z")),
            ]
        );
        assert_eq!(
            p.status.as_ref().unwrap()["lastSuccessfulTime"],
            "2026-01-01T00:25:01Z"
        );
        // Zero keeps none.
        let none = cronjob(
            json!({"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0}),
            json!({"lastScheduleTime": "2026-01-01T00:25:00Z"}),
        );
        assert_eq!(
            plan(&none, &jobs, at("2026-01-01T00:26:00Z")).delete.len(),
            5
        );
    }

    #[test]
    fn times_are_wall_times_in_the_time_zone_across_daylight_saving() {
        let cj = cronjob(
            json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}),
            json!({"lastScheduleTime": "2026-03-07T14:00:00Z"}),
        );
        // 09:00 EDT on 2026-03-08 (after the change) is 13:00 UTC.
        assert_eq!(plan(&cj, &[], at("2026-03-08T12:59:00Z")).create, None);
        let p = plan(&cj, &[], at("2026-03-08T13:00:05Z"));
        let (job, scheduled) = p.create.unwrap();
        assert_eq!(scheduled, at("2026-03-08T13:00:00Z"));
        assert_eq!(
            job["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            "2026-03-08T09:00:00-04:00"
        );
    }

    #[test]
    fn bad_schedules_and_zones_are_reported_never_run() {
        let cj = cronjob(json!({"schedule": "61 * * * *"}), json!({}));
        let p = plan(&cj, &[], at("2026-01-01T01:00:00Z"));
        assert_eq!(p.create, None);
        assert_eq!(
            p.events,
            [Event::warning(
                "UnparseableSchedule",
                "unparseable schedule: \"61 * * * *\" : end of range (61) above maximum (59): 61"
                    .to_owned()
            )]
        );
        let cj = cronjob(json!({"timeZone": "Mars/Olympus"}), json!({}));
        let p = plan(&cj, &[], at("2026-01-01T01:00:00Z"));
        assert_eq!(p.create, None);
        assert_eq!(reasons(&p), ["UnknownTimeZone"]);
        assert_eq!(
            p.events[0].message,
            "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus"
        );
    }

    #[test]
    fn suspended_cronjobs_start_nothing_but_keep_their_status() {
        let cj = cronjob(
            json!({"suspend": true}),
            json!({"active": [{"kind": "Job", "name": "tick-gone", "namespace": "d", "uid": "gone"}]}),
        );
        let p = plan(&cj, &[], at("2026-01-01T01:00:00Z"));
        assert_eq!(p.create, None);
        assert_eq!(reasons(&p), ["MissingJob"]);
        assert_eq!(p.status.as_ref().unwrap()["active"], json!([]));
    }

    #[test]
    fn jobs_someone_else_made_are_not_counted_as_started() {
        let cj = cronjob(json!({"concurrencyPolicy": "Forbid"}), json!({}));
        let mut manual = Job::clone(&job_at("2026-01-01T00:05:00Z"));
        manual.metadata.name = Some("tick-manual-x".into());
        manual.metadata.annotations = None;
        let p = plan(&cj, &[Arc::new(manual)], at("2026-01-01T00:05:10Z"));
        assert_eq!(reasons(&p), ["UnexpectedJob"]);
        assert!(p.create.is_some(), "Forbid ignores a Job it did not start");
    }
}
