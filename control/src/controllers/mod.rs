//! Controllers that run inside `strait-control` (as k3s embeds kube-controller-manager), each
//! a kube-rs client of the API this process serves, with the controller-manager identity.
//!
//! - [`cloud`]: the cloud provider seam and the service controller (LoadBalancer addresses).
//! - [`daemonset`]: one pod per eligible node for each DaemonSet, rolled out node by node.
//! - [`deployment`]: ReplicaSets per pod template, rolled out by strategy, with revisions.
//! - [`endpointslice`]: EndpointSlices and Endpoints for Services with selectors.
//! - [`gc`]: the garbage collector (owner references, orphan and foreground deletion).
//! - [`nodelifecycle`]: node health from heartbeats, its taints, and taint-based eviction.
//! - [`podgc`]: deletes pods no kubelet will finish, and terminated pods beyond a threshold.
//! - [`pods`]: label selectors, owners, readiness and expectations, for every controller.
//! - [`replicaset`]: each ReplicaSet's pods.
//! - [`revision`]: ControllerRevisions, the template history of DaemonSets and StatefulSets.
//! - [`scheduler`]: binds pods without a node.
//! - [`serviceaccount`]: a `default` ServiceAccount in every namespace.

pub mod cloud;
pub mod daemonset;
pub mod deployment;
pub mod endpointslice;
pub mod gc;
pub mod nodelifecycle;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod revision;
pub mod scheduler;
pub mod serviceaccount;

use std::{path::Path, time::Duration};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

/// What the controllers are configured with (kube-controller-manager's flags of the same
/// names on `strait-control`).
#[derive(Clone, Debug)]
pub struct Options {
    /// `--node-monitor-grace-period`: how long a node may be silent before it is Unknown.
    pub node_monitor_grace_period: Duration,
    /// `--terminated-pod-gc-threshold`: terminated pods kept; 0 or less keeps them all.
    pub terminated_pod_gc_threshold: i64,
    /// `--load-balancer-pool`: the local cloud provider's addresses; none, no provider.
    pub load_balancer_pool: Option<cloud::Pool>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: nodelifecycle::DEFAULT_GRACE,
            terminated_pod_gc_threshold: podgc::DEFAULT_THRESHOLD,
            load_balancer_pool: None,
        }
    }
}

/// Starts every controller against the API described by `kubeconfig`.
pub async fn run(kubeconfig: &Path, options: Options) -> anyhow::Result<()> {
    let file = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let cloud_client = client.clone();
    tokio::join!(
        daemonset::run(client.clone()),
        deployment::run(client.clone()),
        endpointslice::run(client.clone()),
        gc::run(client.clone()),
        nodelifecycle::run(client.clone(), options.node_monitor_grace_period),
        podgc::run(client.clone(), options.terminated_pod_gc_threshold),
        serviceaccount::run(client.clone()),
        async {
            // Without a provider LoadBalancer Services stay pending, as without a cloud.
            if let Some(pool) = options.load_balancer_pool.clone() {
                cloud::run(cloud_client, cloud::LocalPool::new(pool)).await;
            }
        },
        replicaset::run(client.clone()),
        scheduler::run(client)
    );
    Ok(())
}
