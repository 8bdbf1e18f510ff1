//! API tier with a simulated kubelet (`strait_tests::sim`): the Deployment controller, the
//! ReplicaSet controller and the scheduler, in the real `strait-control`, roll Deployments
//! out; kubectl 1.33 drives `rollout status|history|undo|pause|resume` and `scale`.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::watcher,
};
use serde_json::{Value, json};
use strait_tests::{
    ControlPlane,
    sim::{self, READY_AFTER_MS, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");
const HASH: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// A Deployment of `replicas` busybox pods labelled `app=<name>`.
fn deployment(
    name: &str,
    replicas: i32,
    image: &str,
    strategy: Value,
    pod_annotations: Value,
) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
                 "template": {"metadata": {"labels": {"app": name}, "annotations": pod_annotations},
                              "spec": {"containers": [{"name": "c", "image": image}]}}},
    }))
    .expect("a Deployment")
}

/// Set the image of the template's only container.
async fn set_image(deployments: &Api<Deployment>, name: &str, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("change the image of {name}: {e}"));
}

/// Wait until the Deployment's latest generation is rolled out as kubectl judges it.
async fn wait_rolled_out(deployments: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    sim::wait_for(
        &format!("{name} rolled out"),
        Duration::from_secs(60),
        || async {
            let d = deployments.get(name).await.map_err(|e| e.to_string())?;
            let status = d.status.clone().unwrap_or_default();
            let done = status.observed_generation >= d.metadata.generation
                && status.updated_replicas == Some(replicas)
                && status.replicas == Some(replicas)
                && status.available_replicas == Some(replicas);
            done.then_some(d).ok_or(format!("{status:?}"))
        },
    )
    .await
}

fn hash_of(pod: &Pod) -> String {
    pod.labels().get(HASH).cloned().unwrap_or_default()
}

/// Follow the pods of `app` through a watch until `finished` says so, calling `check` with
/// every state the watch shows (each one a state the API really held).
async fn follow_pods<F, Fut>(
    client: &Client,
    app: &str,
    timeout: Duration,
    mut check: impl FnMut(&BTreeMap<String, Pod>),
    mut finished: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let mut events = watcher(pods, config).boxed();
    let mut seen: BTreeMap<String, Pod> = BTreeMap::new();
    let mut listing: BTreeMap<String, Pod> = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    loop {
        assert!(
            Instant::now() < deadline,
            "{app}: not finished within {timeout:?}; pods: {:?}",
            seen.keys()
        );
        match tokio::time::timeout(Duration::from_millis(500), events.next()).await {
            Ok(Some(Ok(event))) => match event {
                // A (re)list is checked once whole.
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(p) => {
                    listing.insert(p.name_any(), p);
                }
                watcher::Event::InitDone => {
                    seen = std::mem::take(&mut listing);
                    check(&seen);
                }
                watcher::Event::Apply(p) => {
                    seen.insert(p.name_any(), p);
                    check(&seen);
                }
                watcher::Event::Delete(p) => {
                    seen.remove(&p.name_any());
                    check(&seen);
                }
            },
            Ok(Some(Err(error))) => panic!("{app}: watch failed: {error}"),
            Ok(None) => panic!("{app}: the watch ended"),
            Err(_) => {}
        }
        if finished().await {
            return;
        }
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

#[test]
fn a_rolling_update_keeps_within_max_surge_and_max_unavailable() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("sim-a"), SimNode::new("sim-b")],
        )
        .await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let strategy =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
        let slow = json!({READY_AFTER_MS: "300"});
        deployments
            .create(
                &PostParams::default(),
                &deployment("roll", 4, "busybox:1", strategy, slow),
            )
            .await
            .expect("create the Deployment");
        wait_rolled_out(&deployments, "roll", 4).await;
        let first = sets
            .list(&ListParams::default().labels("app=roll"))
            .await
            .expect("list");
        assert_eq!(first.items.len(), 1, "one ReplicaSet for one template");
        let old_hash = first.items[0].labels()[HASH].clone();
        assert_eq!(first.items[0].name_any(), format!("roll-{old_hash}"));

        set_image(&deployments, "roll", "busybox:2").await;
        // Pods that are not terminating, as maxSurge counts them; ready ones, as
        // maxUnavailable counts them (minReadySeconds is 0).
        let (mut most, mut fewest_ready, mut mixed_states) = (0, usize::MAX, 0);
        let mut shapes = Vec::new();
        follow_pods(
            &client,
            "roll",
            Duration::from_secs(90),
            |pods| {
                let live: Vec<&Pod> = pods.values().filter(|p| !terminating(p)).collect();
                let ready = live.iter().filter(|p| is_ready(p)).count();
                let old = live.iter().filter(|p| hash_of(p) == old_hash).count();
                most = most.max(live.len());
                fewest_ready = fewest_ready.min(ready);
                if old > 0 && old < live.len() {
                    mixed_states += 1;
                }
                let shape = (old, live.len() - old);
                if shapes.last() != Some(&shape) {
                    shapes.push(shape);
                }
                assert!(
                    live.len() <= 5,
                    "more than replicas + maxSurge pods: {shape:?}"
                );
                assert!(
                    ready >= 4,
                    "fewer than replicas - maxUnavailable ready: {shape:?}, {ready} ready"
                );
            },
            || async {
                let Ok(d) = deployments.get("roll").await else {
                    return false;
                };
                let status = d.status.unwrap_or_default();
                status.observed_generation >= d.metadata.generation
                    && status.updated_replicas == Some(4)
                    && status.replicas == Some(4)
                    && status.available_replicas == Some(4)
            },
        )
        .await;
        assert!(most >= 5, "the surge pod was never seen: {shapes:?}");
        assert!(
            mixed_states > 0 && shapes.len() >= 4,
            "no intermediate steps seen: {shapes:?}"
        );
        assert!(fewest_ready >= 4);

        let all = sets
            .list(&ListParams::default().labels("app=roll"))
            .await
            .expect("list");
        assert_eq!(all.items.len(), 2);
        let by_hash = |hash: &str| {
            all.items
                .iter()
                .find(|rs| rs.labels()[HASH] == hash)
                .cloned()
        };
        let old = by_hash(&old_hash).expect("the old ReplicaSet");
        assert_eq!(old.spec.as_ref().and_then(|s| s.replicas), Some(0));
        assert_eq!(old.annotations()[REVISION], "1");
        let new = all
            .items
            .iter()
            .find(|rs| rs.labels()[HASH] != old_hash)
            .expect("the new ReplicaSet");
        assert_eq!(new.spec.as_ref().and_then(|s| s.replicas), Some(4));
        assert_eq!(new.annotations()[REVISION], "2");
        let d = deployments.get("roll").await.expect("get");
        assert_eq!(d.annotations()[REVISION], "2");
        let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
        let progressing = conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .expect("Progressing");
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        sim::wait_for(
            "only the 4 new pods left",
            Duration::from_secs(30),
            || async {
                let left = pods
                    .list(&ListParams::default().labels("app=roll"))
                    .await
                    .map_err(|e| e.to_string())?;
                let hashes: Vec<String> = left.items.iter().map(hash_of).collect();
                (hashes.len() == 4 && hashes.iter().all(|h| *h == new.labels()[HASH]))
                    .then_some(())
                    .ok_or(format!("{hashes:?}"))
            },
        )
        .await;

        // A finished rollout is left alone: no write keeps repeating.
        let versions = || async {
            let d = deployments.get("roll").await.expect("get");
            let rs = sets
                .list(&ListParams::default().labels("app=roll"))
                .await
                .expect("list");
            let mut versions: Vec<_> = rs.items.iter().map(|r| r.resource_version()).collect();
            versions.push(d.resource_version());
            versions
        };
        let settled = versions().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            versions().await,
            settled,
            "writes after the rollout finished"
        );
    });
}

