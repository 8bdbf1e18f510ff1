//! The scheduler's loop: watch events keep the cluster view and the queue; one pod at a time
//! is taken from the queue and decided on ([`super::choose`]); the chosen node is assumed at
//! once and the binding is sent in the background (at most [`BINDS_IN_FLIGHT`] at a time), as
//! kube-scheduler's binding cycle runs apart from its scheduling cycle.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt as _, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use super::{
    NAME,
    cache::{Cluster, key},
    choose,
    queue::{self, Queue, Waiting},
};
use crate::controllers::pods::is_finished;

/// Bindings sent and not yet answered: enough to keep the API busy without flooding it.
const BINDS_IN_FLIGHT: usize = 16;

/// Decisions between two looks at the watch events.
const DECISIONS_PER_TURN: usize = 32;

enum Input {
    Pods(Box<watcher::Event<Pod>>),
    Nodes(Box<watcher::Event<Node>>),
    Namespaces(Box<watcher::Event<Namespace>>),
    Bound {
        key: String,
        node: String,
        result: kube::Result<()>,
    },
}

/// Watches Pods, Nodes and Namespaces and binds pending pods.
pub async fn run(client: Client) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pods = forward(
        Api::<Pod>::all(client.clone()),
        tx.clone(),
        Input::Pods,
        "pods",
    );
    let nodes = forward(
        Api::<Node>::all(client.clone()),
        tx.clone(),
        Input::Nodes,
        "nodes",
    );
    let namespaces = forward(
        Api::<Namespace>::all(client.clone()),
        tx.clone(),
        Input::Namespaces,
        "namespaces",
    );
    let scheduler = Scheduler {
        client,
        tx,
        cluster: Cluster::default(),
        queue: Queue::default(),
        reported: HashMap::new(),
        relisted_pods: None,
        relisted_nodes: None,
        relisted_namespaces: None,
        synced: (false, false),
        binds: Arc::new(Semaphore::new(BINDS_IN_FLIGHT)),
    };
    tokio::join!(pods, nodes, namespaces, scheduler.run(rx));
}

/// Sends every watch event of `api` to the loop (the watch restarts with backoff on errors).
async fn forward<K>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Input>,
    wrap: fn(Box<watcher::Event<K>>) -> Input,
    what: &'static str,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(event) => {
                    let _ = tx.send(wrap(Box::new(event)));
                }
                Err(error) => warn!(%error, watch = what, "watch failed; retrying"),
            }
            futures::future::ready(())
        })
        .await;
}

/// Waiting for scheduling: unbound, ours, not being deleted, not finished.
fn pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_finished(pod)
}

struct Scheduler {
    client: Client,
    tx: mpsc::UnboundedSender<Input>,
    cluster: Cluster,
    queue: Queue,
    /// The last message given to each unschedulable pod (not repeated).
    reported: HashMap<String, String>,
    /// Objects of a relist under way (a watch restart), applied together when it ends.
    relisted_pods: Option<Vec<Pod>>,
    relisted_nodes: Option<Vec<Node>>,
    relisted_namespaces: Option<Vec<Namespace>>,
    /// Whether pods and nodes have been listed once: nothing is decided before.
    synced: (bool, bool),
    binds: Arc<Semaphore>,
}

