//! API tier with a simulated kubelet (`strait_tests::sim`): the scheduler in the real
//! `strait-control` honours required pod anti-affinity, spreads across zones, and retries a
//! pending pod when a node that fits it registers.

use std::{collections::BTreeMap, path::Path, time::Duration};

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Event, Pod},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

async fn create_replicaset(client: &Client, name: &str, replicas: i32, spec: Value) {
    let mut pod_spec = json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]});
    if let (Some(p), Value::Object(extra)) = (pod_spec.as_object_mut(), spec) {
        p.extend(extra);
    }
    let rs = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}},
    }))
    .expect("a ReplicaSet");
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .expect("create the ReplicaSet");
}

/// Pods labelled `app=<app>` by node ("" for none yet).
async fn placement(pods: &Api<Pod>, app: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| e.to_string())?;
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in list.items {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        by_node.entry(node).or_default().push(pod.name_any());
    }
    Ok(by_node)
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

async fn failed_scheduling(client: &Client, pod: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .filter_map(|e| e.message)
        .collect()
}

#[test]
fn required_anti_affinity_puts_one_replica_per_node_and_leaves_the_fourth_pending() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![
                SimNode::new("anti-a"),
                SimNode::new("anti-b"),
                SimNode::new("anti-c"),
            ],
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        create_replicaset(
            &client,
            "solo",
            4,
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
        )
        .await;
        let pending = sim::wait_for(
            "3 running pods on 3 nodes and one pending",
            Duration::from_secs(30),
            || async {
                let list = pods
                    .list(&ListParams::default().labels("app=solo"))
                    .await
                    .map_err(|e| e.to_string())?;
                let running_nodes: std::collections::BTreeSet<String> = list
                    .items
                    .iter()
                    .filter(|p| running(p))
                    .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                    .collect();
                let unbound: Vec<String> = list
                    .items
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
                    .map(|p| p.name_any())
                    .collect();
                if list.items.len() == 4 && running_nodes.len() == 3 && unbound.len() == 1 {
                    Ok(unbound[0].clone())
                } else {
                    Err(format!("running on {running_nodes:?}, unbound {unbound:?}"))
                }
            },
        )
        .await;
        let message = sim::wait_for(
            "a FailedScheduling event",
            Duration::from_secs(20),
            || async {
                failed_scheduling(&client, &pending)
                    .await
                    .pop()
                    .ok_or_else(|| "none yet".to_owned())
            },
        )
        .await;
        assert_eq!(
            message,
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
        );
        let pod = pods.get(&pending).await.expect("the pending pod");
        let condition = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")
            .expect("a PodScheduled condition");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_deref()),
            ("False", Some("Unschedulable"))
        );
    });
}

#[test]
fn topology_spread_balances_two_zones() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        // Zone z1 has twice the nodes; spreading must still keep the zones level.
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![
                SimNode::new("spread-a1").zone("z1"),
                SimNode::new("spread-a2").zone("z1"),
                SimNode::new("spread-b1").zone("z2"),
            ],
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        create_replicaset(
            &client,
            "level",
            6,
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "level"}}}]}),
        )
        .await;
        let by_node = sim::wait_for("6 bound pods", Duration::from_secs(30), || async {
            let by_node = placement(&pods, "level").await?;
            let bound: usize = by_node
                .iter()
                .filter(|(n, _)| !n.is_empty())
                .map(|(_, p)| p.len())
                .sum();
            (bound == 6)
                .then_some(by_node.clone())
                .ok_or(format!("{by_node:?}"))
        })
        .await;
        let count = |node: &str| by_node.get(node).map_or(0, Vec::len);
        let z1 = count("spread-a1") + count("spread-a2");
        let z2 = count("spread-b1");
        assert_eq!((z1, z2), (3, 3), "{by_node:?}");
    });
}

#[test]
fn a_pod_pending_for_want_of_a_node_is_scheduled_when_one_registers() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _small = SimKubelet::start(client.clone(), vec![SimNode::new("late-small")]).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "big-job"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                     "resources": {"requests": {"cpu": "8", "memory": "1Gi"}}}]},
        }))
        .expect("a Pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create the pod");
        let message = sim::wait_for(
            "a FailedScheduling event",
            Duration::from_secs(20),
            || async {
                failed_scheduling(&client, "big-job")
                    .await
                    .pop()
                    .ok_or_else(|| "none yet".to_owned())
            },
        )
        .await;
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        // Let the pod fail a few times, so that its backoff has grown past what the wait
        // below needs: the node event, not the backoff, brings it back.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let registered = std::time::Instant::now();
        let _big = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("late-big").resources("16", "32Gi")],
        )
        .await;
        sim::wait_for(
            "big-job running on late-big",
            Duration::from_secs(30),
            || async {
                let pod = pods.get("big-job").await.map_err(|e| e.to_string())?;
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                (node.as_deref() == Some("late-big") && running(&pod))
                    .then_some(())
                    .ok_or(format!("on {node:?}"))
            },
        )
        .await;
        eprintln!(
            "big-job running {:?} after its node registered",
            registered.elapsed()
        );
    });
}
