//! Controllers that run inside `strait-control` (as k3s embeds kube-controller-manager), each
//! a kube-rs client of the API this process serves, with the controller-manager identity.
//!
//! - [`endpointslice`]: EndpointSlices and Endpoints for Services with selectors.
//! - [`pods`]: label selectors, owners, readiness and expectations, for every controller.
//! - [`replicaset`]: each ReplicaSet's pods.
//! - [`scheduler`]: binds pods without a node.

pub mod endpointslice;
pub mod pods;
pub mod replicaset;
pub mod scheduler;

use std::path::Path;

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

/// Starts every controller against the API described by `kubeconfig`.
pub async fn run(kubeconfig: &Path) -> anyhow::Result<()> {
    let file = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    tokio::join!(
        endpointslice::run(client.clone()),
        replicaset::run(client.clone()),
        scheduler::run(client)
    );
    Ok(())
}
