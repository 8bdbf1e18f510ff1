//! API tier with a simulated kubelet (`strait_tests::sim`): the StatefulSet controller and the
//! scheduler, in the real `strait-control`, keep StatefulSets' ordered pods and their claims,
//! roll them out by partition (and back, with `kubectl rollout undo`) and scale them down, as
//! kubectl 1.33 sees it.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{PersistentVolumeClaim, Pod},
};
use kube::{
    Api, ResourceExt as _,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

/// A StatefulSet `name` of `replicas` with a `data` claim template; `annotations` go on its
/// pods (to steer the simulated kubelet), `extra` into its spec.
fn stateful_set(name: &str, replicas: i32, annotations: Value, extra: Value) -> StatefulSet {
    let mut value = json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                     "spec": {"accessModes": ["ReadWriteOnce"],
                              "resources": {"requests": {"storage": "1Gi"}}}}]},
    });
    if let (Some(spec), Value::Object(e)) = (value["spec"].as_object_mut(), extra) {
        spec.extend(e);
    }
    serde_json::from_value(value).expect("a StatefulSet")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The set's live pods (not being deleted) by name.
async fn live_pods(pods: &Api<Pod>, app: &str) -> BTreeMap<String, Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p))
        .collect()
}

fn revision(pod: &Pod) -> String {
    pod.labels()
        .get("controller-revision-hash")
        .cloned()
        .unwrap_or_default()
}

/// Poll the set's pods every 50 ms until `done` says so, asserting `invariant` on every view.
async fn watch_until(
    pods: &Api<Pod>,
    app: &str,
    what: &str,
    invariant: impl Fn(&BTreeMap<String, Pod>),
    done: impl Fn(&BTreeMap<String, Pod>) -> bool,
) -> BTreeMap<String, Pod> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = live_pods(pods, app).await;
        invariant(&seen);
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {:?}",
            seen.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run kubectl 1.33 from inside the test's runtime (blocking this worker only).
fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    tokio::task::block_in_place(|| plane.kubectl_ok("1.33", args))
}

