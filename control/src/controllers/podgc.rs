//! The pod garbage collector, as kube-controller-manager's: pods nobody else will finish.
//!
//! - Orphaned pods, bound to a node that no longer exists (checked by a live GET, since the
//!   cache may not show a node just created), are marked Failed and deleted at once.
//! - Pods being deleted that were never scheduled, and those on a node that is not Ready and
//!   tainted `node.kubernetes.io/out-of-service`, are deleted at once: no kubelet will.
//! - Terminated pods (Succeeded or Failed) beyond `--terminated-pod-gc-threshold` are
//!   deleted, oldest first; a threshold of 0 or less keeps them all.

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::json;
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::pods::is_finished;

/// The default `--terminated-pod-gc-threshold`.
pub const DEFAULT_THRESHOLD: i64 = 12500;

/// The taint that says a node is out of service for good.
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Why a pod is collected, and what its DisruptionTarget condition then says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Bound to a node the cache does not hold (confirmed live before acting).
    Orphaned,
    /// Being deleted without ever having been scheduled.
    UnscheduledTerminating,
    /// Being deleted on a node that is out of service.
    OutOfService,
    /// One terminated pod too many.
    Terminated,
}

impl Reason {
    /// The DisruptionTarget message kube-controller-manager writes, if it writes one.
    fn message(self) -> Option<&'static str> {
        match self {
            Self::Orphaned => Some("PodGC: node no longer exists"),
            Self::OutOfService => Some("PodGC: node is out-of-service"),
            Self::UnscheduledTerminating | Self::Terminated => None,
        }
    }
}

/// The node facts the collector needs: whether it is Ready and out of service.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeFacts {
    pub ready: bool,
    pub out_of_service: bool,
}

impl NodeFacts {
    pub fn of(node: &Node) -> Self {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let out_of_service = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t.key == OUT_OF_SERVICE && t.effect == "NoExecute")
            });
        Self {
            ready,
            out_of_service,
        }
    }
}

/// The pods to collect and why, given every pod and the nodes by name. Pure.
pub fn plan<'a>(
    pods: &'a [Arc<Pod>],
    nodes: &HashMap<String, NodeFacts>,
    threshold: i64,
) -> Vec<(&'a Arc<Pod>, Reason)> {
    let mut collect = Vec::new();
    for pod in pods {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty());
        let deleting = pod.metadata.deletion_timestamp.is_some();
        match node.map(|n| nodes.get(n)) {
            Some(None) => collect.push((pod, Reason::Orphaned)),
            Some(Some(facts)) if deleting && !facts.ready && facts.out_of_service => {
                collect.push((pod, Reason::OutOfService));
            }
            None if deleting => collect.push((pod, Reason::UnscheduledTerminating)),
            _ => {}
        }
    }
    if threshold > 0 {
        let mut terminated: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| is_finished(p) && p.metadata.deletion_timestamp.is_none())
            .filter(|p| !collect.iter().any(|(c, _)| Arc::ptr_eq(c, p)))
            .collect();
        let excess = terminated
            .len()
            .saturating_sub(usize::try_from(threshold).unwrap_or(usize::MAX));
        if excess > 0 {
            terminated.sort_by_key(|p| {
                (
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    p.name_any(),
                )
            });
            collect.extend(
                terminated
                    .into_iter()
                    .take(excess)
                    .map(|p| (p, Reason::Terminated)),
            );
        }
    }
    collect
}

