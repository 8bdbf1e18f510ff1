//! `strait-agent`: parses its configuration and runs the node agent.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use strait_agent::{
    config::parse_service,
    dataplane::{Dataplane, DataplaneConfig, PodCidr, ServiceSpec, compile::NodeFacts, maglev},
    kubelet, manifest,
};
use tracing::{info, warn};

/// Strait's node agent: runs the node's pods and keeps its eBPF dataplane equal to the
/// cluster's Services, EndpointSlices and NetworkPolicies.
///
/// With `--server`, it joins the cluster (with `--token` the first time), registers its Node,
/// runs the pods bound to it and keeps the dataplane equal to the API's Services and
/// EndpointSlices. Without it, it programs the services given on the command line or in a
/// manifest file, and exits the dataplane untouched when stopped.
#[derive(Debug, Parser)]
#[command(name = "strait-agent", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,

    /// The API server to join, `https://HOST:PORT`.
    #[arg(long, env = "STRAIT_SERVER")]
    server: Option<String>,

    /// The join token (`K10<CA hash>::node:<secret>`, in strait-control's `node-token` file);
    /// needed the first time only.
    #[arg(long, env = "STRAIT_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// The agent's state directory: kubeconfig, IP allocations, pods.
    #[arg(
        long,
        env = "STRAIT_STATE_DIR",
        default_value = "/var/lib/strait/agent"
    )]
    state_dir: PathBuf,

    /// The port of the agent's HTTPS endpoint (logs and exec, through the API server).
    #[arg(long, default_value_t = 10250)]
    agent_port: u16,

    /// Where the CNI plugins are (strait-cni, and any chained after it).
    #[arg(long, env = "STRAIT_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,

    /// The node's image store.
    #[arg(long, env = "STRAIT_IMAGE_DIR", default_value = strait_host::paths::IMAGE_DIR)]
    image_dir: PathBuf,

    /// An image tarball or OCI layout to import at start; may be repeated.
    #[arg(long = "import-image")]
    import_images: Vec<PathBuf>,

    /// The cluster DNS Service's address, for pods' resolv.conf.
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: String,

    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,

    /// The runc binary.
    #[arg(long, default_value = "runc")]
    runc: PathBuf,

    /// A label for the Node, KEY=VALUE; may be repeated.
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,

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

    /// A file of Services and EndpointSlices as JSON (e.g. `kubectl get services,endpointslices
    /// -A -o json`), compiled with kube-proxy's semantics for this node.
    #[arg(long, env = "STRAIT_MANIFEST")]
    manifest: Option<PathBuf>,

    /// This node's name, as EndpointSlices' `nodeName` gives it (for Local traffic policies).
    #[arg(long, env = "STRAIT_NODE_NAME", default_value = "localhost")]
    node_name: String,

    /// The node's IPv4 address: source of flows source-NATed to backends on other nodes.
    #[arg(long, env = "STRAIT_NODE_IP")]
    node_ip: Option<Ipv4Addr>,

    /// The node's IPv6 address, for IPv6 flows.
    #[arg(long, env = "STRAIT_NODE_IPV6")]
    node_ipv6: Option<Ipv6Addr>,

    /// The node's pod ranges, one per family (backends inside them are local); may be repeated.
    #[arg(long = "pod-cidr", env = "STRAIT_POD_CIDR", value_delimiter = ',')]
    pod_cidrs: Vec<PodCidr>,

    /// The node's uplink device, where NodePort and other outside traffic is translated.
    #[arg(long, env = "STRAIT_UPLINK")]
    uplink: Option<String>,

    /// Conntrack entries when the map is created; by default 0.25 % of memory.
    #[arg(long)]
    ct_entries: Option<u32>,

    /// Entries per Maglev table for traffic from outside (a prime; 65521 suits many backends).
    #[arg(long, default_value_t = maglev::DEFAULT_TABLE_SIZE, value_parser = parse_maglev_size)]
    maglev_table_size: u32,

    /// How many frontends reached from outside get a Maglev table (the rest pick at random).
    #[arg(long, default_value_t = 256)]
    maglev_tables: u16,

    /// Seconds between reports of conntrack pressure and drop counters.
    #[arg(long, default_value_t = 60)]
    report_interval: u64,
}

/// Helper processes the agent runs.
#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// A container's log writer: reads its stdout (fd 0) and stderr (fd 3) and writes CRI log
    /// records to PATH, rotating it. Started by the agent for every container.
    #[command(hide = true)]
    LogShim {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, default_value_t = kubelet::logs::DEFAULT_MAX_SIZE)]
        max_size: u64,
        #[arg(long, default_value_t = kubelet::logs::DEFAULT_MAX_FILES)]
        max_files: u32,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))
}

