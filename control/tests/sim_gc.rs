//! API tier: the garbage collector in the real `strait-control`, with a simulated kubelet.
//! Deleting a ReplicaSet in the background, orphaning and in the foreground, and collecting
//! an object whose owner never existed.

use std::{path::Path, time::Duration};

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{ConfigMap, Pod},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");
const WAIT: Duration = Duration::from_secs(30);

/// A ReplicaSet `name` with `replicas` pods labelled `app=<name>`, running.
async fn running_replicaset(client: &Client, name: &str, replicas: usize) -> ReplicaSet {
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .expect("a ReplicaSet");
    let rs = sets
        .create(&PostParams::default(), &rs)
        .await
        .expect("create the ReplicaSet");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("app={name}");
    sim::wait_for("the ReplicaSet's pods running", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| e.to_string())?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == replicas)
            .then_some(())
            .ok_or(format!("{running} running"))
    })
    .await;
    rs
}

async fn pods_of(client: &Client, name: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .expect("list pods")
        .items
}

async fn gone<K>(api: &Api<K>, name: &str) -> Result<(), String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(format!("{name} still there")),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn a_replicaset_deleted_in_the_background_takes_its_pods_and_orphaning_keeps_them() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let kubectl = |args: &[&str]| plane.kubectl_ok("1.33", args);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("gc-a")]).await;
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");

        // Background (the default): the ReplicaSet goes at once, the collector takes the pods.
        running_replicaset(&client, "bg", 2).await;
        sets.delete("bg", &DeleteParams::default())
            .await
            .expect("delete the ReplicaSet");
        sim::wait_for("the ReplicaSet gone", WAIT, || gone(&sets, "bg")).await;
        sim::wait_for("its pods gone", WAIT, || async {
            let left = pods_of(&client, "bg").await;
            left.is_empty()
                .then_some(())
                .ok_or(format!("{} pods left", left.len()))
        })
        .await;

        // Orphan, as kubectl asks for it: the pods stay, without owner references.
        running_replicaset(&client, "orphans", 2).await;
        kubectl(&["delete", "rs", "orphans", "--cascade=orphan"]);
        sim::wait_for("the ReplicaSet gone", WAIT, || gone(&sets, "orphans")).await;
        let left = pods_of(&client, "orphans").await;
        assert_eq!(left.len(), 2, "orphaned pods must stay");
        for pod in &left {
            assert!(
                pod.owner_references().is_empty(),
                "{} still has owners: {:?}",
                pod.name_any(),
                pod.owner_references()
            );
            assert!(pod.metadata.deletion_timestamp.is_none());
        }
        // And they stay: nothing collects a pod without owners.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(pods_of(&client, "orphans").await.len(), 2);
    });
}

#[test]
fn a_foreground_deletion_waits_for_the_pods() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let kubectl = |args: &[&str]| plane.kubectl_ok("1.33", args);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("gc-b")]).await;
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        running_replicaset(&client, "fg", 2).await;
        // One pod is held by a finalizer of ours, so the deletion has to wait for it.
        let held = pods_of(&client, "fg").await[0].name_any();
        pods.patch(
            &held,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": ["example.com/hold"]}})),
        )
        .await
        .expect("hold a pod");

        kubectl(&["delete", "rs", "fg", "--cascade=foreground", "--wait=false"]);
        sim::wait_for("the held pod being deleted", WAIT, || async {
            let pod = pods.get(&held).await.map_err(|e| e.to_string())?;
            pod.metadata
                .deletion_timestamp
                .is_some()
                .then_some(())
                .ok_or("not yet".to_owned())
        })
        .await;
        let rs = sets.get("fg").await.expect("the ReplicaSet waits");
        assert!(rs.metadata.deletion_timestamp.is_some());
        assert!(
            rs.finalizers().iter().any(|f| f == "foregroundDeletion"),
            "{:?}",
            rs.finalizers()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            sets.get_opt("fg").await.expect("get").is_some(),
            "the ReplicaSet must wait for its pods"
        );

        pods.patch(
            &held,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release the pod");
        sim::wait_for("the pods gone", WAIT, || async {
            let left = pods_of(&client, "fg").await;
            left.is_empty()
                .then_some(())
                .ok_or(format!("{} pods left", left.len()))
        })
        .await;
        sim::wait_for("the ReplicaSet gone", WAIT, || gone(&sets, "fg")).await;
    });
}

#[test]
fn an_object_whose_owner_never_existed_is_collected() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let owner = maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "owner"}})).expect("a map"),
            )
            .await
            .expect("create the owner");
        let reference = |uid: &str| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]);
        // One names the owner by its uid; one names the same name with a uid that never
        // existed.
        for (name, uid) in [
            ("kept", owner.uid().expect("a uid")),
            (
                "impostor",
                "00000000-0000-0000-0000-000000000000".to_owned(),
            ),
        ] {
            let map = json!({"metadata": {"name": name, "ownerReferences": reference(&uid)}});
            maps.create(
                &PostParams::default(),
                &serde_json::from_value(map).expect("a map"),
            )
            .await
            .expect("create a dependent");
        }
        // One names both: the live owner keeps it, the reference to the absent one goes.
        let mut both = reference(&owner.uid().expect("a uid"));
        if let Some(refs) = both.as_array_mut() {
            refs.push(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "never",
                             "uid": "11111111-1111-1111-1111-111111111111"}),
            );
        }
        let shared = json!({"metadata": {"name": "shared", "ownerReferences": both}});
        maps.create(
            &PostParams::default(),
            &serde_json::from_value(shared).expect("a map"),
        )
        .await
        .expect("create a dependent of two owners");
        sim::wait_for("the impostor's dependent collected", WAIT, || {
            gone(&maps, "impostor")
        })
        .await;
        assert!(maps.get_opt("kept").await.expect("get").is_some());
        sim::wait_for("the dangling reference removed", WAIT, || async {
            let map = maps.get("shared").await.map_err(|e| e.to_string())?;
            let owners: Vec<&str> = map
                .owner_references()
                .iter()
                .map(|o| o.name.as_str())
                .collect();
            (owners == ["owner"])
                .then_some(())
                .ok_or(format!("{owners:?}"))
        })
        .await;

        // Deleting the real owner takes its dependent.
        maps.delete("owner", &DeleteParams::default())
            .await
            .expect("delete the owner");
        sim::wait_for("the dependents collected", WAIT, || async {
            gone(&maps, "kept").await?;
            gone(&maps, "shared").await
        })
        .await;
    });
}
