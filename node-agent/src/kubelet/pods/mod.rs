//! Pods bound to this node: a watch of `spec.nodeName=<node>` feeds one worker per pod. A
//! worker builds the sandbox (network namespace wired by strait-cni), prepares volumes, runs
//! init containers then the app containers through runc, probes them, restarts them with
//! backoff as `restartPolicy` says, reports status, and on deletion stops them within the
//! grace period and removes everything before deleting the Pod for good.
//!
//! A restarted agent adopts what runs: the sandbox is read back from `sandbox.json`, running
//! containers are found through `runc state`, and restart counts come from the Pod's status.

pub mod container;
pub mod hook;
pub mod probe;
pub mod sandbox;
pub mod spec;
pub mod volumes;
mod worker;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{reflector, watcher},
};
use serde_json::Value;
use strait_image::ImageStore;
use strait_runtime::{Hierarchies, Reaper, Runc};
use tokio::sync::{Notify, watch};

/// What every pod worker shares.
pub struct Context {
    /// Where each pod's veth is registered for NetworkPolicy.
    pub policy: Arc<crate::kubelet::policy::Endpoints>,
    pub client: Client,
    pub node_name: String,
    pub node_ip: String,
    /// `<state>/pods/<uid>` holds each pod's files.
    pub pods_dir: PathBuf,
    pub reaper: Reaper,
    pub runc: Arc<Runc>,
    pub images: ImageStore,
    pub cgroups: Hierarchies,
    /// The absolute cgroupsPath under which pods run (the node's subtree).
    pub cgroup_parent: String,
    pub cni_dir: PathBuf,
    /// This binary, run as `log-shim` for every container.
    pub agent_binary: PathBuf,
    pub conflist: Value,
    pub cluster_dns: String,
    pub cluster_domain: String,
    pub host_resolv: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("node_name", &self.node_name)
            .field("pods_dir", &self.pods_dir)
            .finish_non_exhaustive()
    }
}

/// ConfigMaps and Secrets a pod refers to, read once per sync.
#[derive(Debug, Default)]
pub struct Objects {
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
}

impl spec::Lookup for Objects {
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.config_maps.get(name).cloned()
    }
    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.secrets.get(name).cloned()
    }
}

/// Reads the ConfigMaps and Secrets `pod` names (volumes and env).
pub async fn read_objects(client: &Client, pod: &Pod) -> Objects {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let value = serde_json::to_value(pod).unwrap_or_default();
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    collect_names(&value["spec"], &mut config_maps, &mut secrets);
    let mut objects = Objects::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for name in config_maps {
        if let Ok(Some(cm)) = cms.get_opt(&name).await {
            let mut data = cm.data.unwrap_or_default();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            objects.config_maps.insert(name, data);
        }
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for name in secrets {
        if let Ok(Some(secret)) = api.get_opt(&name).await {
            let mut data: BTreeMap<String, String> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            data.extend(secret.string_data.unwrap_or_default());
            objects.secrets.insert(name, data);
        }
    }
    objects
}

/// Every ConfigMap and Secret name under a pod spec (volumes, projections, env, envFrom).
fn collect_names(value: &Value, config_maps: &mut Vec<String>, secrets: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let name = match key.as_str() {
                    "configMap" | "configMapRef" | "configMapKeyRef" => {
                        child["name"].as_str().map(|n| (true, n))
                    }
                    "secretRef" | "secretKeyRef" => child["name"].as_str().map(|n| (false, n)),
                    "secret" => child["secretName"]
                        .as_str()
                        .or(child["name"].as_str())
                        .map(|n| (false, n)),
                    _ => None,
                };
                match name {
                    Some((true, n)) if !config_maps.iter().any(|c| c == n) => {
                        config_maps.push(n.to_owned());
                    }
                    Some((false, n)) if !secrets.iter().any(|c| c == n) => {
                        secrets.push(n.to_owned());
                    }
                    _ => {}
                }
                collect_names(child, config_maps, secrets);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_names(item, config_maps, secrets);
            }
        }
        _ => {}
    }
}

/// Watches this node's pods into `pods` (through `writer`) and runs a worker per pod until
/// the task is dropped.
pub async fn run(
    ctx: Arc<Context>,
    pods: reflector::Store<Pod>,
    writer: reflector::store::Writer<Pod>,
) {
    let changed = Arc::new(Notify::new());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let watch = strait_kubewatch::feed(
        writer,
        Api::<Pod>::all(ctx.client.clone()),
        config,
        Arc::clone(&changed),
        "pods",
    );
    let dispatch = async move {
        let _ = pods.wait_until_ready().await;
        let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
        loop {
            let current: HashMap<String, Arc<Pod>> = pods
                .state()
                .into_iter()
                .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
                .collect();
            for (uid, pod) in &current {
                match workers.get(uid) {
                    Some(sender) => {
                        let _ = sender.send(Some(Arc::clone(pod)));
                    }
                    None => {
                        let (sender, receiver) = watch::channel(Some(Arc::clone(pod)));
                        tokio::spawn(worker::run(Arc::clone(&ctx), uid.clone(), receiver));
                        workers.insert(uid.clone(), sender);
                    }
                }
            }
            workers.retain(|uid, sender| {
                if current.contains_key(uid) {
                    true
                } else {
                    // Gone from the API (deleted with no grace): the worker tears down.
                    let _ = sender.send(None);
                    false
                }
            });
            worker::collect_orphans(&ctx, &current);
            changed.notified().await;
        }
    };
    tokio::join!(watch, dispatch);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn referenced_objects_are_found_everywhere_in_the_spec() {
        let spec = json!({
            "volumes": [{"name": "a", "configMap": {"name": "cm1"}},
                        {"name": "b", "secret": {"secretName": "s1"}},
                        {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm2"}}]}}],
            "containers": [{"name": "x",
                "envFrom": [{"secretRef": {"name": "s2"}}],
                "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "k"}}}]}]
        });
        let (mut cms, mut secrets) = (Vec::new(), Vec::new());
        collect_names(&spec, &mut cms, &mut secrets);
        cms.sort();
        secrets.sort();
        assert_eq!(cms, ["cm1", "cm2"]);
        assert_eq!(secrets, ["s1", "s2"]);
    }
}
