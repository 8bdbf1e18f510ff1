//! API tier with a simulated kubelet (`strait_tests::sim`): the DaemonSet controller, in the
//! real `strait-control`, runs one pod on each eligible node (its node selector, the nodes'
//! taints against its tolerations), follows a node that joins, and rolls a new template out
//! node by node within `maxUnavailable`, as `kubectl rollout status` reports.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Pod};
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

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The set's live pods by node: (revision hash, ready).
async fn by_node(pods: &Api<Pod>) -> BTreeMap<String, Vec<(String, bool)>> {
    let listed = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .expect("list pods");
    let mut nodes: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for pod in listed.items {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let hash = pod
            .labels()
            .get("controller-revision-hash")
            .cloned()
            .unwrap_or_default();
        nodes.entry(node).or_default().push((hash, is_ready(&pod)));
    }
    nodes
}

#[test]
fn a_daemonset_follows_eligible_nodes_and_rolls_out_node_by_node() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let plane = &plane;
    sim::block_on(plane, |client| async move {
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![
                SimNode::new("edge-a").label("role", "edge"),
                SimNode::new("edge-b").label("role", "edge"),
                SimNode::new("edge-tainted").label("role", "edge").taint(
                    "dedicated",
                    "db",
                    "NoSchedule",
                ),
                SimNode::new("core").label("role", "core"),
            ],
        )
        .await;
        let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let set = serde_json::from_value(json!({
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "agent"},
                                 "annotations": {"sim.strait.dev/ready-after-ms": "300"}},
                    "spec": {"nodeSelector": {"role": "edge"},
                             "containers": [{"name": "c", "image": "busybox:1"}]}}},
        }))
        .expect("a DaemonSet");
        sets.create(&PostParams::default(), &set)
            .await
            .expect("create the DaemonSet");

        // Eligible: the edge nodes without an untolerated taint.
        let placed = sim::wait_for(
            "a ready pod on each eligible node",
            Duration::from_secs(30),
            || async {
                let nodes = by_node(&pods).await;
                let ready = nodes.values().all(|p| p.len() == 1 && p[0].1);
                match nodes
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    ["edge-a", "edge-b"] if ready => Ok(nodes),
                    _ => Err(format!("{nodes:?}")),
                }
            },
        )
        .await;
        assert_eq!(placed.len(), 2);

        // A node that joins gets its pod.
        let _late = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("edge-c").label("role", "edge")],
        )
        .await;
        sim::wait_for("a pod on the new node", Duration::from_secs(30), || async {
            let nodes = by_node(&pods).await;
            let ready = nodes
                .get("edge-c")
                .is_some_and(|p| p.iter().any(|(_, r)| *r));
            if ready && nodes.len() == 3 {
                Ok(())
            } else {
                Err(format!("{nodes:?}"))
            }
        })
        .await;
        let status = sets
            .get("agent")
            .await
            .expect("get the DaemonSet")
            .status
            .expect("a status");
        assert_eq!(status.desired_number_scheduled, 3, "{status:?}");
        let old_hash = by_node(&pods).await["edge-a"][0].0.clone();

        // A new template rolls out with at most one node without a ready pod at any time.
        sets.patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}})),
        )
        .await
        .expect("update the template");
        let least_ready = Arc::new(AtomicUsize::new(usize::MAX));
        sim::wait_for(
            "every node on the new template",
            Duration::from_secs(60),
            || {
                let (pods, old_hash, least_ready) =
                    (pods.clone(), old_hash.clone(), Arc::clone(&least_ready));
                async move {
                    let nodes = by_node(&pods).await;
                    let ready = nodes.values().filter(|p| p.iter().any(|(_, r)| *r)).count();
                    least_ready.fetch_min(ready, Ordering::Relaxed);
                    let updated = nodes
                        .values()
                        .all(|p| p.len() == 1 && p[0].0 != old_hash && p[0].1);
                    if updated && nodes.len() == 3 {
                        Ok(())
                    } else {
                        Err(format!("{nodes:?}"))
                    }
                }
            },
        )
        .await;
        let least_ready = least_ready.load(Ordering::Relaxed);
        assert!(
            least_ready >= 2,
            "maxUnavailable 1 of 3 nodes, yet {least_ready} were ready at one point"
        );

        let out = plane.kubectl_ok(
            "1.33",
            &["rollout", "status", "daemonset/agent", "--timeout=60s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        let status = sets
            .get("agent")
            .await
            .expect("get the DaemonSet")
            .status
            .expect("a status");
        assert_eq!(
            (status.updated_number_scheduled, status.number_ready),
            (Some(3), 3),
            "{status:?}"
        );
        let owner = pods
            .list(&ListParams::default().labels("app=agent"))
            .await
            .expect("list pods")
            .items[0]
            .owner_references()[0]
            .kind
            .clone();
        assert_eq!(owner, "DaemonSet");
    });
}
