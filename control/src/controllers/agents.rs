//! The node agents, shown as the DaemonSet `kube-system/strait-agent`. Cilium runs its agent
//! as a DaemonSet, and users look there for "is every node's agent running, and on which
//! version"; Strait's agents are host processes (they run the pods, so they cannot be pods),
//! but the same question deserves the same answer: `kubectl get ds -n kube-system` and
//! `kubectl rollout status ds/strait-agent -n kube-system` work.
//!
//! The DaemonSet carries `strait.dev/host-agent: "true"`, so the DaemonSet controller makes
//! no pods for it, and its status is written here from the Nodes: every Node is a scheduled
//! daemon, one whose agent reports a version (the Node annotation `strait.dev/agent-version`)
//! is current, a Ready one is ready and available, and one whose version equals the desired
//! version (the DaemonSet's own `strait.dev/agent-version` annotation, or the newest any
//! node reports) is updated. `netctl node upgrade` sets that annotation, then restarts the
//! agents with the new binary node by node. The plan is pure ([`plan`]); [`run`] watches
//! the DaemonSet and the Nodes and carries it out.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Node};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use strait_host::agent::{
    DAEMON_SET_NAME, DAEMON_SET_NAMESPACE, HOST_AGENT_ANNOTATION, VERSION_ANNOTATION,
    desired_version,
};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::pods;

/// What to do about the agents' DaemonSet.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// It does not exist: create this object.
    Create(Value),
    /// Someone else's DaemonSet has the name (no host-agent annotation): leave it alone.
    Foreign,
    /// Its status should be this (written only if it differs).
    Status(Value),
}

/// Whether `ds` shows host processes rather than pods (`strait.dev/host-agent: "true"`).
pub fn is_host_agent(ds: &DaemonSet) -> bool {
    ds.annotations()
        .get(HOST_AGENT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The DaemonSet as it is created. Its template is valid (the API validates it like any
/// other) but describes the host process, not something to run: the image names the
/// agent, and it tolerates every taint, as the agent runs on every node.
pub fn daemon_set() -> Value {
    let labels = json!({"app.kubernetes.io/name": "strait-agent", "app.kubernetes.io/component": "node-agent"});
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": DAEMON_SET_NAME,
            "namespace": DAEMON_SET_NAMESPACE,
            "labels": labels,
            "annotations": {
                HOST_AGENT_ANNOTATION: "true",
                "kubernetes.io/description": "Strait's node agents: host processes, one per \
                    node, shown as a DaemonSet; its status is written from the Nodes. Upgrade \
                    them with `netctl node upgrade`.",
            },
        },
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "strait-agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": true,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "strait-agent", "image": "strait.dev/strait-agent:host"}],
                },
            },
        },
    })
}