#[test]
fn recreate_starts_no_new_pod_while_an_old_one_exists() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let slow = json!({READY_AFTER_MS: "200"});
        deployments
            .create(
                &PostParams::default(),
                &deployment(
                    "recreate",
                    3,
                    "busybox:1",
                    json!({"type": "Recreate"}),
                    slow,
                ),
            )
            .await
            .expect("create the Deployment");
        wait_rolled_out(&deployments, "recreate", 3).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let before = pods
            .list(&ListParams::default().labels("app=recreate"))
            .await
            .expect("list");
        let old_hash = hash_of(&before.items[0]);

        set_image(&deployments, "recreate", "busybox:2").await;
        let mut saw_none = false;
        follow_pods(
            &client,
            "recreate",
            Duration::from_secs(90),
            |pods| {
                // Terminating pods count: Recreate waits until old pods are gone.
                let old = pods.values().filter(|p| hash_of(p) == old_hash).count();
                let new = pods.len() - old;
                assert!(old == 0 || new == 0, "{old} old and {new} new pods at once");
                saw_none |= pods.is_empty();
            },
            || async {
                let Ok(d) = deployments.get("recreate").await else {
                    return false;
                };
                let status = d.status.unwrap_or_default();
                status.observed_generation >= d.metadata.generation
                    && status.updated_replicas == Some(3)
                    && status.available_replicas == Some(3)
            },
        )
        .await;
        assert!(saw_none, "the old pods and the new never came apart");
    });
}

/// Run kubectl 1.33 from inside the test's runtime (blocking this worker only).
fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    tokio::task::block_in_place(|| plane.kubectl_ok("1.33", args))
}

