//! API tier with a simulated kubelet (`strait_tests::sim`): the EndpointSlice controller, in
//! the real `strait-control`, slices a Service's pods as kube-controller-manager does: at
//! most 100 endpoints a slice, one slice family per resolved port set (a named target port
//! can be a different number on different pods), ready/serving conditions, nodeName, zone,
//! the hostname of a pod whose subdomain is the Service; and the legacy Endpoints object.

use std::{collections::BTreeMap, path::Path, time::Duration};

use k8s_openapi::api::{
    core::v1::{EndpointAddress, EndpointSubset, Endpoints, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

async fn replicaset(client: &kube::Client, name: &str, replicas: i32, port: i32, outcome: &str) {
    let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), "default");
    let set = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", "set": name}},
                 "template": {
                     "metadata": {"labels": {"app": "web", "set": name},
                                  "annotations": {"sim.strait.dev/outcome": outcome}},
                     "spec": {"containers": [{"name": "c", "image": "busybox",
                                              "ports": [{"name": "http", "containerPort": port}]}]}}},
    }))
    .expect("a ReplicaSet");
    sets.create(&PostParams::default(), &set)
        .await
        .unwrap_or_else(|e| panic!("create ReplicaSet {name}: {e}"));
}

#[test]
fn a_service_is_sliced_by_hundreds_and_by_resolved_port() {
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    sim::block_on(&plane, |client| async move {
        let _kubelet = SimKubelet::start(
            client.clone(),
            vec![
                SimNode::new("sim-a").zone("zone-a"),
                SimNode::new("sim-b").zone("zone-b"),
            ],
        )
        .await;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }))
        .expect("a Service");
        services
            .create(&PostParams::default(), &service)
            .await
            .expect("create the Service");
        replicaset(&client, "main", 120, 8080, "").await;
        replicaset(&client, "alt", 3, 9090, "").await;
        replicaset(&client, "cold", 2, 8080, "unready").await;
        // A StatefulSet-style pod: its hostname is published because its subdomain is `web`.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let named = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "labels": {"app": "web"}},
            "spec": {"hostname": "db-0", "subdomain": "web",
                     "containers": [{"name": "c", "image": "busybox",
                                     "ports": [{"name": "http", "containerPort": 8080}]}]},
        }))
        .expect("a Pod");
        pods.create(&PostParams::default(), &named)
            .await
            .expect("create db-0");

        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let listed = sim::wait_for(
            "126 endpoints in the slices",
            Duration::from_secs(60),
            || async {
                let listed = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                    .await
                    .map_err(|e| e.to_string())?;
                let count: usize = listed.items.iter().map(|s| s.endpoints.len()).sum();
                let ready: usize = listed
                    .items
                    .iter()
                    .flat_map(|s| &s.endpoints)
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .count();
                if count == 126 && ready == 124 {
                    Ok(listed.items)
                } else {
                    Err(format!("{count} endpoints, {ready} ready"))
                }
            },
        )
        .await;

        // By resolved port: 8080 holds 123 endpoints in two slices of at most 100; 9090 three.
        let mut by_port: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for slice in &listed {
            assert!(
                slice.endpoints.len() <= 100,
                "{} endpoints",
                slice.endpoints.len()
            );
            assert_eq!(slice.address_type, "IPv4");
            let ports = slice.ports.clone().unwrap_or_default();
            assert_eq!(ports.len(), 1);
            assert_eq!(ports[0].name.as_deref(), Some("http"));
            by_port
                .entry(ports[0].port.unwrap_or_default())
                .or_default()
                .push(slice.endpoints.len());
        }
        let mut sizes_8080 = by_port.get(&8080).cloned().unwrap_or_default();
        sizes_8080.sort_unstable();
        assert_eq!(sizes_8080.iter().sum::<usize>(), 123, "{by_port:?}");
        assert_eq!(sizes_8080.len(), 2, "{by_port:?}");
        assert_eq!(by_port.get(&9090), Some(&vec![3]), "{by_port:?}");

        let endpoints: Vec<_> = listed.iter().flat_map(|s| s.endpoints.clone()).collect();
        for endpoint in &endpoints {
            let node = endpoint.node_name.as_deref().expect("a nodeName");
            let zone = endpoint.zone.as_deref().expect("a zone");
            assert_eq!(zone, if node == "sim-a" { "zone-a" } else { "zone-b" });
            let target = endpoint.target_ref.as_ref().expect("a targetRef");
            assert_eq!(target.kind.as_deref(), Some("Pod"));
        }
        let cold: Vec<_> = endpoints
            .iter()
            .filter(|e| {
                e.target_ref
                    .as_ref()
                    .and_then(|t| t.name.as_deref())
                    .is_some_and(|n| n.starts_with("cold-"))
            })
            .collect();
        assert_eq!(cold.len(), 2);
        for endpoint in cold {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            assert_eq!(
                (conditions.ready, conditions.serving, conditions.terminating),
                (Some(false), Some(false), Some(false))
            );
        }
        let hostnames: Vec<_> = endpoints
            .iter()
            .filter_map(|e| e.hostname.clone())
            .collect();
        assert_eq!(hostnames, ["db-0"]);

        // The legacy Endpoints object: ready addresses and not-ready ones, per port.
        let legacy: Api<Endpoints> = Api::namespaced(client.clone(), "default");
        let object = sim::wait_for("the Endpoints object", Duration::from_secs(30), || async {
            let object = legacy.get("web").await.map_err(|e| e.to_string())?;
            let subsets = object.subsets.clone().unwrap_or_default();
            let count = |addresses: fn(&EndpointSubset) -> Option<&Vec<EndpointAddress>>| {
                subsets
                    .iter()
                    .map(|s| addresses(s).map_or(0, Vec::len))
                    .sum::<usize>()
            };
            let ready = count(|s| s.addresses.as_ref());
            let not_ready = count(|s| s.not_ready_addresses.as_ref());
            if (ready, not_ready) == (124, 2) {
                Ok(object)
            } else {
                Err(format!("{ready} ready addresses, {not_ready} not ready"))
            }
        })
        .await;
        let subsets = object.subsets.unwrap_or_default();
        let mut ports: Vec<i32> = subsets
            .iter()
            .flat_map(|s| s.ports.clone().unwrap_or_default())
            .map(|p| p.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports, [8080, 9090]);
    });
}
