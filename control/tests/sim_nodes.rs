//! API tier: the node lifecycle controller, the pod garbage collector, the ServiceAccount
//! controller and the local load balancer pool, in the real `strait-control`, with
//! simulated kubelets.

use std::{path::Path, time::Duration};

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Node, Pod, Service, ServiceAccount},
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
const WAIT: Duration = Duration::from_secs(40);

fn node_ready(node: &Node) -> Option<(String, Option<String>)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn taint_keys(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

async fn create_replicaset(
    client: &Client,
    name: &str,
    replicas: i32,
    tolerations: serde_json::Value,
) {
    let rs = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                       "tolerations": tolerations}}},
    }))
    .expect("a ReplicaSet");
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .expect("create the ReplicaSet");
}

#[test]
fn a_lost_node_goes_unknown_and_its_pods_move_to_the_live_node() {
    let plane = ControlPlane::start(Path::new(BIN), &["--node-monitor-grace-period", "4s"]);
    sim::block_on(&plane, |client| async move {
        let kubelet = SimKubelet::start(
            client.clone(),
            vec![SimNode::new("lost"), SimNode::new("live")],
        )
        .await;
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        // Pods that tolerate an unreachable node for 2 s only; the default would be 300 s.
        let tolerate_briefly = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                       "effect": "NoExecute", "tolerationSeconds": 2}]);
        // Pinned to the node that will be lost first, then free to go anywhere.
        create_replicaset(&client, "movers", 2, tolerate_briefly).await;
        let on_lost = sim::wait_for("two pods running", WAIT, || async {
            let list = pods
                .list(&ListParams::default().labels("app=movers"))
                .await
                .map_err(|e| e.to_string())?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| phase(p) == "Running")
                .collect();
            (running.len() == 2)
                .then_some(running)
                .ok_or("not yet".to_owned())
        })
        .await;
        // The API server gave the pods the default not-ready toleration beside their own.
        let tolerations = on_lost[0]
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
                    && t.toleration_seconds == Some(300)),
            "{tolerations:?}"
        );
        assert!(
            tolerations.iter().any(
                |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                    && t.toleration_seconds == Some(2)
            ),
            "{tolerations:?}"
        );
        // Lose whichever node holds a pod (both may).
        let victim = node_of(&on_lost[0]).expect("a bound pod").to_owned();
        let survivor = if victim == "lost" { "live" } else { "lost" };
        kubelet.lose(&victim);

        let node = sim::wait_for("the lost node Unknown and tainted", WAIT, || async {
            let node = nodes.get(&victim).await.map_err(|e| e.to_string())?;
            let taints = taint_keys(&node);
            let ok = node_ready(&node)
                == Some(("Unknown".to_owned(), Some("NodeStatusUnknown".to_owned())))
                && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_owned())
                && taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_owned());
            let seen = format!("{:?} {taints:?}", node_ready(&node));
            ok.then_some(node).ok_or(seen)
        })
        .await;
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned())
            .expect("a Ready condition");
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        // The live node stays Ready and untainted.
        let live = nodes.get(survivor).await.expect("the live node");
        assert_eq!(node_ready(&live).map(|r| r.0).as_deref(), Some("True"));
        assert!(taint_keys(&live).is_empty(), "{:?}", taint_keys(&live));

        sim::wait_for("two pods running on the live node", WAIT, || async {
            let list = pods
                .list(&ListParams::default().labels("app=movers"))
                .await
                .map_err(|e| e.to_string())?;
            let moved = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && phase(p) == "Running"
                        && node_of(p) == Some(survivor)
                })
                .count();
            let summary: Vec<String> = list
                .items
                .iter()
                .map(|p| {
                    format!(
                        "{} {:?} {} deleting={}",
                        p.name_any(),
                        node_of(p),
                        phase(p),
                        p.metadata.deletion_timestamp.is_some()
                    )
                })
                .collect();
            (moved == 2).then_some(()).ok_or(format!("{summary:?}"))
        })
        .await;
        // The evicted pods say why, and are not Ready any more.
        let evicted: Vec<Pod> = pods
            .list(&ListParams::default().labels("app=movers"))
            .await
            .expect("list")
            .items
            .into_iter()
            .filter(|p| node_of(p) == Some(victim.as_str()))
            .collect();
        assert!(!evicted.is_empty(), "the lost node's pods are gone");
        for pod in &evicted {
            assert!(
                pod.metadata.deletion_timestamp.is_some(),
                "{} not evicted",
                pod.name_any()
            );
            let conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "False"),
                "{conditions:?}"
            );
            assert!(
                conditions.iter().any(|c| c.type_ == "DisruptionTarget"
                    && c.reason.as_deref() == Some("DeletionByTaintManager")),
                "{conditions:?}"
            );
        }

        // The node comes back: Ready, untainted, and its kubelet finishes the evicted pods.
        kubelet.recover(&victim).await;
        sim::wait_for("the node Ready and untainted again", WAIT, || async {
            let node = nodes.get(&victim).await.map_err(|e| e.to_string())?;
            let taints = taint_keys(&node);
            let ready = node_ready(&node).map(|r| r.0);
            (ready.as_deref() == Some("True") && taints.is_empty())
                .then_some(())
                .ok_or(format!("{ready:?} {taints:?}"))
        })
        .await;
        sim::wait_for("the evicted pods gone", WAIT, || async {
            let list = pods
                .list(&ListParams::default().labels("app=movers"))
                .await
                .map_err(|e| e.to_string())?;
            let left = list
                .items
                .iter()
                .filter(|p| node_of(p) == Some(victim.as_str()))
                .count();
            (left == 0).then_some(()).ok_or(format!("{left} left"))
        })
        .await;
    });
}

