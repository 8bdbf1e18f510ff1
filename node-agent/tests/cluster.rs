//! Cluster tier: `strait-control` and real agents on namespaced nodes (see
//! `strait_tests::cluster` for the topology). Each test builds its own cluster.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use strait_tests::{Cluster, HttpServer, cluster::Binaries, http_get};

fn binaries() -> Binaries {
    Binaries::beside(Path::new(env!("CARGO_BIN_EXE_strait-agent")))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_join_with_the_token_get_pod_ranges_and_route_to_each_other() {
    let cluster = Cluster::start(&binaries(), 2, &[]);
    let nodes = json(&cluster.kubectl(&["get", "nodes", "-o", "json"]));
    let items = nodes["items"].as_array().expect("a node list");
    assert_eq!(items.len(), 2);
    let mut cidrs = Vec::new();
    for node in items {
        let name = node["metadata"]["name"].as_str().unwrap();
        let cidr = node["spec"]["podCIDR"].as_str().unwrap_or_default();
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with("/24"),
            "{name}: {cidr}"
        );
        assert_eq!(node["spec"]["podCIDRs"][0], cidr);
        let status = &node["status"];
        assert_eq!(status["addresses"][0]["type"], "InternalIP");
        assert!(status["capacity"]["cpu"].as_str().is_some(), "{status}");
        assert_eq!(status["capacity"]["pods"], "110");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], name);
        cidrs.push(cidr.to_owned());
    }
    assert_ne!(cidrs[0], cidrs[1], "every node gets its own range");

    // Each node's Lease is held and renewed by its agent.
    eventually(Duration::from_secs(10), "a Lease per node", || {
        let leases =
            json(&cluster.kubectl(&["get", "leases", "-n", "kube-node-lease", "-o", "json"]));
        let holders: Vec<String> = leases["items"]
            .as_array()?
            .iter()
            .filter(|l| l["spec"]["renewTime"].is_string())
            .filter_map(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
            .collect();
        (holders.contains(&"node-0".to_owned()) && holders.contains(&"node-1".to_owned()))
            .then_some(())
    });

    // Each node routes the other's pod range through the other's address.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let other = &cluster.nodes[1 - i];
        let other_cidr = &cidrs[1 - i];
        let routes = eventually(
            Duration::from_secs(10),
            "a route to the peer's pods",
            || {
                let out = node.exec(&["ip", "route", "show", "proto", "194"]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.contains(&format!("{other_cidr} via {}", other.ip))
                    .then_some(text)
            },
        );
        assert_eq!(routes.lines().count(), 1, "{}: {routes}", node.name);
    }
}

#[test]
fn a_wrong_ca_pin_is_refused_and_nothing_registers() {
    let cluster = Cluster::start(&binaries(), 1, &[]);
    let node = &cluster.nodes[0];
    let token = cluster.control.node_token();
    // The same secret pinned to another CA.
    let forged = format!(
        "K10{}::node:{}",
        "0".repeat(64),
        token.rsplit(':').next().unwrap()
    );
    let state = tempfile::tempdir().unwrap();
    let out = node.exec(&[
        env!("CARGO_BIN_EXE_strait-agent"),
        "--server=https://10.77.0.2:6443",
        &format!("--token={forged}"),
        "--node-name=intruder",
        "--node-ip=10.77.0.99",
        &format!("--state-dir={}", state.path().display()),
        &format!("--cgroup={}", node.cgroup.path().display()),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not match the join token's hash"),
        "{stderr}"
    );
    let nodes = cluster.kubectl(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("intruder"), "{nodes}");
    assert!(!state.path().join("kubeconfig").exists());
}

#[test]
fn services_from_the_api_are_programmed_on_every_node() {
    let cluster = Cluster::start(&binaries(), 2, &[]);
    let backend_node = &cluster.nodes[1];
    let client_node = &cluster.nodes[0];
    let backend: SocketAddr = format!("{}:8080", backend_node.ip).parse().unwrap();
    let _server = HttpServer::start(&backend_node.netns, backend, "from-node-1");
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
        {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web", "namespace": "default"}},
          "spec": {{"clusterIP": "10.96.7.7", "ports": [{{"port": 80, "targetPort": 8080}}]}}}},
        {{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {{"name": "web-1", "namespace": "default", "labels": {{"kubernetes.io/service-name": "web"}}}},
          "addressType": "IPv4", "ports": [{{"port": 8080, "protocol": "TCP"}}],
          "endpoints": [{{"addresses": ["{}"], "conditions": {{"ready": true}}}}]}}]}}"#,
        backend.ip()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    cluster.kubectl(&["apply", "-f", file.path().to_str().unwrap()]);

    // A client in the node's cgroup reaches the ClusterIP: the agent programmed it from the
    // API (the address exists nowhere else).
    let body = eventually(Duration::from_secs(10), "the service answers", || {
        http_get(
            &client_node.netns,
            Some(client_node.cgroup.path()),
            "10.96.7.7:80",
        )
        .ok()
    });
    assert_eq!(body, "from-node-1");

    // Removing the endpoint takes the service's backends away within a second or so.
    cluster.kubectl(&["delete", "endpointslice", "web-1"]);
    eventually(
        Duration::from_secs(10),
        "the service stops answering",
        || {
            http_get(
                &client_node.netns,
                Some(client_node.cgroup.path()),
                "10.96.7.7:80",
            )
            .is_err()
            .then_some(())
        },
    );
}