/// Watches Pods and Nodes and collects pods as [`plan`] says, until the process ends.
pub async fn run(client: Client, threshold: i64) {
    let changed = Arc::new(Notify::new());
    let (pods, w1) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let (nodes, w2) = cache(
        Api::<Node>::all(client.clone()),
        Default::default(),
        &changed,
        "nodes",
    );
    let collect = async move {
        let _ = tokio::join!(pods.wait_until_ready(), nodes.wait_until_ready());
        loop {
            let facts: HashMap<String, NodeFacts> = nodes
                .state()
                .iter()
                .map(|n| (n.name_any(), NodeFacts::of(n)))
                .collect();
            let all = pods.state();
            for (pod, reason) in plan(&all, &facts, threshold) {
                let who = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                if let Err(error) = collect_pod(&client, pod, reason).await {
                    warn!(pod = %who, ?reason, %error, "pod garbage collection failed");
                }
            }
            // kube-controller-manager looks every 20 s; events bring the next look sooner.
            let _ = tokio::time::timeout(Duration::from_secs(20), changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(w1, w2, collect);
}

async fn collect_pod(client: &Client, pod: &Pod, reason: Reason) -> kube::Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    if reason == Reason::Orphaned {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if Api::<Node>::all(client.clone())
            .get_opt(&node)
            .await?
            .is_some()
        {
            // The cache had not caught up with a new node.
            return Ok(());
        }
    }
    if let Some(message) = reason.message() {
        let mut status = json!({"conditions": super::pods::with_disruption_target(
            pod,
            "DeletionByPodGC",
            message,
            &super::events::now_text(),
        )});
        if !is_finished(pod) {
            status["phase"] = json!("Failed");
        }
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({
                    "metadata": {"resourceVersion": pod.resource_version()},
                    "status": status,
                })),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            info!(pod = %format!("{namespace}/{name}"), ?reason, "pod garbage collected");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: &str, deleting: bool) -> Arc<Pod> {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
            "spec": {"containers": []},
            "status": {"phase": phase},
        });
        if let Some(node) = node {
            value["spec"]["nodeName"] = json!(node);
        }
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2026-01-03T00:00:00Z");
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn names(plan: &[(&Arc<Pod>, Reason)]) -> Vec<(String, Reason)> {
        plan.iter().map(|(p, r)| (p.name_any(), *r)).collect()
    }

    #[test]
    fn pods_nobody_will_finish_are_collected() {
        let nodes: HashMap<String, NodeFacts> = [
            (
                "live".to_owned(),
                NodeFacts {
                    ready: true,
                    out_of_service: false,
                },
            ),
            (
                "dead".to_owned(),
                NodeFacts {
                    ready: false,
                    out_of_service: true,
                },
            ),
        ]
        .into();
        let pods = vec![
            pod(
                "on-live",
                Some("live"),
                "Running",
                "2026-01-01T00:00:00Z",
                false,
            ),
            pod(
                "on-gone",
                Some("gone"),
                "Running",
                "2026-01-01T00:00:00Z",
                false,
            ),
            pod(
                "pending-deleted",
                None,
                "Pending",
                "2026-01-01T00:00:00Z",
                true,
            ),
            pod("pending", None, "Pending", "2026-01-01T00:00:00Z", false),
            pod(
                "stuck",
                Some("dead"),
                "Running",
                "2026-01-01T00:00:00Z",
                true,
            ),
            pod(
                "running-on-dead",
                Some("dead"),
                "Running",
                "2026-01-01T00:00:00Z",
                false,
            ),
        ];
        assert_eq!(
            names(&plan(&pods, &nodes, DEFAULT_THRESHOLD)),
            [
                ("on-gone".to_owned(), Reason::Orphaned),
                ("pending-deleted".to_owned(), Reason::UnscheduledTerminating),
                ("stuck".to_owned(), Reason::OutOfService),
            ]
        );
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_oldest_first() {
        let nodes: HashMap<String, NodeFacts> = [(
            "n".to_owned(),
            NodeFacts {
                ready: true,
                out_of_service: false,
            },
        )]
        .into();
        let pods = vec![
            pod("new", Some("n"), "Succeeded", "2026-01-01T00:00:03Z", false),
            pod("old", Some("n"), "Failed", "2026-01-01T00:00:01Z", false),
            pod("mid", Some("n"), "Succeeded", "2026-01-01T00:00:02Z", false),
            pod(
                "running",
                Some("n"),
                "Running",
                "2026-01-01T00:00:00Z",
                false,
            ),
        ];
        assert_eq!(
            names(&plan(&pods, &nodes, 1)),
            [
                ("old".to_owned(), Reason::Terminated),
                ("mid".to_owned(), Reason::Terminated)
            ]
        );
        assert!(plan(&pods, &nodes, 3).is_empty());
        assert!(plan(&pods, &nodes, 0).is_empty());
    }
}
