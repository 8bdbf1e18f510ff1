//! Controllers that run inside `strait-control` (as k3s embeds kube-controller-manager), each
//! a kube-rs client of the API this process serves, with the controller-manager identity.
//!
//! - [`endpointslice`]: EndpointSlices and Endpoints for Services with selectors.

pub mod endpointslice;

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
    endpointslice::run(client).await;
    Ok(())
}
