//! `netctl`: the CLI users live in. Thin: parse, dispatch, print.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod agents;
mod bench;
mod bpf;
mod cluster;
mod flows;
mod image;
mod node;
mod policy;

/// netctl: Strait's networking view of a cluster: eBPF maps, flows, policy verdicts and
/// service-routing benchmarks.
#[derive(Debug, Parser)]
#[command(name = "netctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure service routing: Strait against kube-proxy's iptables and nftables modes and
    /// the direct connection, on a topology of network namespaces it builds and removes.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Local clusters on this machine: nodes in network namespaces, real agents.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Show what kubectl summarises: `get agents`, every node's agent and its version.
    Get {
        #[command(subcommand)]
        command: agents::GetCommand,
    },
    /// The node agent: upgrade a local cluster's agents; install this machine's as a service.
    Node {
        #[command(subcommand)]
        command: node::NodeCommand,
    },
    /// Inspect this node's eBPF dataplane.
    Bpf {
        #[command(subcommand)]
        command: BpfCommand,
    },
    /// The node's image store: import image files, list what is stored.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Policy verdicts recorded by every node (newest last), or followed as they happen.
    Flows {
        /// The kubeconfig (default: KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Only flows with a pod of this namespace at either end.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Only flows with this pod (NAME in --namespace, or NAMESPACE/NAME) at either end.
        #[arg(long)]
        pod: Option<String>,
        /// Only this verdict.
        #[arg(long, value_parser = ["allowed", "denied"])]
        verdict: Option<String>,
        /// Only this node's flows.
        #[arg(long)]
        node: Option<String>,
        /// How many of the newest flows to show.
        #[arg(long, default_value_t = 20)]
        last: usize,
        /// Keep printing new flows.
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// NetworkPolicies: apply and wait until every node enforces them, list, explain a verdict.
    Policy {
        /// The kubeconfig (default: KUBECONFIG, then ~/.kube/config).
        #[arg(long, global = true, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Start a cluster: an underlay bridge, K node namespaces each running strait-agent,
    /// strait-control on the host's end of the underlay; waits until every node is Ready.
    Up {
        /// The cluster's name (a DNS label of at most 12 characters).
        #[arg(long, default_value = "strait")]
        name: String,
        /// How many nodes.
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// The control plane's store.
        #[arg(long, value_enum, default_value_t = StoreArg::Redb)]
        store: StoreArg,
        /// The directory holding strait-control, strait-agent, strait-cni and strait-dns
        /// (default: netctl's own).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Seconds to wait for every node to be Ready.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop a cluster and remove everything it made.
    Down {
        #[arg(long, default_value = "strait")]
        name: String,
    },
    /// Show clusters: their processes and nodes.
    Status {
        /// Only this cluster.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StoreArg {
    Redb,
    Etcd,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate NetworkPolicy manifests, apply them, and wait until every Ready node's maps
    /// hold them. Nothing is applied if any is wrong.
    Apply {
        /// Manifest files (YAML or JSON; `-` for standard input).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The namespace of policies that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Apply even if a named port matches no pod.
        #[arg(long)]
        force: bool,
        /// How long to wait for the nodes, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Every NetworkPolicy, the pods it selects and its rules.
    List,
    /// Whether a connection between two pods is allowed, and which rule decides.
    Explain {
        /// The client pod, NAMESPACE/NAME.
        #[arg(long)]
        from: String,
        /// The server pod, NAMESPACE/NAME.
        #[arg(long)]
        to: String,
        /// The destination port and protocol, e.g. 80/TCP.
        #[arg(long)]
        port: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import docker-archive or OCI archive tarballs (gzip or not) and OCI layout directories.
    Import {
        /// The files (or OCI layout directories) to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The image store directory.
        #[arg(long, env = "STRAIT_IMAGE_DIR", default_value = strait_host::paths::IMAGE_DIR)]
        store: PathBuf,
    },
    /// List the stored images.
    List {
        /// The image store directory.
        #[arg(long, env = "STRAIT_IMAGE_DIR", default_value = strait_host::paths::IMAGE_DIR)]
        store: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Program N services and measure programming, an endpoint change and connection latency.
    Services {
        /// Sizes up to 10,000 and fewer connections: a few minutes on 2 cores.
        #[arg(long)]
        quick: bool,
        /// Service counts to measure (overrides the defaults).
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Where the markdown report is written.
        #[arg(long, default_value = "report")]
        report_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BpfCommand {
    /// Print one of the dataplane's maps, read from its pins (works while the agent is down).
    Dump {
        /// Which table.
        #[arg(value_enum)]
        table: bpf::Table,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The node's pin directory.
        #[arg(long, env = "STRAIT_PIN_DIR", default_value = strait_host::paths::PIN_DIR)]
        pin_dir: PathBuf,
        /// The agent's state directory (where `identities` are described).
        #[arg(long, env = "STRAIT_STATE_DIR", default_value = strait_host::paths::STATE_DIR)]
        state_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench {
            command:
                BenchCommand::Services {
                    quick,
                    sizes,
                    report_dir,
                },
        } => {
            // Before any thread exists: an interrupted run still removes what it made.
            strait_tests::clean_up_on_signal()?;
            bench::require_tools()?;
            let default_sizes = if quick {
                vec![1, 100, 1_000, 10_000]
            } else {
                vec![1, 100, 1_000, 10_000, 100_000]
            };
            bench::services(&bench::Options {
                sizes: if sizes.is_empty() {
                    default_sizes
                } else {
                    sizes
                },
                connections: if quick { 500 } else { 2_000 },
                warmup: if quick { 100 } else { 200 },
                rounds: 3,
                nft_transaction_max: 10_000,
                nft_budget: std::time::Duration::from_secs(600),
                report_dir,
            })
        }
        Command::Bpf {
            command:
                BpfCommand::Dump {
                    table,
                    json,
                    pin_dir,
                    state_dir,
                },
        } => match table {
            bpf::Table::Identities => bpf::identities(&state_dir, json),
            _ => bpf::dump(&pin_dir, table, json),
        },
        Command::Cluster { command } => match command {
            ClusterCommand::Up {
                name,
                nodes,
                store,
                bin_dir,
                timeout,
            } => {
                let store = match store {
                    StoreArg::Redb => strait_cluster::Store::Redb,
                    StoreArg::Etcd => strait_cluster::Store::Etcd,
                };
                let timeout = std::time::Duration::from_secs(timeout);
                cluster::up(&name, nodes, store, bin_dir, timeout)
            }
            ClusterCommand::Down { name } => cluster::down(&name),
            ClusterCommand::Status { name } => cluster::status(name.as_deref()),
        },
        Command::Get { command } => agents::run(command),
        Command::Node { command } => node::run(command),
        Command::Image {
            command: ImageCommand::Import { files, store },
        } => image::import(&store, &files),
        Command::Image {
            command: ImageCommand::List { store },
        } => image::list(&store),
        Command::Flows {
            kubeconfig,
            namespace,
            pod,
            verdict,
            node,
            last,
            follow,
            json,
        } => {
            let query = flows::Query {
                namespace,
                pod,
                verdict,
                node,
                last,
                follow,
                json,
            };
            tokio::runtime::Runtime::new()?.block_on(async move {
                let client = policy::client(kubeconfig.as_deref()).await?;
                flows::show(&client, &query).await
            })
        }
        Command::Policy {
            kubeconfig,
            command,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let client = policy::client(kubeconfig.as_deref()).await?;
                match command {
                    PolicyCommand::Apply {
                        files,
                        namespace,
                        force,
                        timeout,
                    } => {
                        let timeout = std::time::Duration::from_secs(timeout);
                        policy::apply(&client, &files, &namespace, force, timeout).await
                    }
                    PolicyCommand::List => policy::list(&client).await,
                    PolicyCommand::Explain { from, to, port } => {
                        let (port, protocol) = policy::parse_port(&port)?;
                        if policy::explain(&client, &from, &to, port, protocol).await? {
                            Ok(())
                        } else {
                            // Denied is an answer, not a failure of the command; scripts
                            // read it from the exit status, as `kubectl auth can-i` does.
                            std::process::exit(1)
                        }
                    }
                }
            })
        }
    }
}
