//! API tier with a simulated kubelet (`strait_tests::sim`): the ReplicaSet controller and
//! the scheduler, in the real `strait-control`, keep a ReplicaSet's pods across two nodes.

use std::{path::Path, time::Duration};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, ResourceExt as _,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

#[test]
fn a_replicaset_keeps_its_pods_running_on_simulated_nodes() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("sim-a"), SimNode::new("sim-b")],
        )
        .await;
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let rs = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .expect("a ReplicaSet");
        sets.create(&PostParams::default(), &rs)
            .await
            .expect("create the ReplicaSet");
        sim::wait_for("3 ready replicas", Duration::from_secs(20), || async {
            let rs = sets.get("web").await.map_err(|e| e.to_string())?;
            let ready = rs
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            (ready == 3).then_some(()).ok_or(format!("{:?}", rs.status))
        })
        .await;
        let running = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list pods");
        assert_eq!(running.items.len(), 3);
        for pod in &running.items {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            assert!(
                matches!(node, Some("sim-a" | "sim-b")),
                "{} on {node:?}",
                pod.name_any()
            );
            assert_eq!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Running")
            );
        }

        // Scale down: the simulated kubelet removes the deleted pod, the status follows.
        sets.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale down");
        sim::wait_for("one pod left", Duration::from_secs(20), || async {
            let left = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .map_err(|e| e.to_string())?;
            let rs = sets.get("web").await.map_err(|e| e.to_string())?;
            let replicas = rs.status.as_ref().map_or(0, |s| s.replicas);
            (left.items.len() == 1 && replicas == 1)
                .then_some(())
                .ok_or(format!("{} pods, status {:?}", left.items.len(), rs.status))
        })
        .await;
    });
}
