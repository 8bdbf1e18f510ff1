//! API tier with a simulated kubelet (`strait_tests::sim`): the CronJob controller, in the
//! real `strait-control`, starts a Job at the next minute and the Job controller runs it.
//! The rest of CronJob behaviour (missed times, concurrency, deadlines, time zones,
//! history) is unit-tested with injected time in `controllers::cronjob`; this test waits
//! for one real minute boundary at most.

use std::{path::Path, time::Duration};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::{
    Api, ResourceExt as _,
    api::{ListParams, PostParams},
};
use serde_json::json;
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

#[test]
fn a_cronjob_starts_a_job_at_the_next_minute_and_records_its_success() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let cronjob = serde_json::from_value(json!({
            "metadata": {"name": "every-minute"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "tick"}},
                "spec": {"template": {
                    "metadata": {"annotations": {"sim.strait.dev/outcome": "succeed",
                                                 "sim.strait.dev/run-ms": "200"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
        }))
        .expect("a CronJob");
        let created = cronjobs
            .create(&PostParams::default(), &cronjob)
            .await
            .expect("create the CronJob");

        // At most a minute to the next boundary, then the Job's short run.
        let done = sim::wait_for(
            "the CronJob's status to record a successful Job",
            Duration::from_secs(100),
            || async {
                let cj = cronjobs
                    .get("every-minute")
                    .await
                    .map_err(|e| e.to_string())?;
                let status = cj.status.clone().unwrap_or_default();
                match status.last_successful_time {
                    Some(_) if status.active.unwrap_or_default().is_empty() => Ok(cj),
                    _ => Err(format!("{:?}", cj.status)),
                }
            },
        )
        .await;

        let listed = jobs
            .list(&ListParams::default().labels("app=tick"))
            .await
            .expect("list jobs");
        let job = listed.items.first().expect("a Job from the CronJob");
        let scheduled: jiff::Timestamp = job
            .annotations()
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .expect("the scheduled-timestamp annotation")
            .parse()
            .expect("an RFC 3339 time");
        assert_eq!(scheduled.as_second() % 60, 0, "on a minute boundary");
        assert_eq!(
            job.name_any(),
            format!("every-minute-{}", scheduled.as_second() / 60)
        );
        assert_eq!(
            job.owner_references()[0].uid,
            created.uid().unwrap_or_default()
        );
        let complete = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        assert!(complete, "{:?}", job.status);
        let last = done
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref());
        assert_eq!(last.map(|t| t.0), Some(scheduled));
    });
}

/// Missed schedules as kube-controller-manager handles them, on the real clock: of several
/// times missed while suspended only the latest starts; with `Forbid` the next time, reached
/// while that Job still runs, is held until the Job ends and then started late (inside
/// `startingDeadlineSeconds`), never beside it.
#[test]
fn a_missed_schedule_with_forbid_starts_only_the_latest_and_waits_for_the_running_job() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        // The first Job runs until 10 s past the next minute boundary, so that boundary
        // falls while it is active.
        // Close to a boundary the controller might see the next minute already: wait past it.
        if 60 - jiff::Timestamp::now().as_second() % 60 < 15 {
            tokio::time::sleep(Duration::from_secs(16)).await;
        }
        let now = jiff::Timestamp::now();
        let to_boundary = 60 - now.as_second() % 60;
        let run_ms = (to_boundary + 10) * 1000;
        let cronjob = serde_json::from_value(json!({
            "metadata": {"name": "forbid"},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": 600, "suspend": true,
                     "jobTemplate": {
                "metadata": {"labels": {"app": "forbid"}},
                "spec": {"template": {
                    "metadata": {"annotations": {"sim.strait.dev/outcome": "succeed",
                                                 "sim.strait.dev/run-ms": run_ms.to_string()}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
        }))
        .expect("a CronJob");
        cronjobs
            .create(&PostParams::default(), &cronjob)
            .await
            .expect("create the CronJob");
        // As if the controller had last run it five minutes ago: four or five times missed.
        let last = jiff::Timestamp::from_second(now.as_second() / 60 * 60 - 300).expect("a time");
        cronjobs
            .patch_status(
                "forbid",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"status": {"lastScheduleTime": last.to_string()}})),
            )
            .await
            .expect("set lastScheduleTime");
        cronjobs
            .patch(
                "forbid",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"suspend": false}})),
            )
            .await
            .expect("resume the CronJob");

        let scheduled = |job: &Job| -> i64 {
            job.annotations()
                .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or(0, |t| t.as_second())
        };
        let first = sim::wait_for(
            "the Job for the latest missed time",
            Duration::from_secs(30),
            || async {
                let listed = jobs
                    .list(&ListParams::default().labels("app=forbid"))
                    .await
                    .map_err(|e| e.to_string())?;
                match listed.items.as_slice() {
                    [job] => Ok(job.clone()),
                    other => Err(format!("{} jobs", other.len())),
                }
            },
        )
        .await;
        assert!(
            scheduled(&first) >= last.as_second() + 240,
            "the latest missed time starts, not an older one: {:?} after {last}",
            first.annotations()
        );

        // The next boundary passes while the first Job runs; its Job starts once that ends.
        let second = sim::wait_for(
            "a second Job, after the first ends",
            Duration::from_secs(120),
            || async {
                let listed = jobs
                    .list(&ListParams::default().labels("app=forbid"))
                    .await
                    .map_err(|e| e.to_string())?;
                match listed.items.as_slice() {
                    [_, _] => Ok(listed.items.clone()),
                    other => Err(format!("{} jobs", other.len())),
                }
            },
        )
        .await;
        let first = second
            .iter()
            .find(|j| j.name_any() == first.name_any())
            .expect("the first Job is kept")
            .clone();
        let later = second
            .iter()
            .find(|j| j.name_any() != first.name_any())
            .expect("the second Job");
        let ended = first
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .map(|t| t.0)
            .expect("the first Job completed before the second started");
        let started = later
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .expect("a creation time");
        assert!(
            started >= ended,
            "Forbid: the second Job ({started}) began before the first ended ({ended})"
        );
        assert_eq!(
            scheduled(later),
            scheduled(&first) + 60,
            "the held time is the boundary that passed while the first Job ran"
        );
        assert!(
            started.as_second() > scheduled(later) + 5,
            "started late, when the first Job ended, not at its own time"
        );
    });
}
