//! The Node object and its Lease: registration with what the node has, the pod CIDR the
//! control plane assigned, and the heartbeats that keep the node Ready.
//!
//! As the kubelet does: the Lease in `kube-node-lease` is renewed every 10 s (cheap, what the
//! node lifecycle controller reads), and the Node's status with its conditions is written when
//! something changes or at least every minute.

use std::{net::IpAddr, time::Duration};

use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Node},
    apimachinery::pkg::apis::meta::v1::{MicroTime, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's duration: four renewals may be missed before the node is suspect.
pub const LEASE_SECONDS: i32 = 40;
/// Pods a node accepts, as the kubelet's default `maxPods`.
pub const MAX_PODS: u32 = 110;

/// What the node is, read once from the host.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub address: IpAddr,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Memory kept back from pods for the system and the agent.
    pub reserved_memory_bytes: u64,
    pub kernel: String,
    pub agent_port: u16,
    pub labels: Vec<(String, String)>,
    /// This agent's version and build ([`strait_host::agent::version`]), reported in the
    /// Node's `strait.dev/agent-version` annotation so an upgrade shows node by node.
    pub agent_version: String,
}

impl NodeInfo {
    /// Reads CPU count, memory and kernel from the host.
    pub fn from_host(
        name: &str,
        address: IpAddr,
        agent_port: u16,
        labels: Vec<(String, String)>,
    ) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(1))
            .unwrap_or(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total(&text))
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            name: name.to_owned(),
            address,
            cpus,
            memory_bytes,
            reserved_memory_bytes: (memory_bytes / 20).min(1 << 30),
            kernel,
            agent_port,
            labels,
            agent_version: own_version(),
        }
    }
}

/// This process's agent version: the crate version and the digest of the running
/// executable. `/proc/self/exe` is the file this process was started from even if it has
/// been replaced on disk since; if it cannot be read the build shows as `unknown`, which no
/// desired version equals, so the node shows as not up to date rather than wrongly as
/// up to date.
fn own_version() -> String {
    let build = strait_host::agent::build_id(std::path::Path::new("/proc/self/exe"))
        .unwrap_or_else(|_| "unknown".to_owned());
    strait_host::agent::version(env!("CARGO_PKG_VERSION"), &build)
}

/// `MemTotal` from /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// The conditions a node reports; pressure is computed by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    pub ready_message: String,
    pub memory_pressure: bool,
    pub disk_pressure: bool,
    pub pid_pressure: bool,
}

/// The Node's status for `info` and `health`, at `now`. Pure, so it is unit-tested.
pub fn status(info: &NodeInfo, health: &Health, now: &str, transitions: &Value) -> Value {
    let capacity = json!({
        "cpu": info.cpus.to_string(),
        "memory": format!("{}Ki", info.memory_bytes / 1024),
        "pods": MAX_PODS.to_string(),
        "ephemeral-storage": "10Gi",
    });
    let allocatable = json!({
        "cpu": info.cpus.to_string(),
        "memory": format!("{}Ki", info.memory_bytes.saturating_sub(info.reserved_memory_bytes) / 1024),
        "pods": MAX_PODS.to_string(),
        "ephemeral-storage": "10Gi",
    });
    let condition = |kind: &str, on: bool, reason: &str, message: &str| {
        let status = if on { "True" } else { "False" };
        // The transition time moves only when the status does.
        let last = transitions
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": last,
        })
    };
    let (ready_reason, ready_message) = if health.ready {
        ("KubeletReady", "strait-agent is posting ready status")
    } else {
        ("KubeletNotReady", health.ready_message.as_str())
    };
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": [
            {"type": "InternalIP", "address": info.address.to_string()},
            {"type": "Hostname", "address": info.name},
        ],
        "conditions": [
            condition("MemoryPressure", health.memory_pressure,
                if health.memory_pressure { "KubeletHasInsufficientMemory" } else { "KubeletHasSufficientMemory" },
                if health.memory_pressure { "available memory is low" } else { "kubelet has sufficient memory available" }),
            condition("DiskPressure", health.disk_pressure,
                if health.disk_pressure { "KubeletHasDiskPressure" } else { "KubeletHasNoDiskPressure" },
                if health.disk_pressure { "available disk space is low" } else { "kubelet has no disk pressure" }),
            condition("PIDPressure", health.pid_pressure,
                if health.pid_pressure { "KubeletHasInsufficientPID" } else { "KubeletHasSufficientPID" },
                if health.pid_pressure { "available PIDs are low" } else { "kubelet has sufficient PID available" }),
            condition("Ready", health.ready, ready_reason, ready_message),
            condition("NetworkUnavailable", false, "StraitAgentReady", "strait-agent programs this node's routes"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.agent_port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": info.kernel,
            "osImage": "Linux",
            "containerRuntimeVersion": "runc://strait",
            "kubeletVersion": concat!("v1.33.0-strait-", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": concat!("v1.33.0-strait-", env!("CARGO_PKG_VERSION")),
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

/// The Node's name, labels and annotations (its agent's version). Pure.
pub fn metadata(info: &NodeInfo) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(info.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert(
        "kubernetes.io/arch".into(),
        json!(std::env::consts::ARCH.replace("x86_64", "amd64")),
    );
    for (k, v) in &info.labels {
        labels.insert(k.clone(), json!(v));
    }
    json!({
        "name": info.name,
        "labels": labels,
        "annotations": {strait_host::agent::VERSION_ANNOTATION: info.agent_version},
    })
}

/// Creates the Node (or adopts the one a previous run registered) and returns it with the
/// pod CIDR the control plane assigned. A new Node gets `new_node` (not Ready: nothing is
/// up yet, and the scheduler must not send it pods); a known one gets `known_node`, since
/// a restarted agent adopts its running pods and pinned dataplane, and a Node that turned
/// NotReady for the length of a restart would have its pods marked not Ready and taken out
/// of their Services.
pub async fn register(
    client: &Client,
    info: &NodeInfo,
    new_node: &Health,
    known_node: &Health,
) -> kube::Result<Node> {
    let health = new_node;
    let nodes: Api<Node> = Api::all(client.clone());
    let now = now();
    let metadata = metadata(info);
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": metadata,
        "spec": {},
        "status": status(info, health, &now, &Value::Null),
    });
    let node: Node = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Registered before: keep what others set (spec, taints), refresh the status and
            // the version (this run may be an upgrade).
            let current = nodes.get(&info.name).await?;
            let patch = json!({"metadata": {
                "labels": metadata["labels"], "annotations": metadata["annotations"],
            }});
            nodes
                .patch(&info.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let previous = serde_json::to_value(&current.status)
                .ok()
                .map(|s| s["conditions"].clone())
                .unwrap_or(Value::Null);
            patch_status(client, info, known_node, &previous).await
        }
        Err(error) => Err(error),
    }
}