impl Scheduler {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(input) => self.apply(input),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            self.queue.promote(Instant::now());
            if self.synced == (true, true) && !self.queue.idle() {
                for _ in 0..DECISIONS_PER_TURN {
                    let Some(pod) = self.queue.pop() else { break };
                    self.attempt(pod).await;
                }
                tokio::task::yield_now().await;
                continue;
            }
            let due = self.queue.next_due();
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.apply(input),
                    None => return,
                },
                () = sleep_until(due) => {}
            }
        }
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Pods(event) => match *event {
                watcher::Event::Init => self.relisted_pods = Some(Vec::new()),
                watcher::Event::InitApply(pod) => {
                    self.relisted_pods.get_or_insert_default().push(pod);
                }
                watcher::Event::InitDone => {
                    let listed = self.relisted_pods.take().unwrap_or_default();
                    let keys: HashSet<String> = listed.iter().map(key).collect();
                    let gone: Vec<String> = self
                        .cluster
                        .placed
                        .keys()
                        .chain(self.queue.keys())
                        .filter(|k| !keys.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        self.pod_deleted(&k);
                    }
                    for pod in listed {
                        self.pod_changed(Arc::new(pod));
                    }
                    self.synced.0 = true;
                }
                watcher::Event::Apply(pod) => self.pod_changed(Arc::new(pod)),
                watcher::Event::Delete(pod) => self.pod_deleted(&key(&pod)),
            },
            Input::Nodes(event) => match *event {
                watcher::Event::Init => self.relisted_nodes = Some(Vec::new()),
                watcher::Event::InitApply(node) => {
                    self.relisted_nodes.get_or_insert_default().push(node);
                }
                watcher::Event::InitDone => {
                    let listed = self.relisted_nodes.take().unwrap_or_default();
                    let names: HashSet<String> = listed.iter().map(|n| n.name_any()).collect();
                    self.cluster.nodes.retain(|name, _| names.contains(name));
                    for node in listed {
                        self.node_changed(node);
                    }
                    self.synced.1 = true;
                }
                watcher::Event::Apply(node) => self.node_changed(node),
                watcher::Event::Delete(node) => self.cluster.remove_node(&node.name_any()),
            },
            Input::Namespaces(event) => match *event {
                watcher::Event::Init => self.relisted_namespaces = Some(Vec::new()),
                watcher::Event::InitApply(ns) => {
                    self.relisted_namespaces.get_or_insert_default().push(ns);
                }
                watcher::Event::InitDone => {
                    self.cluster.namespaces.clear();
                    for ns in self.relisted_namespaces.take().unwrap_or_default() {
                        self.cluster
                            .namespaces
                            .insert(ns.name_any(), ns.labels().clone());
                    }
                }
                watcher::Event::Apply(ns) => {
                    self.cluster
                        .namespaces
                        .insert(ns.name_any(), ns.labels().clone());
                }
                watcher::Event::Delete(ns) => {
                    self.cluster.namespaces.remove(&ns.name_any());
                }
            },
            Input::Bound { key, node, result } => self.bound(&key, &node, result),
        }
    }

    fn node_changed(&mut self, node: Node) {
        if self.cluster.set_node(Arc::new(node)) {
            self.queue.flush(queue::Event::Node);
        }
    }

    fn pod_changed(&mut self, pod: Arc<Pod>) {
        let key = key(&pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(node) = node {
            self.queue.remove(&key);
            self.reported.remove(&key);
            if is_finished(&pod) {
                if self.cluster.forget(&key) {
                    self.queue.flush(queue::Event::PodGone);
                }
            } else {
                let moved = self.cluster.node_of(&key) != Some(node.as_str());
                self.cluster.place(pod, &node);
                if moved {
                    self.queue.flush(queue::Event::PodPlaced);
                }
            }
        } else if self.cluster.node_of(&key).is_some() {
            // Assumed: the binding is on its way, or the watch has not shown it yet.
        } else if pending(&pod) {
            self.queue.add(pod);
        } else {
            self.queue.remove(&key);
        }
    }

    fn pod_deleted(&mut self, key: &str) {
        self.queue.remove(key);
        self.reported.remove(key);
        if self.cluster.forget(key) {
            self.queue.flush(queue::Event::PodGone);
        }
    }

    async fn attempt(&mut self, pod: Arc<Pod>) {
        let key = key(&pod);
        match choose(&pod, &self.cluster) {
            Ok(node) => {
                self.cluster.place(Arc::clone(&pod), &node);
                self.queue.flush(queue::Event::PodPlaced);
                let Ok(permit) = Arc::clone(&self.binds).acquire_owned().await else {
                    return;
                };
                let client = self.client.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = bind(&client, &pod, &node).await;
                    drop(permit);
                    if result.is_ok()
                        && let Err(error) = scheduled_event(&client, &pod, &node).await
                    {
                        warn!(pod = %key, %error, "failed to record the Scheduled event");
                    }
                    let _ = tx.send(Input::Bound { key, node, result });
                });
            }
            Err(refused) => {
                let why = Waiting::Unschedulable {
                    pods_help: refused.pods_help,
                };
                self.queue.failed(&key, why, Instant::now());
                if self.reported.get(&key) != Some(&refused.message) {
                    let client = self.client.clone();
                    let message = refused.message.clone();
                    let k = key.clone();
                    tokio::spawn(async move {
                        if let Err(error) = report(&client, &pod, &message).await {
                            warn!(pod = %k, %error, "failed to report FailedScheduling");
                        }
                    });
                    self.reported.insert(key, refused.message);
                }
            }
        }
    }

    fn bound(&mut self, key: &str, node: &str, result: kube::Result<()>) {
        match result {
            Ok(()) => {
                info!(pod = %key, %node, "scheduled");
                self.queue.remove(key);
                self.reported.remove(key);
            }
            Err(error) => {
                warn!(pod = %key, %node, %error, "binding failed");
                // Un-assume, unless the watch already shows the pod bound.
                let confirmed = self.cluster.placed.get(key).is_some_and(|p| {
                    p.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some()
                });
                if !confirmed && self.cluster.forget(key) {
                    self.queue.flush(queue::Event::PodGone);
                }
                let gone = matches!(&error, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                if gone || confirmed {
                    self.queue.remove(key);
                } else {
                    self.queue.failed(key, Waiting::Error, Instant::now());
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> kube::Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        &name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(drop)
}

/// An event about `pod` from the scheduler, named as client-go's recorder names events (the
/// object's name and a time in hex).
async fn record(
    client: &Client,
    pod: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
) -> kube::Result<()> {
    let involved = json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(),
                          "namespace": pod.namespace(), "uid": pod.uid()});
    super::super::events::record(client, involved, NAME, type_, reason, message).await
}

/// kube-scheduler's "Scheduled" event.
async fn scheduled_event(client: &Client, pod: &Pod, node: &str) -> kube::Result<()> {
    let message = format!(
        "Successfully assigned {}/{} to {node}",
        pod.namespace().unwrap_or_default(),
        pod.name_any()
    );
    record(client, pod, "Normal", "Scheduled", &message).await
}

/// `PodScheduled=False` (Unschedulable) on the pod and a FailedScheduling event.
async fn report(client: &Client, pod: &Pod, message: &str) -> kube::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let status = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": super::super::events::now_text(),
    }]}});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    record(client, pod, "Warning", "FailedScheduling", message).await
}