#[test]
fn an_ordered_set_starts_in_order_rolls_out_by_partition_and_scales_down_keeping_claims() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let plane = &plane;
    sim::block_on(plane, |client| async move {
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("sim-a"), SimNode::new("sim-b")],
        )
        .await;
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
        let set = stateful_set("db", 3, json!({sim::READY_AFTER_MS: "700"}), json!({}));
        sets.create(&PostParams::default(), &set)
            .await
            .expect("create the StatefulSet");

        // OrderedReady: db-N exists only once db-(N-1) is Ready.
        let ordered = |seen: &BTreeMap<String, Pod>| {
            for n in 1..3 {
                if seen.contains_key(&format!("db-{n}")) {
                    let before = format!("db-{}", n - 1);
                    assert!(
                        seen.get(&before).is_some_and(is_ready),
                        "db-{n} exists while {before} is not Ready: {:?}",
                        seen.keys().collect::<Vec<_>>()
                    );
                }
            }
        };
        let all_ready =
            |seen: &BTreeMap<String, Pod>| seen.len() == 3 && seen.values().all(is_ready);
        let running = watch_until(&pods, "db", "3 ready pods", ordered, all_ready).await;

        // Each pod: its identity, and its own claim mounted as `data`.
        for n in 0..3 {
            let name = format!("db-{n}");
            let pod = &running[&name];
            assert_eq!(pod.labels()["statefulset.kubernetes.io/pod-name"], name);
            assert_eq!(pod.labels()["apps.kubernetes.io/pod-index"], n.to_string());
            let spec = pod.spec.as_ref().expect("a pod spec");
            assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
            assert_eq!(spec.subdomain.as_deref(), Some("db"));
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == "data")
                .and_then(|v| v.persistent_volume_claim.as_ref())
                .unwrap_or_else(|| panic!("{name} mounts no claim as data"));
            assert_eq!(volume.claim_name, format!("data-db-{n}"));
        }
        let claim_names = |list: Vec<PersistentVolumeClaim>| {
            list.iter().map(|c| c.name_any()).collect::<Vec<_>>()
        };
        let made = claims
            .list(&ListParams::default())
            .await
            .expect("list claims");
        assert_eq!(
            claim_names(made.items),
            ["data-db-0", "data-db-1", "data-db-2"]
        );
        let claim = claims.get("data-db-1").await.expect("the claim of db-1");
        assert_eq!(claim.labels()["app"], "db");

        let out = kubectl(
            plane,
            &["rollout", "status", "statefulset/db", "--timeout=90s"],
        );
        assert!(out.contains("roll out complete"), "{out}");

        // A new template with partition 1: db-2 then db-1 move, db-0 stays.
        let old_revision = revision(&running["db-0"]);
        let patch = json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}},
        }});
        sets.patch("db", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("change the template");
        let new_revision =
            sim::wait_for("a new update revision", Duration::from_secs(30), || async {
                let set = sets.get("db").await.map_err(|e| e.to_string())?;
                let update = set.status.as_ref().and_then(|s| s.update_revision.clone());
                match update {
                    Some(u) if u != old_revision => Ok(u),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        let is_new = |seen: &BTreeMap<String, Pod>, name: &str| {
            seen.get(name).is_some_and(|p| revision(p) == new_revision)
        };
        let highest_first = |seen: &BTreeMap<String, Pod>| {
            assert!(
                !is_new(seen, "db-0"),
                "db-0 is below the partition and must keep its revision"
            );
            if is_new(seen, "db-1") {
                assert!(is_new(seen, "db-2"), "db-1 updated before db-2");
            }
        };
        let rolled = |seen: &BTreeMap<String, Pod>| {
            seen.len() == 3
                && seen.values().all(is_ready)
                && is_new(seen, "db-1")
                && is_new(seen, "db-2")
        };
        let after = watch_until(&pods, "db", "db-1 and db-2 updated", highest_first, rolled).await;
        assert_eq!(revision(&after["db-0"]), old_revision);
        assert_eq!(
            after["db-2"].spec.as_ref().expect("a spec").containers[0]
                .image
                .as_deref(),
            Some("busybox:2")
        );
        sim::wait_for("2 updated replicas", Duration::from_secs(30), || async {
            let set = sets.get("db").await.map_err(|e| e.to_string())?;
            let status = set.status.unwrap_or_default();
            (status.updated_replicas == Some(2)
                && status.current_revision == Some(old_revision.clone()))
            .then_some(())
            .ok_or(format!("{status:?}"))
        })
        .await;
        let out = kubectl(
            plane,
            &["rollout", "status", "statefulset/db", "--timeout=90s"],
        );
        assert!(out.contains("partitioned roll out complete"), "{out}");

        // The two templates are revisions 1 and 2; undo brings the first back, renumbered.
        let history = kubectl(plane, &["rollout", "history", "statefulset/db"]);
        let numbers: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .collect();
        assert_eq!(numbers, ["1", "2"], "{history}");
        kubectl(plane, &["rollout", "undo", "statefulset/db"]);
        let back = |seen: &BTreeMap<String, Pod>| {
            seen.len() == 3
                && seen
                    .values()
                    .all(|p| is_ready(p) && revision(p) == old_revision)
        };
        watch_until(
            &pods,
            "db",
            "every pod back at the first revision",
            |_| {},
            back,
        )
        .await;
        let set = sets.get("db").await.expect("the StatefulSet");
        let status = set.status.unwrap_or_default();
        assert_eq!(
            status.update_revision.as_deref(),
            Some(old_revision.as_str())
        );
        let history = kubectl(plane, &["rollout", "history", "statefulset/db"]);
        assert!(history.lines().any(|l| l.starts_with('3')), "{history}");

        // Scale down to one: db-2 goes before db-1, and the claims stay.
        sets.patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale down");
        let top_down = |seen: &BTreeMap<String, Pod>| {
            if !seen.contains_key("db-1") {
                assert!(!seen.contains_key("db-2"), "db-1 went before db-2");
            }
        };
        let one_left = |seen: &BTreeMap<String, Pod>| seen.keys().eq(["db-0"].iter());
        watch_until(&pods, "db", "only db-0", top_down, one_left).await;
        sim::wait_for(
            "a status of one replica",
            Duration::from_secs(30),
            || async {
                let set = sets.get("db").await.map_err(|e| e.to_string())?;
                let status = set.status.unwrap_or_default();
                (status.replicas == 1 && status.ready_replicas == Some(1))
                    .then_some(())
                    .ok_or(format!("{status:?}"))
            },
        )
        .await;
        let kept = claims
            .list(&ListParams::default())
            .await
            .expect("list claims");
        assert_eq!(
            claim_names(kept.items),
            ["data-db-0", "data-db-1", "data-db-2"],
            "claims are retained after scale down"
        );
    });
}

#[test]
fn a_parallel_set_starts_every_pod_at_once() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        // Never ready: an ordered set would stop at its first pod.
        let set = stateful_set(
            "par",
            3,
            json!({sim::OUTCOME: "unready"}),
            json!({"podManagementPolicy": "Parallel"}),
        );
        sets.create(&PostParams::default(), &set)
            .await
            .expect("create the StatefulSet");
        sim::wait_for("3 pods, none ready", Duration::from_secs(60), || async {
            let seen = live_pods(&pods, "par").await;
            let names: Vec<&String> = seen.keys().collect();
            (names == ["par-0", "par-1", "par-2"] && !seen.values().any(is_ready))
                .then_some(())
                .ok_or(format!("{names:?}"))
        })
        .await;
        sim::wait_for(
            "a status of 3 unready replicas",
            Duration::from_secs(30),
            || async {
                let set = sets.get("par").await.map_err(|e| e.to_string())?;
                let status = set.status.unwrap_or_default();
                (status.replicas == 3 && status.ready_replicas.unwrap_or(0) == 0)
                    .then_some(())
                    .ok_or(format!("{status:?}"))
            },
        )
        .await;
    });
}

