//! `strait-dns`: cluster DNS answering from watch caches of Services, EndpointSlices and Pods
//! (see the library's documentation).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

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

    /// TTL of cluster records, in seconds (also the negative-caching TTL of their SOA).
    #[arg(long, default_value_t = 5)]
    ttl: u32,

    /// Upstream resolvers for names outside the cluster domain; the host's by default.
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<SocketAddr>,

    /// Where the host's resolvers are read from when `--upstream` is not given.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,

    /// Deadline in milliseconds for one forwarded question over every upstream; then SERVFAIL.
    #[arg(long, default_value_t = 2000)]
    upstream_timeout_ms: u64,

    /// Kubeconfig to watch the API with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Address to serve Prometheus metrics on (`/metrics`).
    #[arg(long)]
    metrics: Option<SocketAddr>,

    /// This node's name: with `--advertise-address`, strait-dns registers itself behind
    /// the `kube-system/kube-dns` Service.
    #[arg(long, requires = "advertise_address")]
    node_name: Option<String>,

    /// The address pods reach this node's strait-dns on.
    #[arg(long, requires = "node_name")]
    advertise_address: Option<IpAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hickory_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = strait_dns::Config {
        listen: args.listen,
        cluster_domain: args.cluster_domain,
        ttl: args.ttl,
        upstream: args.upstream,
        resolv_conf: args.resolv_conf,
        upstream_timeout: Duration::from_millis(args.upstream_timeout_ms),
        kubeconfig: args.kubeconfig,
        metrics: args.metrics,
        node_name: args.node_name,
        advertise_address: args.advertise_address,
    };
    let shutdown = async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    strait_dns::run(config, shutdown).await?;
    Ok(())
}