/// Writes the Node's status.
pub async fn patch_status(
    client: &Client,
    info: &NodeInfo,
    health: &Health,
    previous_conditions: &Value,
) -> kube::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": status(info, health, &now(), previous_conditions)});
    nodes
        .patch_status(&info.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &Client, node: &Node) -> kube::Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew = MicroTime(Timestamp::now());
    let owner = json!([{
        "apiVersion": "v1", "kind": "Node", "name": name,
        "uid": node.metadata.uid.clone().unwrap_or_default(),
    }]);
    let patch = json!({
        "metadata": {"ownerReferences": owner},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew},
    });
    match leases
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let mut lease: Lease =
                serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
            lease.metadata.name = Some(name);
            lease.metadata.namespace = Some(LEASE_NAMESPACE.to_owned());
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(drop)
        }
        Err(error) => Err(error),
    }
}

/// RFC 3339 now, to the second, as Kubernetes writes `Time`.
pub fn now() -> String {
    let time = Time(Timestamp::now());
    serde_json::to_value(time)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            address: "10.0.0.11".parse().unwrap(),
            cpus: 2,
            memory_bytes: 4 << 30,
            reserved_memory_bytes: 200 << 20,
            kernel: "6.18".into(),
            agent_port: 10250,
            labels: vec![],
            agent_version: "0.1.0+0123456789ab".into(),
        }
    }

    #[test]
    fn status_reports_capacity_allocatable_and_conditions() {
        let ready = Health {
            ready: true,
            ..Health::default()
        };
        let s = status(&info(), &ready, "2026-01-01T00:00:00Z", &Value::Null);
        assert_eq!(s["capacity"]["cpu"], "2");
        assert_eq!(s["capacity"]["memory"], "4194304Ki");
        assert_eq!(
            s["allocatable"]["memory"],
            format!("{}Ki", (4u64 << 20) - (200 << 10))
        );
        assert_eq!(s["addresses"][0]["address"], "10.0.0.11");
        let ready_condition = &s["conditions"][3];
        assert_eq!(ready_condition["type"], "Ready");
        assert_eq!(ready_condition["status"], "True");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);

        // A later heartbeat keeps the transition time while the status holds, and moves it
        // when the status changes.
        let later = status(&info(), &ready, "2026-01-01T00:01:00Z", &s["conditions"]);
        assert_eq!(
            later["conditions"][3]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            later["conditions"][3]["lastHeartbeatTime"],
            "2026-01-01T00:01:00Z"
        );
        let sick = Health {
            ready: false,
            ready_message: "runc is missing".into(),
            ..Health::default()
        };
        let changed = status(&info(), &sick, "2026-01-01T00:02:00Z", &later["conditions"]);
        assert_eq!(changed["conditions"][3]["status"], "False");
        assert_eq!(changed["conditions"][3]["message"], "runc is missing");
        assert_eq!(
            changed["conditions"][3]["lastTransitionTime"],
            "2026-01-01T00:02:00Z"
        );
    }

    #[test]
    fn metadata_carries_labels_and_the_agent_version() {
        let mut info = info();
        info.labels = vec![("zone".into(), "a".into())];
        let m = metadata(&info);
        assert_eq!(m["name"], "n1");
        assert_eq!(m["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(m["labels"]["zone"], "a");
        assert_eq!(
            m["annotations"]["strait.dev/agent-version"],
            "0.1.0+0123456789ab"
        );
        // The running agent's own version: its release and a 12-digit build id.
        let own = own_version();
        let (release, build) = own.split_once('+').expect("release+build");
        assert_eq!(release, env!("CARGO_PKG_VERSION"));
        assert_eq!(build.len(), 12, "{own}");
        assert!(build.chars().all(|c| c.is_ascii_hexdigit()), "{own}");
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        assert_eq!(
            mem_total("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(mem_total("nothing"), None);
    }
}
