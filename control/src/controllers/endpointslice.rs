//! The EndpointSlice controller, as kube-controller-manager's: every Service with a selector
//! gets EndpointSlices listing the pods it selects, with their readiness, and the legacy
//! Endpoints object for older clients. The desired state is a pure function of the Service,
//! the pods of its namespace and the nodes ([`desired`]); [`run`] watches all three and writes
//! the difference.
//!
//! Differences from kube-controller-manager, on purpose: slice names are derived from the
//! Service, the port set and an index (`<service>-<hash>-<n>`) instead of `generateName`, so a
//! restarted controller finds its own slices by name; slices are rewritten whole when they
//! change (no endpoint-level diffing across slices).

use std::{
    collections::{BTreeMap, BTreeSet, hash_map::DefaultHasher},
    hash::{Hash as _, Hasher as _},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{
    core::v1::{Endpoints, Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Endpoints per slice, kube-controller-manager's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS: usize = 100;
/// The label naming the controller that manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of it (the upstream controller's, so tools that filter on it keep working).
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const ZONE: &str = "topology.kubernetes.io/zone";

/// The slices (as JSON objects without resourceVersion) a Service should have. Pure.
pub fn desired(
    service: &Service,
    pods: &[Arc<Pod>],
    nodes: &BTreeMap<String, Arc<Node>>,
) -> Vec<Value> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    // Endpoints grouped by the ports they resolve to (named target ports can differ per pod).
    let mut groups: BTreeMap<Vec<(String, String, i32)>, Vec<Value>> = BTreeMap::new();
    let mut selected: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .collect();
    selected.sort_by_key(|p| p.name_any());
    for pod in selected {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let Some(ip) = status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let Some(ports) = resolve_ports(service, pod) else {
            continue;
        };
        let pod_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pod_ready || publish_not_ready;
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let mut endpoint = json!({
            "addresses": [ip],
            "conditions": {"ready": serving && !terminating, "serving": serving, "terminating": terminating},
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod.name_any(), "uid": pod.uid()},
        });
        if let Some(node) = &node_name {
            endpoint["nodeName"] = json!(node);
            if let Some(zone) = nodes.get(node).and_then(|n| n.labels().get(ZONE).cloned()) {
                endpoint["zone"] = json!(zone);
            }
        }
        // A StatefulSet-style pod (hostname and a subdomain naming this Service) is named.
        let pod_spec = pod.spec.as_ref();
        if let (Some(hostname), Some(subdomain)) = (
            pod_spec.and_then(|s| s.hostname.as_deref()),
            pod_spec.and_then(|s| s.subdomain.as_deref()),
        ) && subdomain == name
        {
            endpoint["hostname"] = json!(hostname);
        }
        groups.entry(ports).or_default().push(endpoint);
    }
    let mut slices = Vec::new();
    for (ports, endpoints) in groups {
        let mut hasher = DefaultHasher::new();
        ports.hash(&mut hasher);
        let tag = format!("{:08x}", hasher.finish() as u32);
        for (index, chunk) in endpoints.chunks(MAX_ENDPOINTS).enumerate() {
            slices.push(slice(service, &tag, index, &ports, chunk.to_vec()));
        }
    }
    slices
}

fn slice(
    service: &Service,
    tag: &str,
    index: usize,
    ports: &[(String, String, i32)],
    endpoints: Vec<Value>,
) -> Value {
    let name = service.name_any();
    let family = if endpoints
        .first()
        .and_then(|e| e["addresses"][0].as_str())
        .is_some_and(|a| a.contains(':'))
    {
        "IPv6"
    } else {
        "IPv4"
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{name}-{tag}-{index}"),
            "namespace": service.namespace(),
            "labels": {SERVICE_NAME: name, MANAGED_BY: CONTROLLER},
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service", "name": name, "uid": service.uid(),
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports.iter().map(|(n, p, port)| {
            let mut v = json!({"protocol": p, "port": port});
            if !n.is_empty() { v["name"] = json!(n); }
            v
        }).collect::<Vec<_>>(),
    })
}

/// The Service's ports as this pod serves them: (name, protocol, target port). `None` when a
/// named target port is not a port of the pod (the pod is left out, as upstream does).
fn resolve_ports(service: &Service, pod: &Pod) -> Option<Vec<(String, String, i32)>> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut out = Vec::new();
    for port in service.spec.as_ref()?.ports.iter().flatten() {
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        let target = match &port.target_port {
            None => port.port,
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::String(named)) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(named.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)?,
        };
        out.push((port.name.clone().unwrap_or_default(), protocol, target));
    }
    Some(out)
}

