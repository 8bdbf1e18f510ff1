//! API tier with a simulated kubelet (`strait_tests::sim`): the Job controller, in the real
//! `strait-control`, runs Jobs to completion or failure on simulated nodes.

use std::{collections::BTreeSet, path::Path, time::Duration};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

/// A Job named `name` whose pods end with `outcome` after `run_ms`; `spec` adds fields.
fn job(name: &str, outcome: &str, run_ms: u64, spec: Value) -> Job {
    let mut full = json!({
        "template": {
            "metadata": {"annotations": {"sim.strait.dev/outcome": outcome,
                                         "sim.strait.dev/run-ms": run_ms.to_string()}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
        },
    });
    for (k, v) in spec.as_object().expect("a spec object") {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": full})).expect("a Job")
}

/// The Job's condition of `kind` that is True, as (reason, message).
fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn wait_for_condition(jobs: &Api<Job>, name: &str, kind: &str, timeout: u64) -> Job {
    sim::wait_for(
        &format!("job {name} {kind}"),
        Duration::from_secs(timeout),
        || async {
            let job = jobs.get(name).await.map_err(|e| e.to_string())?;
            match condition(&job, kind) {
                Some(_) => Ok(job),
                None => Err(format!("{:?}", job.status)),
            }
        },
    )
    .await
}

async fn pods_of(client: &Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods")
        .items
}

fn running(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count()
}

#[test]
fn a_job_runs_three_completions_two_at_a_time() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let spec = json!({"completions": 3, "parallelism": 2});
        jobs.create(&PostParams::default(), &job("three", "succeed", 400, spec))
            .await
            .expect("create the Job");
        // Watch the pods while the Job runs: never more than two at once.
        let most = sim::wait_for("job three Complete", Duration::from_secs(60), || async {
            let pods = pods_of(&client, "three").await;
            let job = jobs.get("three").await.map_err(|e| e.to_string())?;
            let now_running = running(&pods);
            if now_running > 2 {
                return Ok(Err(format!("{now_running} pods running at once")));
            }
            match condition(&job, "Complete") {
                Some(_) => Ok(Ok(job)),
                None => Err(format!("{} running; {:?}", now_running, job.status)),
            }
        })
        .await;
        let done = most.unwrap_or_else(|e| panic!("{e}"));
        let status = done.status.as_ref().expect("a status");
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.active.unwrap_or(0), 0);
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert_eq!(
            condition(&done, "Complete"),
            Some((
                "CompletionsReached".into(),
                "Reached expected number of succeeded pods".into()
            ))
        );
        assert!(condition(&done, "SuccessCriteriaMet").is_some());
        let pods = pods_of(&client, "three").await;
        assert_eq!(pods.len(), 3, "one pod per completion, none retried");
        for pod in &pods {
            assert!(pod.name_any().starts_with("three-"), "{}", pod.name_any());
            let uid = pod.labels().get("batch.kubernetes.io/controller-uid");
            assert_eq!(uid.map(String::as_str), done.uid().as_deref());
            assert_eq!(
                pod.owner_references()[0].uid,
                done.uid().unwrap_or_default()
            );
        }
    });
}

#[test]
fn an_indexed_job_completes_every_index() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let spec = json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"});
        jobs.create(&PostParams::default(), &job("idx", "succeed", 200, spec))
            .await
            .expect("create the Job");
        let done = wait_for_condition(&jobs, "idx", "Complete", 60).await;
        let status = done.status.as_ref().expect("a status");
        assert_eq!(status.completed_indexes.as_deref(), Some("0-3"));
        assert_eq!(status.succeeded, Some(4));
        let pods = pods_of(&client, "idx").await;
        let mut indexes = BTreeSet::new();
        for pod in &pods {
            let index = pod
                .annotations()
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
                .expect("an index annotation");
            let hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
            assert_eq!(hostname, Some(format!("idx-{index}")));
            assert!(pod.name_any().starts_with(&format!("idx-{index}-")));
            indexes.insert(index);
        }
        assert_eq!(indexes, ["0", "1", "2", "3"].map(String::from).into());
    });
}

#[test]
fn a_failing_job_fails_past_its_backoff_limit() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        jobs.create(
            &PostParams::default(),
            &job("flaky", "fail", 100, json!({"backoffLimit": 2})),
        )
        .await
        .expect("create the Job");
        let failed = wait_for_condition(&jobs, "flaky", "Failed", 60).await;
        assert_eq!(
            condition(&failed, "Failed"),
            Some((
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into()
            ))
        );
        assert!(condition(&failed, "FailureTarget").is_some());
        assert_eq!(failed.status.as_ref().and_then(|s| s.failed), Some(3));
        assert_eq!(
            pods_of(&client, "flaky").await.len(),
            3,
            "a retry per failure"
        );
    });
}

#[test]
fn a_job_past_its_deadline_fails_and_its_pods_are_stopped() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let spec = json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 2});
        jobs.create(
            &PostParams::default(),
            &job("slow", "succeed", 600_000, spec),
        )
        .await
        .expect("create the Job");
        let failed = wait_for_condition(&jobs, "slow", "Failed", 60).await;
        assert_eq!(
            condition(&failed, "Failed"),
            Some((
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into()
            ))
        );
        let status = failed.status.as_ref().expect("a status");
        assert_eq!(status.active.unwrap_or(0), 0);
        assert_eq!(status.failed, Some(2), "the stopped pods count as failed");
        assert_eq!(status.completion_time, None);
        // Failed is written only once the pods are gone.
        assert_eq!(running(&pods_of(&client, "slow").await), 0);
    });
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        jobs.create(
            &PostParams::default(),
            &job(
                "brief",
                "succeed",
                100,
                json!({"ttlSecondsAfterFinished": 2}),
            ),
        )
        .await
        .expect("create the Job");
        wait_for_condition(&jobs, "brief", "Complete", 60).await;
        sim::wait_for("job brief deleted", Duration::from_secs(60), || async {
            match jobs.get_opt("brief").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(job) => Err(format!("still there: {:?}", job.status)),
            }
        })
        .await;
        // Background propagation: the garbage collector removes its pods.
        sim::wait_for(
            "job brief's pods deleted",
            Duration::from_secs(60),
            || async {
                let left = pods_of(&client, "brief").await;
                left.is_empty()
                    .then_some(())
                    .ok_or(format!("{} pods left", left.len()))
            },
        )
        .await;
    });
}

#[test]
fn a_suspended_job_starts_nothing_until_resumed() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        jobs.create(
            &PostParams::default(),
            &job("held", "succeed", 100, json!({"suspend": true})),
        )
        .await
        .expect("create the Job");
        let held = wait_for_condition(&jobs, "held", "Suspended", 30).await;
        assert_eq!(
            condition(&held, "Suspended"),
            Some(("JobSuspended".into(), "Job suspended".into()))
        );
        assert_eq!(
            held.status.as_ref().and_then(|s| s.start_time.as_ref()),
            None
        );
        assert!(pods_of(&client, "held").await.is_empty());

        jobs.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .expect("resume the Job");
        let done = wait_for_condition(&jobs, "held", "Complete", 60).await;
        let suspended = done
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Suspended"))
            .map(|c| (c.status.clone(), c.reason.clone()));
        assert_eq!(suspended, Some(("False".into(), Some("JobResumed".into()))));
        assert!(
            done.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .is_some()
        );
    });
}
