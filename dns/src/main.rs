//! `strait-dns`: cluster DNS answering from watch caches of Services, EndpointSlices and Pods.
//!
//! Only its configuration exists so far; the server arrives with issue 8 (P8).

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

/// Strait's cluster DNS: answers the Kubernetes DNS specification for the cluster domain
/// from watch caches and forwards everything else upstream.
#[derive(Debug, Parser)]
#[command(name = "strait-dns", version)]
struct Args {
    /// Address to answer on (UDP and TCP).
    #[arg(long, env = "STRAIT_DNS_LISTEN", default_value = "127.0.0.1:53")]
    listen: SocketAddr,

    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,

    /// Upstream resolvers for names outside the cluster domain; the host's by default.
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<SocketAddr>,

    /// Kubeconfig to watch the API with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "strait-dns cannot answer yet: the server is issue 8 (P8) (configuration parsed: \
         listen {}, domain {})",
        args.listen,
        args.cluster_domain
    )
}
