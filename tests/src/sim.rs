//! A simulated kubelet: the seam for API-level tests of the scheduler and controllers.
//!
//! It registers Nodes that look like a real agent's (Ready, capacity, allocatable, an
//! address, a Lease renewed every two seconds in `kube-node-lease`) and plays the kubelet's
//! part for pods bound to them: a bound pod becomes Running with an IP and, unless told
//! otherwise, Ready; a pod marked for deletion is removed, as a kubelet does once its
//! containers stop. Pods steer it with annotations:
//!
//! - `sim.strait.dev/outcome`: `succeed` or `fail` ends the pod (phase Succeeded, or Failed
//!   with exit code 1) after `sim.strait.dev/run-ms` milliseconds (default 0);
//!   `unready` keeps it Running and never Ready.
//! - `sim.strait.dev/ready-after-ms`: milliseconds between Running and Ready.
//!
//! [`SimKubelet::lose`] stops a node's heartbeats and pod handling, as a node that dies;
//! [`SimKubelet::recover`] brings it back.
//! Everything runs on the caller's tokio runtime; the kubelet stops when dropped.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};
use tokio::{sync::Notify, task::JoinHandle};

/// Annotation choosing how a pod ends: `succeed`, `fail` or `unready`.
pub const OUTCOME: &str = "sim.strait.dev/outcome";
/// Annotation: milliseconds a `succeed`/`fail` pod runs before it ends.
pub const RUN_MS: &str = "sim.strait.dev/run-ms";
/// Annotation: milliseconds between Running and Ready.
pub const READY_AFTER_MS: &str = "sim.strait.dev/ready-after-ms";

/// A kube-rs client for the API described by `kubeconfig` (call it inside the plane's
/// namespace).
pub async fn client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config");
    Client::try_from(config).expect("a client")
}

/// One simulated node.
#[derive(Clone, Debug)]
pub struct SimNode {
    /// The Node's name.
    pub name: String,
    /// Allocatable CPU, in Kubernetes quantity form ("4", "500m").
    pub cpu: String,
    /// Allocatable memory ("8Gi").
    pub memory: String,
    /// Allocatable pods.
    pub pods: u32,
    /// Labels beyond `kubernetes.io/hostname` (zones, roles).
    pub labels: BTreeMap<String, String>,
    /// Taints, as the API's JSON.
    pub taints: Vec<Value>,
}

impl SimNode {
    /// A node with 4 CPUs, 8 GiB and 110 pods.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            cpu: "4".to_owned(),
            memory: "8Gi".to_owned(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// With a label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// In `zone` (the `topology.kubernetes.io/zone` label).
    #[must_use]
    pub fn zone(self, zone: &str) -> Self {
        self.label("topology.kubernetes.io/zone", zone)
    }

    /// With a taint `key=value:effect`.
    #[must_use]
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints
            .push(json!({"key": key, "value": value, "effect": effect}));
        self
    }

    /// With this allocatable CPU and memory.
    #[must_use]
    pub fn resources(mut self, cpu: &str, memory: &str) -> Self {
        cpu.clone_into(&mut self.cpu);
        memory.clone_into(&mut self.memory);
        self
    }
}

/// Simulated kubelets for a set of nodes; stops when dropped.
#[derive(Debug)]
pub struct SimKubelet {
    tasks: Vec<JoinHandle<()>>,
    lost: Arc<Mutex<HashSet<String>>>,
    nodes: Api<k8s_openapi::api::core::v1::Node>,
    /// Wakes the pod player (a recovered node's pods need looking at).
    wake: Arc<Notify>,
}

impl SimKubelet {
    /// Register `nodes` (Ready) and start playing their kubelets.
    pub async fn start(client: Client, nodes: Vec<SimNode>) -> Self {
        let names: Arc<HashSet<String>> = Arc::new(nodes.iter().map(|n| n.name.clone()).collect());
        for (index, node) in nodes.iter().enumerate() {
            register(&client, node, index).await;
        }
        let lost = Arc::new(Mutex::new(HashSet::new()));
        let heartbeats = tokio::spawn(heartbeat(
            client.clone(),
            Arc::clone(&names),
            Arc::clone(&lost),
        ));
        let wake = Arc::new(Notify::new());
        let pods = tokio::spawn(play_pods(
            client.clone(),
            names,
            Arc::clone(&lost),
            Arc::clone(&wake),
        ));
        Self {
            tasks: vec![heartbeats, pods],
            lost,
            nodes: Api::all(client),
            wake,
        }
    }

    /// Node `name` dies: its Lease and status stop being renewed, its pods stop changing.
    pub fn lose(&self, name: &str) {
        self.lost
            .lock()
            .expect("the lost set")
            .insert(name.to_owned());
    }

    /// Node `name` comes back after [`Self::lose`]: it posts Ready again, renews its Lease
    /// and plays its pods' kubelet once more.
    pub async fn recover(&self, name: &str) {
        self.lost.lock().expect("the lost set").remove(name);
        let nodes = &self.nodes;
        let node = nodes
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get node {name}: {e}"));
        // The kubelet posts its conditions whole, Ready among them.
        let mut conditions: Vec<Value> = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "Ready")
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(ready_condition());
        let status = json!({"status": {"conditions": conditions}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("report node {name} Ready again: {e}"));
        self.wake.notify_one();
    }
}

impl Drop for SimKubelet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