#[test]
fn terminated_pods_beyond_the_threshold_are_collected_and_namespaces_get_a_default_account() {
    let plane = ControlPlane::start(Path::new(BIN), &["--terminated-pod-gc-threshold", "2"]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(client.clone(), vec![SimNode::new("jobs")]).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for i in 0..4 {
            let pod = json!({
                "metadata": {"name": format!("done-{i}"), "annotations": {sim::OUTCOME: "succeed"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"},
            });
            pods.create(
                &PostParams::default(),
                &serde_json::from_value(pod).expect("a pod"),
            )
            .await
            .expect("create a pod");
            // Distinct creation times, so "oldest" means something.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        sim::wait_for("only the two newest terminated pods kept", WAIT, || async {
            let list = pods
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
            names.sort();
            (names == ["done-2", "done-3"])
                .then_some(())
                .ok_or(format!("{names:?}"))
        })
        .await;

        // A pod bound to a node that does not exist is deleted.
        let ghost = json!({
            "metadata": {"name": "on-a-ghost"},
            "spec": {"nodeName": "ghost", "containers": [{"name": "c", "image": "busybox"}]},
        });
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(ghost).expect("a pod"),
        )
        .await
        .expect("create a pod on a missing node");
        sim::wait_for("the orphaned pod deleted", WAIT, || async {
            match pods
                .get_opt("on-a-ghost")
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(p) => Err(format!("{:?}", p.status)),
            }
        })
        .await;

        // Every namespace has a default ServiceAccount, also one made now, also after a delete.
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "team-a"}}))
                    .expect("a namespace"),
            )
            .await
            .expect("create a namespace");
        for namespace in ["default", "kube-system", "team-a"] {
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
            sim::wait_for("a default ServiceAccount", WAIT, || async {
                accounts
                    .get_opt("default")
                    .await
                    .map_err(|e| e.to_string())?
                    .map(drop)
                    .ok_or(format!("none in {namespace}"))
            })
            .await;
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
        let first = accounts.get("default").await.expect("the account").uid();
        accounts
            .delete("default", &DeleteParams::default())
            .await
            .expect("delete the account");
        sim::wait_for("the default ServiceAccount recreated", WAIT, || async {
            let now = accounts
                .get_opt("default")
                .await
                .map_err(|e| e.to_string())?;
            match now {
                Some(sa) if sa.uid() != first => Ok(()),
                _ => Err("not yet".to_owned()),
            }
        })
        .await;
    });
}

