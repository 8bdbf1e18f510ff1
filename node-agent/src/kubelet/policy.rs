//! NetworkPolicy on this node: pod workers register each pod's host-side veth (and the tc
//! programs go onto it at once); a loop watches Pods, Namespaces and NetworkPolicies,
//! compiles them with `strait_policy` for the registered pods, and writes the difference into
//! the maps. Once a set of policies is in the maps the Node says so in an annotation, which
//! `netctl policy apply` waits for on every node.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{
    core::v1::{Namespace, Node, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use strait_kubewatch::cache;
use strait_policy::{
    Cluster, Identities, Labels, NamedPort, PROGRAMMED_ANNOTATION, PodInfo, Protocol, compile,
    parse, programmed_digest,
};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::dataplane::{
    Dataplane,
    policy::{RuleTable, desired, diff},
};

/// Pods' host-side veths on this node, shared by the pod workers and the policy loop.
pub struct Endpoints {
    dataplane: Arc<Mutex<Dataplane>>,
    /// `namespace/name` → (host veth, its ifindex).
    veths: Mutex<BTreeMap<String, (String, u32)>>,
    changed: Notify,
    /// The rule ids in the maps, for naming flows.
    rules: Mutex<RuleTable>,
    /// Every pod's address → `namespace/name`, as of the last compilation (flow peers).
    addresses: Mutex<HashMap<Ipv4Addr, String>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").finish_non_exhaustive()
    }
}

