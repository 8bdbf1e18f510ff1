//! `netctl`: the CLI users live in. Thin: parse, dispatch, print.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bpf;

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
    /// Inspect this node's eBPF dataplane.
    Bpf {
        #[command(subcommand)]
        command: BpfCommand,
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
        Command::Bpf {
            command:
                BpfCommand::Dump {
                    table,
                    json,
                    pin_dir,
                },
        } => bpf::dump(&pin_dir, table, json),
    }
}
