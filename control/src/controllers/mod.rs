//! Controllers that run inside `strait-control` (as k3s embeds kube-controller-manager), each
//! a kube-rs client of the API this process serves, with the controller-manager identity.
//!
//! - [`agents`]: the node agents (host processes) shown as DaemonSet `kube-system/strait-agent`.
//! - [`cloud`]: the cloud provider seam and the service controller (LoadBalancer addresses).
//! - [`cronjob`]: Jobs started on a cron schedule, with concurrency and history limits.
//! - [`daemonset`]: one pod per eligible node for each DaemonSet, rolled out node by node.
//! - [`deployment`]: ReplicaSets per pod template, rolled out by strategy, with revisions.
//! - [`endpointslice`]: EndpointSlices and Endpoints for Services with selectors.
//! - [`events`]: the Event writer every controller records with.
//! - [`gc`]: the garbage collector (owner references, orphan and foreground deletion).
//! - [`job`]: each Job's pods until enough succeed, its failure, suspension and TTL.
//! - [`leader`]: leader election among control processes sharing a store.
//! - [`nodelifecycle`]: node health from heartbeats, its taints, and taint-based eviction.
//! - [`podgc`]: deletes pods no kubelet will finish, and terminated pods beyond a threshold.
//! - [`pods`]: label selectors, owners, readiness and expectations, for every controller.
//! - [`replicaset`]: each ReplicaSet's pods.
//! - [`revision`]: ControllerRevisions, the template history of DaemonSets and StatefulSets.
//! - [`scheduler`]: binds pods without a node.
//! - [`serviceaccount`]: a `default` ServiceAccount in every namespace.
//! - [`statefulset`]: each StatefulSet's ordered pods and their claims, rolled out by revision.

pub mod agents;
pub mod cloud;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpointslice;
pub mod events;
pub mod gc;
pub mod job;
pub mod leader;
pub mod nodelifecycle;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod revision;
pub mod scheduler;
pub mod serviceaccount;
pub mod statefulset;

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
    /// This process's name in leader election (unique among the control processes).
    pub identity: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: nodelifecycle::DEFAULT_GRACE,
            terminated_pod_gc_threshold: podgc::DEFAULT_THRESHOLD,
            load_balancer_pool: None,
            identity: "strait-control".to_owned(),
        }
    }
}

/// Starts every controller against the API described by `kubeconfig`.
pub async fn run(kubeconfig: &Path, options: Options) -> anyhow::Result<()> {
    let file = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    loop {
        leader::acquire(&client, &options.identity).await;
        tracing::info!(identity = %options.identity, "leading: the controllers start");
        let mut controllers = spawn(&client, &options);
        tokio::select! {
            () = leader::hold(&client, &options.identity) => {
                tracing::warn!(identity = %options.identity, "lost the lead: the controllers stop");
                controllers.shutdown().await;
            }
            // The loops run until the process ends; one that returns or panics is a bug, and
            // the process should stop rather than run without it.
            Some(ended) = controllers.join_next() => {
                ended?;
                anyhow::bail!("a controller loop ended");
            }
        }
    }
}

/// Starts every controller.
fn spawn(client: &Client, options: &Options) -> tokio::task::JoinSet<()> {
    let client = client.clone();
    // Each controller is a task of its own: they share nothing but the client, one stalled
    // loop must not starve the others, and one joined future of every loop would be too
    // large for a thread's stack.
    let mut controllers = tokio::task::JoinSet::new();
    controllers.spawn(agents::run(client.clone()));
    controllers.spawn(cronjob::run(client.clone()));
    controllers.spawn(daemonset::run(client.clone()));
    controllers.spawn(deployment::run(client.clone()));
    controllers.spawn(endpointslice::run(client.clone()));
    controllers.spawn(gc::run(client.clone()));
    controllers.spawn(job::run(client.clone()));
    controllers.spawn(nodelifecycle::run(
        client.clone(),
        options.node_monitor_grace_period,
    ));
    controllers.spawn(podgc::run(
        client.clone(),
        options.terminated_pod_gc_threshold,
    ));
    controllers.spawn(replicaset::run(client.clone()));
    controllers.spawn(serviceaccount::run(client.clone()));
    controllers.spawn(statefulset::run(client.clone()));
    // Without a provider LoadBalancer Services stay pending, as without a cloud.
    if let Some(pool) = options.load_balancer_pool.clone() {
        controllers.spawn(cloud::run(client.clone(), cloud::LocalPool::new(pool)));
    }
    controllers.spawn(scheduler::run(client));
    controllers
}