/// The host side of a CNI result: the interface without a sandbox.
fn host_veth(cni_result: &Value) -> Option<&str> {
    cni_result["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["sandbox"].as_str().is_none_or(str::is_empty))?["name"]
        .as_str()
}

impl Endpoints {
    pub fn new(dataplane: Arc<Mutex<Dataplane>>) -> Self {
        Self {
            dataplane,
            veths: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            rules: Mutex::new(RuleTable::default()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// The pod whose veth has `ifindex`.
    pub fn pod_of(&self, ifindex: u32) -> Option<String> {
        let veths = self.veths.lock().ok()?;
        veths
            .iter()
            .find(|(_, (_, i))| *i == ifindex)
            .map(|(pod, _)| pod.clone())
    }

    /// The pod with address `ip`, anywhere in the cluster.
    pub fn pod_at(&self, ip: Ipv4Addr) -> Option<String> {
        self.addresses.lock().ok()?.get(&ip).cloned()
    }

    /// The rule a map entry's id stands for.
    pub fn rule(&self, id: u32) -> Option<strait_policy::RuleRef> {
        self.rules.lock().ok()?.rule(id).cloned()
    }

    /// Puts policy on the pod's veth (named by its CNI result) and registers it. Pods on the
    /// host network have none and are left alone, as Kubernetes leaves them.
    pub fn attach(&self, pod: &str, cni_result: &Value) {
        let Some(ifname) = host_veth(cni_result) else {
            return;
        };
        let Some(ifindex) = crate::dataplane::ifindex(ifname) else {
            warn!(
                pod,
                ifname, "the pod's veth has no ifindex; policy not attached"
            );
            return;
        };
        let attached = self
            .dataplane
            .lock()
            .map_err(|_| "the dataplane lock is poisoned".to_owned())
            .and_then(|mut dp| dp.attach_endpoint(ifname).map_err(|e| e.to_string()));
        if let Err(error) = attached {
            warn!(pod, ifname, %error, "failed to attach policy to the pod's veth");
            return;
        }
        if let Ok(mut veths) = self.veths.lock() {
            veths.insert(pod.to_owned(), (ifname.to_owned(), ifindex));
        }
        self.changed.notify_one();
    }

    /// Forgets a pod whose sandbox is gone.
    pub fn detach(&self, pod: &str) {
        let removed = self.veths.lock().ok().and_then(|mut v| v.remove(pod));
        if let Some((ifname, _)) = removed {
            if let Ok(mut dp) = self.dataplane.lock()
                && let Err(error) = dp.detach_endpoint(&ifname)
            {
                warn!(pod, ifname, %error, "failed to unpin the pod's policy links");
            }
            self.changed.notify_one();
        }
    }

    fn local(&self) -> BTreeMap<String, u32> {
        self.veths
            .lock()
            .map(|v| v.iter().map(|(k, (_, i))| (k.clone(), *i)).collect())
            .unwrap_or_default()
    }
}

/// What the compiler needs of a pod: its address (none for host-network pods, which cannot
/// be isolated), labels and named container ports.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|_| !host_network)
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let ports = spec
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| {
                    Some(NamedPort {
                        name: p.name.clone()?,
                        protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                        port: u16::try_from(p.container_port).ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    PodInfo {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        labels: pod.labels().clone(),
        ip,
        ports,
    }
}

/// Keeps the policy maps equal to the cluster's policies for the registered pods, and the
/// Node's programmed-policies annotation equal to what they hold.
/// Where the agent writes what its identities stand for (`netctl bpf dump identities`).
pub const IDENTITIES_FILE: &str = "policy-identities.json";

/// The identities as JSON rows: number, and the namespace, labels, namespace labels and
/// ipBlock prefix of pods, or the prefix of a CIDR identity.
pub fn identities_json(identities: &Identities) -> Value {
    let rows: Vec<Value> = identities
        .iter()
        .map(|(id, key)| match key {
            strait_policy::IdentityKey::Pod {
                namespace,
                labels,
                namespace_labels,
                block,
            } => json!({"identity": id, "namespace": namespace, "labels": labels,
                        "namespaceLabels": namespace_labels, "block": block.map(|b| b.to_string())}),
            strait_policy::IdentityKey::Cidr(net) => json!({"identity": id, "cidr": net.to_string()}),
        })
        .collect();
    Value::Array(rows)
}

/// Replaces the identities file atomically (a reader never sees half of it).
fn write_identities(path: &std::path::Path, identities: &Identities) {
    let temporary = path.with_extension("json.tmp");
    let text = identities_json(identities).to_string();
    if let Err(error) =
        std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path))
    {
        warn!(path = %path.display(), %error, "failed to write the identities file");
    }
}

pub async fn run(
    client: Client,
    endpoints: Arc<Endpoints>,
    node: String,
    host: Vec<Ipv4Addr>,
    state_dir: std::path::PathBuf,
) {
    let wake = Arc::new(Notify::new());
    let (pods, w1) = cache(
        Api::<Pod>::all(client.clone()),
        Default::default(),
        &wake,
        "pods",
    );
    let (namespaces, w2) = cache(
        Api::<Namespace>::all(client.clone()),
        Default::default(),
        &wake,
        "namespaces",
    );
    let (policies, w3) = cache(
        Api::<NetworkPolicy>::all(client.clone()),
        Default::default(),
        &wake,
        "networkpolicies",
    );
    let nodes: Api<Node> = Api::all(client);
    let reconcile = async move {
        let _ = tokio::join!(
            pods.wait_until_ready(),
            namespaces.wait_until_ready(),
            policies.wait_until_ready()
        );
        let mut identities = Identities::default();
        let mut current = endpoints
            .dataplane
            .lock()
            .ok()
            .and_then(|dp| dp.policy_maps().ok())
            .unwrap_or_default();
        let mut reported = String::new();
        let mut invalid_seen = BTreeSet::new();
        loop {
            let namespace_labels: BTreeMap<String, Labels> = namespaces
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect();
            let pod_infos: Vec<PodInfo> = pods.state().iter().map(|p| pod_info(p)).collect();
            let all_policies = policies.state();
            let mut parsed = Vec::new();
            for policy in &all_policies {
                match parse(policy) {
                    Ok(p) => parsed.push(p),
                    Err(error) => {
                        if invalid_seen.insert(error.policy.clone()) {
                            warn!(%error, "ignoring an invalid NetworkPolicy");
                        }
                    }
                }
            }
            let local = endpoints.local();
            let cluster = Cluster {
                namespaces: &namespace_labels,
                pods: &pod_infos,
                policies: &parsed,
            };
            let compiled = compile(&cluster, &mut identities, |p| local.contains_key(&p.key()));
            let wanted = match endpoints.rules.lock() {
                Ok(mut rules) => desired(&compiled, &local, &host, &mut rules),
                Err(_) => return,
            };
            if let Ok(mut addresses) = endpoints.addresses.lock() {
                *addresses = pod_infos
                    .iter()
                    .filter_map(|p| match p.ip? {
                        IpAddr::V4(ip) => Some((ip, p.key())),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
            }
            let ops = diff(&current, &wanted);
            let applied = endpoints
                .dataplane
                .lock()
                .map_err(|_| "the dataplane lock is poisoned".to_owned())
                .and_then(|mut dp| dp.apply_policy(&ops).map_err(|e| e.to_string()));
            match applied {
                Ok(()) => {
                    write_identities(&state_dir.join(IDENTITIES_FILE), &identities);
                    if !ops.is_empty() {
                        info!(
                            writes = ops.len(),
                            policies = parsed.len(),
                            "policy maps updated"
                        );
                    }
                    current = wanted;
                    let digest = programmed_digest(all_policies.iter().map(AsRef::as_ref));
                    if digest != reported {
                        let patch =
                            json!({"metadata": {"annotations": {PROGRAMMED_ANNOTATION: digest}}});
                        match nodes
                            .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            Ok(_) => reported = digest,
                            Err(error) => warn!(%error, "failed to report the programmed policies"),
                        }
                    }
                }
                Err(error) => {
                    warn!(%error, "failed to write the policy maps; retrying");
                    // Re-read what the maps hold, so the next diff starts from the truth.
                    current = endpoints
                        .dataplane
                        .lock()
                        .ok()
                        .and_then(|dp| dp.policy_maps().ok())
                        .unwrap_or_default();
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                () = endpoints.changed.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            // Let a burst of changes land before compiling again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(w1, w2, w3, reconcile);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_veth_is_the_interface_without_a_sandbox() {
        let result = json!({"interfaces": [
            {"name": "lxc1234", "mac": "aa:bb"},
            {"name": "eth0", "sandbox": "/var/run/netns/x"}]});
        assert_eq!(host_veth(&result), Some("lxc1234"));
        assert_eq!(host_veth(&Value::Null), None);
    }

    #[test]
    fn pods_become_compiler_input_and_digests_ignore_order() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "x", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080}, {"containerPort": 9090},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"podIP": "10.244.1.5"},
        }))
        .unwrap();
        let info = pod_info(&pod);
        assert_eq!(info.key(), "x/web");
        assert_eq!(info.ip, Some("10.244.1.5".parse().unwrap()));
        assert_eq!(info.ports.len(), 2);
        assert_eq!(info.ports[1].protocol, Protocol::Udp);
    }
}