#[test]
fn kubectl_rollout_status_history_undo_pause_resume_and_scale() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let plane = &plane;
    sim::block_on(plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let mut d = deployment(
            "kc",
            2,
            "busybox:1",
            json!({}),
            json!({READY_AFTER_MS: "100"}),
        );
        d.metadata.annotations = Some(BTreeMap::from([(
            "kubernetes.io/change-cause".into(),
            "first".into(),
        )]));
        deployments
            .create(&PostParams::default(), &d)
            .await
            .expect("create the Deployment");
        let out = kubectl(
            plane,
            &["rollout", "status", "deployment/kc", "--timeout=90s"],
        );
        assert!(
            out.contains("deployment \"kc\" successfully rolled out"),
            "{out}"
        );

        let patch = json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "second"}},
                           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
        deployments
            .patch("kc", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("second template");
        let out = kubectl(
            plane,
            &["rollout", "status", "deployment/kc", "--timeout=90s"],
        );
        assert!(
            out.contains("Waiting for deployment \"kc\" rollout to finish"),
            "no progress reported: {out}"
        );
        assert!(out.contains("successfully rolled out"), "{out}");

        let out = kubectl(plane, &["rollout", "history", "deployment/kc"]);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .filter(|r: &Vec<&str>| !r.is_empty())
            .collect();
        assert_eq!(rows, [vec!["1", "first"], vec!["2", "second"]], "{out}");

        // Undo: the first template comes back as revision 3.
        let out = kubectl(plane, &["rollout", "undo", "deployment/kc"]);
        assert!(out.contains("rolled back"), "{out}");
        let d = wait_rolled_out(&deployments, "kc", 2).await;
        let image = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers[0].image.clone());
        assert_eq!(image, Some(Some("busybox:1".into())));
        sim::wait_for("revision 3", Duration::from_secs(30), || async {
            let d = deployments.get("kc").await.map_err(|e| e.to_string())?;
            (d.annotations().get(REVISION).map(String::as_str) == Some("3"))
                .then_some(())
                .ok_or(format!("{:?}", d.annotations()))
        })
        .await;
        let all = sets
            .list(&ListParams::default().labels("app=kc"))
            .await
            .expect("list");
        assert_eq!(all.items.len(), 2, "the undo reuses the first ReplicaSet");
        let back = all
            .items
            .iter()
            .find(|rs| rs.annotations()[REVISION] == "3")
            .expect("revision 3");
        assert_eq!(
            back.annotations()["deployment.kubernetes.io/revision-history"],
            "1"
        );
        let out = kubectl(plane, &["rollout", "history", "deployment/kc"]);
        let revisions: Vec<&str> = out
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(revisions, ["2", "3"], "{out}");
        kubectl(
            plane,
            &["rollout", "status", "deployment/kc", "--timeout=90s"],
        );

        // Paused: a template change makes no ReplicaSet until resumed.
        kubectl(plane, &["rollout", "pause", "deployment/kc"]);
        set_image(&deployments, "kc", "busybox:3").await;
        sim::wait_for("the pause observed", Duration::from_secs(30), || async {
            let d = deployments.get("kc").await.map_err(|e| e.to_string())?;
            let status = d.status.clone().unwrap_or_default();
            let paused = status.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")
            });
            (paused && status.observed_generation >= d.metadata.generation)
                .then_some(())
                .ok_or(format!("{status:?}"))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let paused = sets
            .list(&ListParams::default().labels("app=kc"))
            .await
            .expect("list");
        assert_eq!(paused.items.len(), 2, "a ReplicaSet was made while paused");
        kubectl(plane, &["rollout", "resume", "deployment/kc"]);
        let out = kubectl(
            plane,
            &["rollout", "status", "deployment/kc", "--timeout=90s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        let resumed = sets
            .list(&ListParams::default().labels("app=kc"))
            .await
            .expect("list");
        assert_eq!(resumed.items.len(), 3);

        // Scale through the scale subresource.
        kubectl(plane, &["scale", "deployment/kc", "--replicas=3"]);
        wait_rolled_out(&deployments, "kc", 3).await;
        let out = kubectl(
            plane,
            &["rollout", "status", "deployment/kc", "--timeout=90s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
    });
}

#[test]
fn pods_that_never_become_ready_exceed_the_progress_deadline() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let plane = &plane;
    sim::block_on(plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let mut d = deployment(
            "stuck",
            2,
            "busybox:1",
            json!({}),
            json!({sim::OUTCOME: "unready"}),
        );
        d.spec.as_mut().expect("a spec").progress_deadline_seconds = Some(3);
        deployments
            .create(&PostParams::default(), &d)
            .await
            .expect("create the Deployment");
        let status = sim::wait_for(
            "ProgressDeadlineExceeded",
            Duration::from_secs(60),
            || async {
                let d = deployments.get("stuck").await.map_err(|e| e.to_string())?;
                let status = d.status.unwrap_or_default();
                let c = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Progressing")
                    .cloned();
                c.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                    .map(|c| (c, status.clone()))
                    .ok_or(format!("{status:?}"))
            },
        )
        .await;
        let (progressing, status) = status;
        assert_eq!(progressing.status, "False");
        assert!(
            progressing
                .message
                .unwrap_or_default()
                .ends_with("has timed out progressing.")
        );
        assert_eq!(status.available_replicas, Some(0));
        let available = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Available")
            .expect("Available");
        assert_eq!(
            available.reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
        let out = tokio::task::block_in_place(|| {
            plane.kubectl(
                "1.33",
                &["rollout", "status", "deployment/stuck", "--timeout=30s"],
            )
        });
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("exceeded its progress deadline"),
            "{stderr}"
        );
    });
}
