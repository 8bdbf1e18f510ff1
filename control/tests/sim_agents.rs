//! API tier with a simulated kubelet (`strait_tests::sim`): the agents controller, in the real
//! `strait-control`, keeps the DaemonSet `kube-system/strait-agent` whose status counts the
//! Nodes (their agents' versions and readiness), and the DaemonSet controller makes no pods
//! for it: the agents are host processes.

use std::{path::Path, time::Duration};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod},
};
use kube::{
    Api, ResourceExt as _,
    api::{Patch, PatchParams},
};
use serde_json::json;
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");
const WAIT: Duration = Duration::from_secs(30);
const VERSION: &str = "strait.dev/agent-version";

/// DESIRED CURRENT READY UP-TO-DATE AVAILABLE, as `kubectl get ds` shows them.
async fn counts(sets: &Api<DaemonSet>) -> Result<[i32; 5], String> {
    let ds = sets
        .get_opt("strait-agent")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no DaemonSet kube-system/strait-agent")?;
    let s = ds.status.unwrap_or_default();
    Ok([
        s.desired_number_scheduled,
        s.current_number_scheduled,
        s.number_ready,
        s.updated_number_scheduled.unwrap_or(0),
        s.number_available.unwrap_or(0),
    ])
}

async fn annotate<K>(api: &Api<K>, name: &str, version: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {VERSION: version}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotate {name}: {e}"));
}

async fn wait_counts(sets: &Api<DaemonSet>, what: &str, want: [i32; 5]) {
    sim::wait_for(what, WAIT, || async {
        let counts = counts(sets).await?;
        (counts == want)
            .then_some(())
            .ok_or(format!("{counts:?}, want {want:?}"))
    })
    .await;
}

#[test]
fn the_agents_daemon_set_counts_nodes_by_version_and_readiness_and_has_no_pods() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let plane = &plane;
    sim::block_on(plane, |client| async move {
        let kubelet = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("node-a"), SimNode::new("node-b")],
        )
        .await;
        let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
        let nodes: Api<Node> = Api::all(client.clone());

        // Made by the control plane, marked as host processes; no agent has reported yet.
        wait_counts(&sets, "the agents' DaemonSet", [2, 0, 2, 0, 2]).await;
        let ds = sets.get("strait-agent").await.expect("the DaemonSet");
        assert_eq!(
            ds.annotations()
                .get("strait.dev/host-agent")
                .map(String::as_str),
            Some("true")
        );

        // Agents report their versions: without a desired version, the newest is up to date.
        annotate(&nodes, "node-a", "0.1.0+aaaaaaaaaaaa").await;
        annotate(&nodes, "node-b", "0.2.0+bbbbbbbbbbbb").await;
        wait_counts(&sets, "versions counted", [2, 2, 2, 1, 2]).await;

        // An upgrade's desired version: nobody runs it until node-a's agent restarts with it.
        annotate(&sets, "strait-agent", "0.2.1+cccccccccccc").await;
        wait_counts(&sets, "the desired version counted", [2, 2, 2, 0, 2]).await;
        annotate(&nodes, "node-a", "0.2.1+cccccccccccc").await;
        wait_counts(&sets, "node-a up to date", [2, 2, 2, 1, 2]).await;

        // node-b's agent dies: its node is no longer Ready, so its daemon is unavailable.
        kubelet.lose("node-b");
        let not_ready = json!({"status": {"conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
        ]}});
        nodes
            .patch_status("node-b", &PatchParams::default(), &Patch::Merge(&not_ready))
            .await
            .expect("mark node-b not Ready");
        wait_counts(&sets, "node-b unavailable", [2, 2, 1, 1, 1]).await;
        let status = sets
            .get("strait-agent")
            .await
            .expect("the DaemonSet")
            .status
            .unwrap_or_default();
        assert_eq!(status.number_unavailable, Some(1));
        assert_eq!(status.observed_generation, Some(1));

        // The DaemonSet controller made no pods for it.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
        let listed = pods.list(&Default::default()).await.expect("list pods");
        let names: Vec<String> = listed.items.iter().map(|p| p.name_any()).collect();
        assert!(
            names.iter().all(|n| !n.starts_with("strait-agent")),
            "{names:?}"
        );
    });
}