/// The version a Node's agent reports, if any.
pub fn agent_version(node: &Node) -> Option<&str> {
    node.annotations()
        .get(VERSION_ANNOTATION)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The plan for the DaemonSet (`None`: it does not exist) given every Node. Pure.
pub fn plan(ds: Option<&DaemonSet>, nodes: &[Arc<Node>]) -> Plan {
    let Some(ds) = ds else {
        return Plan::Create(daemon_set());
    };
    if !is_host_agent(ds) {
        return Plan::Foreign;
    }
    // A Node being deleted has no daemon to count, as the DaemonSet controller counts it.
    let nodes: Vec<&Node> = nodes
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .collect();
    let desired = desired_version(
        ds.annotations().get(VERSION_ANNOTATION).map(String::as_str),
        nodes.iter().filter_map(|n| agent_version(n)),
    );
    let scheduled = nodes.len();
    let current = nodes.iter().filter(|n| agent_version(n).is_some()).count();
    let ready = nodes.iter().filter(|n| is_ready(n)).count();
    let updated = nodes
        .iter()
        .filter(|n| desired.is_some() && agent_version(n) == desired.as_deref())
        .count();
    Plan::Status(json!({
        "desiredNumberScheduled": scheduled,
        "currentNumberScheduled": current,
        "numberMisscheduled": 0,
        "numberReady": ready,
        // An agent is available when its node is Ready: it has no minReadySeconds to wait.
        "numberAvailable": ready,
        "numberUnavailable": scheduled - ready,
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.metadata.generation.unwrap_or(0),
    }))
}

/// Watches the DaemonSet and the Nodes and keeps the DaemonSet's status.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (sets, w1) = cache(
        Api::<DaemonSet>::namespaced(client.clone(), DAEMON_SET_NAMESPACE),
        Default::default(),
        &changed,
        "daemonsets",
    );
    let (nodes, w2) = cache(
        Api::<Node>::all(client.clone()),
        Default::default(),
        &changed,
        "nodes",
    );
    let reconcile = async move {
        let _ = tokio::join!(sets.wait_until_ready(), nodes.wait_until_ready());
        // Said once, not on every resync.
        let mut said_foreign = false;
        loop {
            let ds = sets
                .state()
                .into_iter()
                .find(|d| d.name_any() == DAEMON_SET_NAME);
            let plan = plan(ds.as_deref(), &nodes.state());
            if plan == Plan::Foreign {
                if !said_foreign {
                    warn!(
                        daemonset = %format!("{DAEMON_SET_NAMESPACE}/{DAEMON_SET_NAME}"),
                        "a DaemonSet without the {HOST_AGENT_ANNOTATION} annotation has the \
                         agents' name: the agents are not shown"
                    );
                }
                said_foreign = true;
            } else if let Err(error) = carry_out(&client, ds.as_deref(), &plan).await {
                warn!(
                    daemonset = %format!("{DAEMON_SET_NAMESPACE}/{DAEMON_SET_NAME}"),
                    %error,
                    "agents' daemonset sync failed"
                );
            }
            // At most 30 s between syncs, a resync.
            let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(w1, w2, reconcile);
}

async fn carry_out(client: &Client, ds: Option<&DaemonSet>, plan: &Plan) -> kube::Result<()> {
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), DAEMON_SET_NAMESPACE);
    match plan {
        Plan::Create(object) => {
            let object: DaemonSet =
                serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
            match sets.create(&PostParams::default(), &object).await {
                Ok(_) => info!(
                    daemonset = %format!("{DAEMON_SET_NAMESPACE}/{DAEMON_SET_NAME}"),
                    "agents' daemonset created"
                ),
                // Made since the cache was read (by an earlier run of this process).
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(error) => return Err(error),
            }
        }
        Plan::Foreign => {}
        Plan::Status(status) => {
            let current = ds
                .map(|d| serde_json::to_value(&d.status).unwrap_or_default())
                .unwrap_or_default();
            if pods::status_differs(&current, status) {
                sets.patch_status(
                    DAEMON_SET_NAME,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(annotations: Value) -> DaemonSet {
        let mut value = daemon_set();
        value["metadata"]["generation"] = json!(3);
        if let Some(extra) = annotations.as_object() {
            for (k, v) in extra {
                value["metadata"]["annotations"][k] = v.clone();
            }
        }
        serde_json::from_value(value).unwrap()
    }

    fn node(name: &str, ready: bool, version: Option<&str>) -> Arc<Node> {
        let mut value = json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"Unknown"}}]},
        });
        if let Some(version) = version {
            value["metadata"]["annotations"] = json!({VERSION_ANNOTATION: version});
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn a_missing_set_is_created_with_a_valid_template() {
        let Plan::Create(object) = plan(None, &[]) else {
            panic!("expected a creation");
        };
        let ds: DaemonSet = serde_json::from_value(object).unwrap();
        assert!(is_host_agent(&ds));
        assert_eq!(ds.namespace().as_deref(), Some("kube-system"));
        let spec = ds.spec.unwrap();
        let selector = spec.selector.match_labels.unwrap_or_default();
        let labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        assert!(!selector.is_empty());
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "the selector selects the template"
        );
    }

    #[test]
    fn someone_elses_set_is_left_alone() {
        let mut value = daemon_set();
        value["metadata"]["annotations"] = json!({});
        let theirs: DaemonSet = serde_json::from_value(value).unwrap();
        assert!(!is_host_agent(&theirs));
        assert_eq!(plan(Some(&theirs), &[node("a", true, None)]), Plan::Foreign);
    }

    #[test]
    fn the_status_counts_nodes_by_readiness_and_version() {
        let nodes = vec![
            node("new", true, Some("0.1.0+bbb")),
            node("old", true, Some("0.1.0+aaa")),
            node("down", false, Some("0.1.0+bbb")),
            node("never-reported", false, None),
        ];
        let Plan::Status(status) =
            plan(Some(&set(json!({VERSION_ANNOTATION: "0.1.0+bbb"}))), &nodes)
        else {
            panic!("expected a status");
        };
        assert_eq!(
            status,
            json!({
                "desiredNumberScheduled": 4,
                "currentNumberScheduled": 3,
                "numberMisscheduled": 0,
                "numberReady": 2,
                "numberAvailable": 2,
                "numberUnavailable": 2,
                "updatedNumberScheduled": 2,
                "observedGeneration": 3,
            })
        );
    }

    #[test]
    fn without_a_desired_version_the_newest_reported_counts_as_updated() {
        let nodes = vec![
            node("a", true, Some("0.1.0+aaa")),
            node("b", true, Some("0.2.0+ccc")),
        ];
        let Plan::Status(status) = plan(Some(&set(json!({}))), &nodes) else {
            panic!("expected a status");
        };
        assert_eq!(status["updatedNumberScheduled"], 1);
        // No node reports a version: none is updated.
        let Plan::Status(status) = plan(Some(&set(json!({}))), &[node("a", true, None)]) else {
            panic!("expected a status");
        };
        assert_eq!(status["updatedNumberScheduled"], 0);
        assert_eq!(status["currentNumberScheduled"], 0);
    }

    #[test]
    fn nodes_being_deleted_are_not_counted() {
        let mut gone = Node::clone(&node("gone", false, Some("0.1.0+aaa")));
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        let nodes = vec![node("a", true, Some("0.1.0+aaa")), Arc::new(gone)];
        let Plan::Status(status) = plan(Some(&set(json!({}))), &nodes) else {
            panic!("expected a status");
        };
        assert_eq!(status["desiredNumberScheduled"], 1);
        assert_eq!(status["numberUnavailable"], 0);
    }
}
