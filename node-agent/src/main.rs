//! `strait-agent`: parses its configuration and runs the node agent.

use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::Context as _;
use clap::Parser;
use strait_agent::{
    config::parse_service,
    dataplane::{Dataplane, DataplaneConfig, PodCidr, ServiceSpec},
};
use tracing::info;

/// Strait's node agent: runs the node's pods and keeps its eBPF dataplane equal to the
/// cluster's Services, EndpointSlices and NetworkPolicies.
///
/// Today it loads the dataplane, attaches socket-level service translation to a cgroup and
/// programs static services given on the command line; joining a cluster and running pods
/// arrive with issue 10.
#[derive(Debug, Parser)]
#[command(name = "strait-agent", version)]
struct Args {
    /// Directory on bpffs for this node's pinned maps.
    #[arg(long, env = "STRAIT_PIN_DIR", default_value = strait_host::paths::PIN_DIR)]
    pin_dir: PathBuf,

    /// cgroup2 directory whose processes get socket-level service translation.
    /// Defaults to the cgroup2 mount found in /proc/mounts (the whole host); local clusters
    /// and tests pass their own subtree.
    #[arg(long, env = "STRAIT_CGROUP")]
    cgroup: Option<PathBuf>,

    /// A static service, VIP:PORT[/PROTO]=BACKEND:PORT[,BACKEND:PORT…]; may be repeated.
    #[arg(long = "service", value_parser = parse_service)]
    services: Vec<ServiceSpec>,

    /// The node's address: source of flows source-NATed to backends on other nodes.
    #[arg(long, env = "STRAIT_NODE_IP")]
    node_ip: Option<Ipv4Addr>,

    /// The node's pod range (backends inside it are local).
    #[arg(long, env = "STRAIT_POD_CIDR")]
    pod_cidr: Option<PodCidr>,

    /// The node's uplink device, where NodePort and other outside traffic is translated.
    #[arg(long, env = "STRAIT_UPLINK")]
    uplink: Option<String>,

    /// Conntrack entries when the map is created; by default 0.25 % of memory.
    #[arg(long)]
    ct_entries: Option<u32>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();

    let cgroup = match args.cgroup {
        Some(path) => path,
        None => strait_host::mounts::cgroup2_mount()?,
    };
    let mut dataplane = Dataplane::load(DataplaneConfig {
        pin_dir: args.pin_dir.clone(),
        node_ipv4: args.node_ip,
        pod_cidr: args.pod_cidr,
        ct_entries: args.ct_entries,
    })?;
    info!(adoption = ?dataplane.adoption(), "dataplane loaded");
    for service in &args.services {
        dataplane
            .upsert_service(service)
            .with_context(|| format!("failed to program service {}", service.frontend))?;
        info!(service = %service.frontend, backends = service.backends.len(), "service programmed");
    }
    dataplane.attach_cgroup(&cgroup)?;
    if let Some(uplink) = &args.uplink {
        dataplane.attach_netdev(uplink)?;
    }
    // Our programs are attached: an earlier agent's may go now.
    dataplane.release_previous();
    info!(pin_dir = %args.pin_dir.display(), cgroup = %cgroup.display(), "dataplane ready");

    shutdown_signal().await?;
    info!("shutting down; pinned maps and programs stay for the next agent");
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}