#[test]
fn claims_follow_the_retention_policy_on_scale_down_and_deletion() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("sim-a")]).await;
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
        let set = stateful_set(
            "ret",
            2,
            json!({}),
            json!({"persistentVolumeClaimRetentionPolicy":
                {"whenDeleted": "Delete", "whenScaled": "Delete"}}),
        );
        sets.create(&PostParams::default(), &set)
            .await
            .expect("create the StatefulSet");
        let claim_names = || async {
            let list = claims
                .list(&ListParams::default().labels("app=ret"))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>())
        };
        sim::wait_for("2 ready pods", Duration::from_secs(60), || async {
            let seen = live_pods(&pods, "ret").await;
            (seen.len() == 2 && seen.values().all(is_ready))
                .then_some(())
                .ok_or(format!("{:?}", seen.keys().collect::<Vec<_>>()))
        })
        .await;
        let kept = claims.get("data-ret-0").await.expect("the claim of ret-0");
        let owners: Vec<String> = kept
            .owner_references()
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect();
        assert_eq!(owners, ["StatefulSet/ret"], "whenDeleted: Delete");

        // whenScaled: Delete: the claim of the pod scaled away goes with it.
        sets.patch(
            "ret",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale down");
        sim::wait_for("only data-ret-0", Duration::from_secs(60), || async {
            let names = claim_names().await?;
            (names == ["data-ret-0"])
                .then_some(())
                .ok_or(format!("{names:?}"))
        })
        .await;

        // whenDeleted: Delete: the set's deletion takes the remaining claim.
        sets.delete("ret", &Default::default())
            .await
            .expect("delete the StatefulSet");
        sim::wait_for("no claims", Duration::from_secs(60), || async {
            let names = claim_names().await?;
            names.is_empty().then_some(()).ok_or(format!("{names:?}"))
        })
        .await;
    });
}