async fn register(client: &Client, node: &SimNode, index: usize) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let mut labels = node.labels.clone();
    labels.insert("kubernetes.io/hostname".to_owned(), node.name.clone());
    labels.insert("kubernetes.io/os".to_owned(), "linux".to_owned());
    let object = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "labels": labels},
        "spec": {"taints": node.taints},
    });
    let object = serde_json::from_value(object).expect("a Node");
    match nodes.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("register node {}: {e}", node.name),
    }
    let resources = json!({"cpu": node.cpu, "memory": node.memory, "pods": node.pods.to_string()});
    let status = json!({"status": {
        "capacity": resources, "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": format!("10.254.{}.{}", index / 250, index % 250 + 1)},
                      {"type": "Hostname", "address": node.name}],
        "conditions": [ready_condition()],
        "nodeInfo": {"kubeletVersion": "v1.33.0-sim", "operatingSystem": "linux", "architecture": "amd64",
                     "containerRuntimeVersion": "sim://1", "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                     "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    nodes
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("report node {} Ready: {e}", node.name));
}

fn ready_condition() -> Value {
    let now = now();
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
           "message": "simulated kubelet is posting ready status",
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

/// Renew each live node's Lease (as the agent does) every two seconds.
async fn heartbeat(client: Client, names: Arc<HashSet<String>>, lost: Arc<Mutex<HashSet<String>>>) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client, "kube-node-lease");
    loop {
        let live: Vec<String> = {
            let lost = lost.lock().expect("the lost set");
            names
                .iter()
                .filter(|n| !lost.contains(*n))
                .cloned()
                .collect()
        };
        for name in live {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()},
            });
            let renew = json!({"spec": {"renewTime": now()}});
            let renewed = leases
                .patch(&name, &PatchParams::default(), &Patch::Merge(&renew))
                .await;
            if matches!(renewed, Err(kube::Error::Api(ref s)) if s.code == 404) {
                let object = serde_json::from_value(lease).expect("a Lease");
                let _ = leases.create(&PostParams::default(), &object).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Watch pods and play the kubelet for those bound to live nodes.
async fn play_pods(
    client: Client,
    names: Arc<HashSet<String>>,
    lost: Arc<Mutex<HashSet<String>>>,
    wake: Arc<Notify>,
) {
    let all: Api<Pod> = Api::all(client.clone());
    let (store, watch) = strait_kubewatch::cache(all, Default::default(), &wake, "sim pods");
    let play = async move {
        store.wait_until_ready().await.ok();
        // Pods started (by uid) and pods whose deletion is under way.
        let mut started: HashSet<String> = HashSet::new();
        let mut removing: HashSet<String> = HashSet::new();
        let mut next_ip: u32 = 0;
        loop {
            let lost_now = lost.lock().expect("the lost set").clone();
            for pod in store.state() {
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                if !names.contains(&node) || lost_now.contains(&node) {
                    continue;
                }
                let uid = pod.uid().unwrap_or_default();
                if pod.metadata.deletion_timestamp.is_some() {
                    if removing.insert(uid) {
                        tokio::spawn(remove(client.clone(), Arc::clone(&pod)));
                    }
                } else if started.insert(uid) {
                    next_ip += 1;
                    let ip = format!("10.244.{}.{}", next_ip / 250, next_ip % 250 + 1);
                    tokio::spawn(run_pod(client.clone(), Arc::clone(&pod), ip));
                }
            }
            wake.notified().await;
        }
    };
    tokio::join!(watch, play);
}

async fn remove(client: Client, pod: Arc<Pod>) {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
    let _ = api
        .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
        .await;
}

fn annotation_ms(pod: &Pod, key: &str) -> u64 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn run_pod(client: Client, pod: Arc<Pod>, ip: String) {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    let outcome = pod.annotations().get(OUTCOME).cloned().unwrap_or_default();
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let started = now();
    let statuses = |ready: bool| -> Value {
        containers
            .iter()
            .map(|c| {
                json!({"name": c, "ready": ready, "restartCount": 0, "image": "sim", "imageID": "",
                            "started": true, "state": {"running": {"startedAt": started}}})
            })
            .collect()
    };
    let status = |phase: &str, ready: bool, container_statuses: Value| {
        let now = now();
        json!({"status": {
            "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.254.0.1", "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now},
                {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now},
            ],
            "containerStatuses": container_statuses,
        }})
    };
    let patch = |body: Value| {
        let api = api.clone();
        let name = name.clone();
        async move {
            // A pod deleted meanwhile is no error: the kubelet simply stops.
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await;
        }
    };
    let ready_after = annotation_ms(&pod, READY_AFTER_MS);
    let immediately_ready = ready_after == 0 && outcome.is_empty();
    patch(status(
        "Running",
        immediately_ready,
        statuses(immediately_ready),
    ))
    .await;
    match outcome.as_str() {
        "succeed" | "fail" => {
            tokio::time::sleep(Duration::from_millis(annotation_ms(&pod, RUN_MS))).await;
            let (phase, code) = if outcome == "succeed" {
                ("Succeeded", 0)
            } else {
                ("Failed", 1)
            };
            let terminated: Value = containers
                .iter()
                .map(|c| json!({"name": c, "ready": false, "restartCount": 0, "image": "sim", "imageID": "",
                                "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                                                         "startedAt": started, "finishedAt": now()}}}))
                .collect();
            patch(status(phase, false, terminated)).await;
        }
        "unready" => {}
        _ if !immediately_ready => {
            tokio::time::sleep(Duration::from_millis(ready_after)).await;
            patch(status("Running", true, statuses(true))).await;
        }
        _ => {}
    }
}

/// Run `test` with a client of `plane`'s API, on a runtime inside the plane's namespace.
pub fn block_on<F, Fut>(plane: &crate::ControlPlane, test: F)
where
    F: FnOnce(Client) -> Fut + Send,
    Fut: Future<Output = ()>,
{
    let kubeconfig = plane.kubeconfig();
    plane.netns().run(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move { test(client(&kubeconfig).await).await });
    });
}

/// Poll `check` every 50 ms until it returns something, or panic naming `what` after
/// `timeout`, with the last thing `check` saw.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