#[test]
fn load_balancer_services_get_distinct_addresses_from_the_pool() {
    let plane = ControlPlane::start(Path::new(BIN), &["--load-balancer-pool", "10.96.200.0/24"]);
    let kubectl = |args: &[&str]| tokio::task::block_in_place(|| plane.kubectl_ok("1.33", args));
    sim::block_on(&plane, |client| async move {
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        for name in ["lb-a", "lb-b"] {
            let svc = json!({"metadata": {"name": name},
                             "spec": {"type": "LoadBalancer", "selector": {"app": name},
                                      "ports": [{"port": 80}]}});
            services
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(svc).expect("a Service"),
                )
                .await
                .expect("create a Service");
        }
        let ip_of = |svc: &Service| -> Option<String> {
            svc.status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()?
                .ip
                .clone()
        };
        let (a, b) = sim::wait_for("both services have an address", WAIT, || async {
            let a = services.get("lb-a").await.map_err(|e| e.to_string())?;
            let b = services.get("lb-b").await.map_err(|e| e.to_string())?;
            match (ip_of(&a), ip_of(&b)) {
                (Some(a), Some(b)) => Ok((a, b)),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_ne!(a, b, "two services were given one address");
        for ip in [&a, &b] {
            assert!(ip.starts_with("10.96.200."), "{ip} is not from the pool");
        }
        let table = kubectl(&["get", "svc", "lb-a", "lb-b"]);
        assert!(table.contains("EXTERNAL-IP"), "{table}");
        assert!(table.contains(&a) && table.contains(&b), "{table}");

        // lb-a becomes a ClusterIP Service: its status is cleared and its address freed.
        // (The patch drops the LoadBalancer-only fields itself: the API server does not yet
        // drop them on a type change as kube-apiserver 1.20+ does.)
        let to_cluster_ip = json!({"spec": {
            "type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "allocateLoadBalancerNodePorts": null, "externalTrafficPolicy": null,
        }});
        services
            .patch(
                "lb-a",
                &PatchParams::default(),
                &Patch::Merge(&to_cluster_ip),
            )
            .await
            .expect("switch lb-a to ClusterIP");
        sim::wait_for("lb-a's status cleared", WAIT, || async {
            let svc = services.get("lb-a").await.map_err(|e| e.to_string())?;
            ip_of(&svc).map_or(Ok(()), |ip| Err(format!("still {ip}")))
        })
        .await;
        let table = kubectl(&["get", "svc", "lb-a"]);
        assert!(!table.contains(&a), "{table}");
        // Deleting lb-b frees its address too.
        services
            .delete("lb-b", &DeleteParams::default())
            .await
            .expect("delete lb-b");
        // The freed addresses can be asked for by other Services.
        let svc = json!({"metadata": {"name": "lb-c"},
                         "spec": {"type": "LoadBalancer", "loadBalancerIP": a, "selector": {"app": "c"},
                                  "ports": [{"port": 80}]}});
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(svc).expect("a Service"),
            )
            .await
            .expect("create lb-c");
        sim::wait_for("lb-c gets the freed address", WAIT, || async {
            let c = services.get("lb-c").await.map_err(|e| e.to_string())?;
            (ip_of(&c).as_deref() == Some(a.as_str()))
                .then_some(())
                .ok_or(format!("{:?}", ip_of(&c)))
        })
        .await;
        let svc = json!({"metadata": {"name": "lb-d"},
                         "spec": {"type": "LoadBalancer", "loadBalancerIP": b, "selector": {"app": "d"},
                                  "ports": [{"port": 80}]}});
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(svc).expect("a Service"),
            )
            .await
            .expect("create lb-d");
        sim::wait_for("lb-d gets the deleted service's address", WAIT, || async {
            let d = services.get("lb-d").await.map_err(|e| e.to_string())?;
            (ip_of(&d).as_deref() == Some(b.as_str()))
                .then_some(())
                .ok_or(format!("{:?}", ip_of(&d)))
        })
        .await;
    });
}
