//! The ReplicaSet controller, as kube-controller-manager's: each ReplicaSet keeps `replicas`
//! pods from its template, adopting matching orphans and releasing nothing it does not own;
//! its status counts them. The plan is pure ([`plan`]); [`run`] watches ReplicaSets and Pods
//! and carries the plan out.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;

use super::pods::{
    self, Expectations, available_in, controller_ref, controller_uid, is_active, is_available,
    is_ready, ready_since, selector_matches,
};
use tokio::sync::Notify;
use tracing::{info, warn};

/// What to do for one ReplicaSet.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create (from the template).
    pub create: usize,
    /// Pods to delete, by name, least valuable first.
    pub delete: Vec<String>,
    /// Orphans matching the selector to adopt, by name.
    pub adopt: Vec<String>,
    /// The status to write.
    pub status: Value,
    /// When a ready pod becomes available (`spec.minReadySeconds`), to look again then.
    pub requeue: Option<Duration>,
}

fn selects(rs: &ReplicaSet, pod: &Pod) -> bool {
    rs.spec
        .as_ref()
        .is_some_and(|s| selector_matches(&s.selector, pod.labels()))
}

/// The plan for `rs` given every pod of its namespace, at `now`. Pure.
pub fn plan(rs: &ReplicaSet, pods: &[Arc<Pod>], now: jiff::Timestamp) -> Plan {
    let uid = rs.uid().unwrap_or_default();
    let want = usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    let mut owned: Vec<&Arc<Pod>> = Vec::new();
    let mut adopt = Vec::new();
    for pod in pods.iter().filter(|p| is_active(p)) {
        match controller_uid(&pod.metadata) {
            Some(owner) if owner == uid => owned.push(pod),
            None if selects(rs, pod) && rs.metadata.deletion_timestamp.is_none() => {
                adopt.push(pod.name_any());
                owned.push(pod);
            }
            _ => {}
        }
    }
    let mut plan = Plan {
        adopt,
        ..Plan::default()
    };
    if rs.metadata.deletion_timestamp.is_some() {
        // Being deleted: its pods are the garbage collector's (or an orphaning's) to
        // handle, as kube-controller-manager syncs no replicas of a deleting ReplicaSet.
    } else if owned.len() < want {
        plan.create = want - owned.len();
    } else if owned.len() > want {
        // kube-controller-manager's order: unscheduled, then not ready, then the newest.
        let mut ranked = owned.clone();
        ranked.sort_by_key(|p| {
            let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (scheduled, is_ready(p), std::cmp::Reverse(created))
        });
        plan.delete = ranked
            .iter()
            .take(owned.len() - want)
            .map(|p| p.name_any())
            .collect();
    }
    let labelled = owned.len();
    let ready_count = owned.iter().filter(|p| is_ready(p)).count();
    // Available: ready for at least minReadySeconds, as kube-controller-manager counts it.
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let available_count = owned
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    plan.requeue = owned
        .iter()
        .filter_map(|p| ready_since(p))
        .filter_map(|since| available_in(since, min_ready, now))
        .min();
    plan.status = json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": labelled,
        "readyReplicas": ready_count,
        "availableReplicas": available_count,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
    });
    plan
}

/// A pod from the ReplicaSet's template, owned by it.
pub fn pod_from_template(rs: &ReplicaSet) -> Value {
    pods::pod_from_template(
        rs.spec.as_ref().and_then(|s| s.template.as_ref()),
        &rs.namespace().unwrap_or_default(),
        &format!("{}-", rs.name_any()),
        controller_ref("apps/v1", "ReplicaSet", &rs.metadata),
    )
}