fn parse_maglev_size(text: &str) -> Result<u32, String> {
    let size: u32 = text.parse().map_err(|e| format!("`{text}`: {e}"))?;
    if maglev::is_valid_table_size(size) {
        Ok(size)
    } else {
        Err(format!(
            "{size} is not a prime of at most {}",
            maglev::MAX_TABLE_SIZE
        ))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Subcommand::LogShim {
        path,
        max_size,
        max_files,
    }) = &args.command
    {
        // No runtime, no logging: this process lives as long as its container.
        return kubelet::logs::run_shim(path, *max_size, *max_files)
            .with_context(|| format!("log shim for {}", path.display()));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the runtime")?
        .block_on(agent(args))
}

async fn agent(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    if args.server.is_some() {
        // Before anything spawns a child: the reaper owns every child's exit (see
        // strait_runtime::reaper), and the agent must be the subreaper of its containers.
        strait_runtime::Reaper::install().context("failed to install the child reaper")?;
    }

    let cgroup = match args.cgroup {
        Some(path) => path,
        None => strait_host::mounts::cgroup2_mount()?,
    };
    let dataplane_config = DataplaneConfig {
        pin_dir: args.pin_dir.clone(),
        node_ipv4: args.node_ip,
        node_ipv6: args.node_ipv6,
        pod_cidrs: args.pod_cidrs.clone(),
        ct_entries: args.ct_entries,
        maglev_size: args.maglev_table_size,
        maglev_tables: args.maglev_tables,
    };
    if let Some(server) = args.server.clone() {
        let node_ip = args
            .node_ip
            .map(IpAddr::V4)
            .or(args.node_ipv6.map(IpAddr::V6))
            .context("--node-ip is required with --server: the Node's InternalIP")?;
        let config = kubelet::ClusterConfig {
            server,
            token: args.token.clone(),
            node_name: args.node_name.clone(),
            node_ip,
            node_labels: args.node_labels.clone(),
            state_dir: args.state_dir.clone(),
            cgroup,
            uplink: args.uplink.clone(),
            agent_port: args.agent_port,
            cni_bin_dir: args.cni_bin_dir.clone(),
            image_dir: args.image_dir.clone(),
            import_images: args.import_images.clone(),
            cluster_dns: args.cluster_dns.clone(),
            cluster_domain: args.cluster_domain.clone(),
            runc: args.runc.clone(),
            dataplane: dataplane_config,
        };
        let shutdown = async {
            if let Err(error) = shutdown_signal().await {
                warn!(%error, "signal handling failed");
                std::future::pending::<()>().await;
            }
        };
        kubelet::run(config, shutdown).await?;
        return Ok(());
    }
    let mut dataplane = Dataplane::load(dataplane_config)?;
    info!(adoption = ?dataplane.adoption(), "dataplane loaded");
    let mut desired = args.services.clone();
    if let Some(path) = &args.manifest {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let node = NodeFacts {
            name: args.node_name.clone(),
            addresses: args
                .node_ip
                .map(IpAddr::V4)
                .into_iter()
                .chain(args.node_ipv6.map(IpAddr::V6))
                .collect(),
        };
        let loaded = manifest::load(&text, &node)
            .with_context(|| format!("failed to load {}", path.display()))?;
        desired.extend(loaded.services);
    }
    // Everything at once, in the safe order; services an earlier agent left and nobody wants
    // now are removed.
    dataplane
        .sync_services(&desired)
        .context("failed to program services")?;
    for service in &desired {
        info!(service = %service.frontend, backends = service.backends.len(), "service programmed");
    }
    dataplane.attach_cgroup(&cgroup)?;
    if let Some(uplink) = &args.uplink {
        dataplane.attach_netdev(uplink)?;
    }
    // Our programs are attached: an earlier agent's may go now.
    dataplane.release_previous();
    info!(pin_dir = %args.pin_dir.display(), cgroup = %cgroup.display(), "dataplane ready");

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut report = tokio::time::interval(Duration::from_secs(args.report_interval.max(1)));
    loop {
        tokio::select! {
            result = &mut shutdown => {
                result?;
                break;
            }
            _ = report.tick() => report_pressure(&dataplane),
        }
    }
    info!("shutting down; pinned maps and programs stay for the next agent");
    Ok(())
}

/// Logs the conntrack fill level and drops: a table near full evicts live flows, which users
/// of other dataplanes only learn about from resets.
fn report_pressure(dataplane: &Dataplane) {
    match dataplane.ct_pressure() {
        Ok(p) if p.capacity > 0 && u64::from(p.entries) * 10 >= u64::from(p.capacity) * 9 => warn!(
            entries = p.entries,
            capacity = p.capacity,
            "conntrack is over 90 % full: the oldest flows are being evicted"
        ),
        Ok(p) => info!(entries = p.entries, capacity = p.capacity, "conntrack"),
        Err(error) => warn!(%error, "cannot read conntrack pressure"),
    }
    if let Ok(drops) = dataplane.drops() {
        for drop in drops.iter().filter(|d| d.packets > 0) {
            info!(reason = drop.reason.name(), packets = drop.packets, "drops");
        }
    }
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
