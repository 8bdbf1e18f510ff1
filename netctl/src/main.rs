//! `netctl`: the CLI users live in. Thin: parse, dispatch, print.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bench;
mod bpf;
mod image;

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
                },
        } => bpf::dump(&pin_dir, table, json),
        Command::Image {
            command: ImageCommand::Import { files, store },
        } => image::import(&store, &files),
        Command::Image {
            command: ImageCommand::List { store },
        } => image::list(&store),
    }
}