/// The legacy Endpoints object for the same slices. Pure.
pub fn endpoints(service: &Service, slices: &[Value]) -> Value {
    let mut subsets = Vec::new();
    for slice in slices {
        let ports: Vec<Value> = slice["ports"].as_array().cloned().unwrap_or_default();
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            let mut address = json!({"ip": e["addresses"][0], "targetRef": e["targetRef"]});
            if let Some(node) = e["nodeName"].as_str() {
                address["nodeName"] = json!(node);
            }
            if let Some(host) = e["hostname"].as_str() {
                address["hostname"] = json!(host);
            }
            if e["conditions"]["ready"] == true {
                ready.push(address);
            } else {
                not_ready.push(address);
            }
        }
        let mut subset = json!({"ports": ports});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        subsets.push(subset);
    }
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": service.name_any(), "namespace": service.namespace(),
                     "labels": {SERVICE_NAME: service.name_any()}},
        "subsets": subsets,
    })
}

/// Watches Services, Pods and Nodes and keeps every selector Service's slices and Endpoints.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (services, w1) = cache(
        Api::<Service>::all(client.clone()),
        Default::default(),
        &changed,
        "services",
    );
    let (pods, w2) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &changed,
        "pods",
    );
    let (nodes, w3) = cache(
        Api::<Node>::all(client.clone()),
        Default::default(),
        &changed,
        "nodes",
    );
    let reconcile = async move {
        let _ = tokio::join!(
            services.wait_until_ready(),
            pods.wait_until_ready(),
            nodes.wait_until_ready()
        );
        let mut written: BTreeMap<String, Value> = BTreeMap::new();
        loop {
            let node_map: BTreeMap<String, Arc<Node>> = nodes
                .state()
                .into_iter()
                .map(|n| (n.name_any(), n))
                .collect();
            let all_pods = pods.state();
            let mut by_namespace: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
            for pod in all_pods {
                by_namespace
                    .entry(pod.namespace().unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            for service in services.state() {
                let namespace = service.namespace().unwrap_or_default();
                let pods = by_namespace.get(&namespace).map_or(&[][..], Vec::as_slice);
                if let Err(error) =
                    sync_service(&client, &service, pods, &node_map, &mut written).await
                {
                    warn!(service = %format!("{namespace}/{}", service.name_any()), %error, "endpointslice sync failed");
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
            // Changes arriving together are handled together.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::join!(w1, w2, w3, reconcile);
}

/// Writes the Service's slices and Endpoints where they differ from what was last written.
async fn sync_service(
    client: &Client,
    service: &Service,
    pods: &[Arc<Pod>],
    nodes: &BTreeMap<String, Arc<Node>>,
    written: &mut BTreeMap<String, Value>,
) -> kube::Result<()> {
    if service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none_or(|s| s.is_empty())
    {
        return Ok(());
    }
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let slices_api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let want = desired(service, pods, nodes);
    let key = |n: &str| format!("{namespace}/{n}");
    let wanted: BTreeSet<String> = want
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    for slice in &want {
        let slice_name = slice["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if written.get(&key(&slice_name)) == Some(slice) {
            continue;
        }
        let patch = Patch::Merge(slice);
        let result = slices_api
            .patch(&slice_name, &PatchParams::default(), &patch)
            .await;
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let object: EndpointSlice =
                    serde_json::from_value(slice.clone()).map_err(kube::Error::SerdeError)?;
                slices_api.create(&PostParams::default(), &object).await?;
            }
            Err(error) => return Err(error),
        }
        written.insert(key(&slice_name), slice.clone());
    }
    // Slices of this Service we manage that are no longer wanted.
    let listed = slices_api
        .list(
            &ListParams::default()
                .labels(&format!("{SERVICE_NAME}={name},{MANAGED_BY}={CONTROLLER}")),
        )
        .await?;
    for old in listed.items {
        let old_name = old.name_any();
        if !wanted.contains(&old_name) {
            slices_api
                .delete(&old_name, &DeleteParams::default())
                .await
                .map(drop)
                .or_else(|e| match e {
                    kube::Error::Api(s) if s.code == 404 => Ok(()),
                    e => Err(e),
                })?;
            written.remove(&key(&old_name));
            info!(slice = %key(&old_name), "endpointslice removed");
        }
    }
    // The legacy Endpoints object.
    let legacy = endpoints(service, &want);
    let legacy_key = format!("{namespace}/endpoints/{name}");
    if written.get(&legacy_key) != Some(&legacy) {
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
        let object: Endpoints =
            serde_json::from_value(legacy.clone()).map_err(kube::Error::SerdeError)?;
        match api.replace(&name, &PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                api.create(&PostParams::default(), &object).await?;
            }
            Err(error) => return Err(error),
        }
        written.insert(legacy_key, legacy);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(value: Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, extra: Value) -> Arc<Pod> {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if let Some(ip) = ip {
            value["status"]["podIP"] = json!(ip);
        }
        merge(&mut value, extra);
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn merge(base: &mut Value, extra: Value) {
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
    }

    fn web() -> Service {
        service(
            json!({"metadata": {"name": "web", "namespace": "shop", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        )
    }

    #[test]
    fn selected_pods_become_endpoints_with_their_readiness() {
        let nodes: BTreeMap<String, Arc<Node>> = [(
            "n1".to_owned(),
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {ZONE: "z1"}}}))
                    .unwrap(),
            ),
        )]
        .into();
        let pods = vec![
            pod("a", Some("10.244.1.2"), true, json!({})),
            pod("b", Some("10.244.1.3"), false, json!({})),
            pod("no-ip", None, true, json!({})),
            pod(
                "other",
                Some("10.244.1.9"),
                true,
                json!({"metadata": {"labels": {"app": "db"}}}),
            ),
            pod(
                "done",
                Some("10.244.1.8"),
                true,
                json!({"status": {"phase": "Succeeded"}}),
            ),
            pod(
                "leaving",
                Some("10.244.1.7"),
                true,
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
        ];
        let slices = desired(&web(), &pods, &nodes);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s["metadata"]["labels"][SERVICE_NAME], "web");
        assert_eq!(s["metadata"]["labels"][MANAGED_BY], CONTROLLER);
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(
            s["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 8080}])
        );
        let eps = s["endpoints"].as_array().unwrap();
        let names: Vec<&str> = eps
            .iter()
            .map(|e| e["targetRef"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "leaving"]);
        assert_eq!(
            eps[0]["conditions"],
            json!({"ready": true, "serving": true, "terminating": false})
        );
        assert_eq!(eps[1]["conditions"]["ready"], false);
        assert_eq!(
            eps[2]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert_eq!(eps[0]["zone"], "z1");
        assert_eq!(eps[0]["nodeName"], "n1");

        let legacy = endpoints(&web(), &slices);
        assert_eq!(legacy["subsets"][0]["addresses"][0]["ip"], "10.244.1.2");
        assert_eq!(
            legacy["subsets"][0]["notReadyAddresses"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn slices_hold_at_most_100_and_split_by_resolved_ports() {
        let mut pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    Some(&format!("10.244.{}.{}", i / 200, i % 200 + 2)),
                    true,
                    json!({}),
                )
            })
            .collect();
        // One pod names its port differently: it resolves to another port, another slice.
        pods.push(pod("odd", Some("10.244.9.9"), true,
            json!({"spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9090}]}]}})));
        let slices = desired(&web(), &pods, &BTreeMap::new());
        let sizes: Vec<usize> = slices
            .iter()
            .map(|s| s["endpoints"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), 251);
        assert!(sizes.iter().all(|n| *n <= MAX_ENDPOINTS), "{sizes:?}");
        assert_eq!(slices.len(), 4, "{sizes:?}");
        let names: BTreeSet<&str> = slices
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "names are unique");
        // No selector, no slices (the Service's endpoints are managed by hand).
        let manual = service(
            json!({"metadata": {"name": "m", "namespace": "shop"}, "spec": {"ports": [{"port": 80}]}}),
        );
        assert!(desired(&manual, &pods, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn stateful_pods_are_named_and_not_ready_ones_published_on_request() {
        let mut svc = web();
        svc.metadata.name = Some("db".into());
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let pods = vec![pod(
            "db-0",
            Some("10.244.1.2"),
            false,
            json!({"spec": {"hostname": "db-0", "subdomain": "db"}}),
        )];
        let slices = desired(&svc, &pods, &BTreeMap::new());
        let e = &slices[0]["endpoints"][0];
        assert_eq!(e["hostname"], "db-0");
        assert_eq!(e["conditions"]["ready"], true);
    }
}