/// Watches ReplicaSets and Pods and keeps each ReplicaSet's pods.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (sets, w1) = cache(
        Api::<ReplicaSet>::all(client.clone()),
        Default::default(),
        &changed,
        "replicasets",
    );
    let (pods, w2) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let reconcile = async move {
        let _ = tokio::join!(sets.wait_until_ready(), pods.wait_until_ready());
        let mut expectations = Expectations::default();
        loop {
            let now = jiff::Timestamp::now();
            // The next moment a ready pod becomes available (a status change no event
            // announces); at most 30 s, a resync.
            let mut next = Duration::from_secs(30);
            let mut by_namespace: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
            for pod in pods.state() {
                by_namespace
                    .entry(pod.namespace().unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            for rs in sets.state() {
                let namespace = rs.namespace().unwrap_or_default();
                let uid = rs.uid().unwrap_or_default();
                let in_namespace = by_namespace.get(&namespace).map_or(&[][..], Vec::as_slice);
                let owned_now = in_namespace
                    .iter()
                    .filter(|p| is_active(p) && controller_uid(&p.metadata) == Some(uid.as_str()))
                    .count();
                let still_there = |n: &str| {
                    in_namespace
                        .iter()
                        .any(|p| p.name_any() == n && is_active(p))
                };
                if !expectations.satisfied(&uid, owned_now, still_there) {
                    continue;
                }
                let plan = plan(&rs, in_namespace, now);
                if let Some(requeue) = plan.requeue {
                    next = next.min(requeue);
                }
                if let Err(error) = carry_out(&client, &rs, &plan).await {
                    warn!(replicaset = %format!("{namespace}/{}", rs.name_any()), %error, "replicaset sync failed");
                    continue;
                }
                expectations.expect(
                    &uid,
                    owned_now + plan.adopt.len(),
                    plan.create,
                    plan.delete.clone(),
                );
            }
            let _ = tokio::time::timeout(next, changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(w1, w2, reconcile);
}

async fn carry_out(client: &Client, rs: &ReplicaSet, plan: &Plan) -> kube::Result<()> {
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for orphan in &plan.adopt {
        let patch = json!({"metadata": {"ownerReferences": [
            controller_ref("apps/v1", "ReplicaSet", &rs.metadata)
        ]}});
        pods.patch(orphan, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for _ in 0..plan.create {
        let pod: Pod =
            serde_json::from_value(pod_from_template(rs)).map_err(kube::Error::SerdeError)?;
        let created = pods.create(&PostParams::default(), &pod).await?;
        info!(replicaset = %format!("{namespace}/{name}"), pod = %created.name_any(), "pod created");
    }
    for victim in &plan.delete {
        match pods.delete(victim, &DeleteParams::default()).await {
            Ok(_) => {
                info!(replicaset = %format!("{namespace}/{name}"), pod = %victim, "pod deleted")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    let current = serde_json::to_value(&rs.status).unwrap_or_default();
    if pods::status_differs(&current, &plan.status) {
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": plan.status})),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "d", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .unwrap()
    }

    fn pod(
        name: &str,
        owner: Option<&str>,
        node: Option<&str>,
        ready: bool,
        created: &str,
    ) -> Arc<Pod> {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}, "creationTimestamp": created},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if let Some(owner) = owner {
            value["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "x", "uid": owner, "controller": true}]);
        }
        if let Some(node) = node {
            value["spec"]["nodeName"] = json!(node);
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:01:00Z".parse().unwrap()
    }

    #[test]
    fn it_creates_what_is_missing_and_adopts_orphans() {
        let pods = vec![
            pod(
                "mine",
                Some("rs-uid"),
                Some("n"),
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod("orphan", None, Some("n"), false, "2026-01-01T00:00:01Z"),
            pod(
                "theirs",
                Some("other"),
                Some("n"),
                true,
                "2026-01-01T00:00:02Z",
            ),
        ];
        let p = plan(&rs(4), &pods, now());
        assert_eq!(p.create, 2);
        assert_eq!(p.adopt, ["orphan"]);
        assert!(p.delete.is_empty());
        assert_eq!(p.status["replicas"], 2);
        assert_eq!(p.status["readyReplicas"], 1);
        assert_eq!(p.status["observedGeneration"], 2);
        let template = pod_from_template(&rs(1));
        assert_eq!(template["metadata"]["generateName"], "web-abc-");
        assert_eq!(template["metadata"]["labels"]["app"], "web");
        assert_eq!(template["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
    }

    #[test]
    fn available_replicas_wait_for_min_ready_seconds() {
        let mut set = rs(2);
        if let Some(spec) = set.spec.as_mut() {
            spec.min_ready_seconds = Some(10);
        }
        let ready_at = |name: &str, at: &str| {
            let mut p = Pod::clone(&pod(name, Some("rs-uid"), Some("n"), true, at));
            if let Some(c) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
                c[0].last_transition_time = Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at.parse().unwrap()),
                );
            }
            Arc::new(p)
        };
        let pods = vec![
            ready_at("long-ready", "2026-01-01T00:00:00Z"),
            ready_at("just-ready", "2026-01-01T00:00:55Z"),
        ];
        let p = plan(&set, &pods, now());
        assert_eq!(p.status["readyReplicas"], 2);
        assert_eq!(p.status["availableReplicas"], 1);
        assert_eq!(p.requeue, Some(Duration::from_secs(5)));
    }

    #[test]
    fn scaling_down_removes_unscheduled_then_unready_then_newest() {
        let pods = vec![
            pod(
                "old-ready",
                Some("rs-uid"),
                Some("n"),
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "new-ready",
                Some("rs-uid"),
                Some("n"),
                true,
                "2026-01-01T00:00:05Z",
            ),
            pod(
                "unready",
                Some("rs-uid"),
                Some("n"),
                false,
                "2026-01-01T00:00:01Z",
            ),
            pod(
                "pending",
                Some("rs-uid"),
                None,
                false,
                "2026-01-01T00:00:02Z",
            ),
        ];
        assert_eq!(
            plan(&rs(1), &pods, now()).delete,
            ["pending", "unready", "new-ready"]
        );
        assert_eq!(
            plan(&rs(4), &pods, now()),
            Plan {
                status: plan(&rs(4), &pods, now()).status,
                ..Plan::default()
            }
        );
    }
}
