//! `cargo xtask`: one clap enum, one module per task, one `exec` helper.
//!
//! xtask depends on nothing that needs the BPF toolchain, so it builds on a fresh machine and
//! can install that toolchain (`setup`) before anything else compiles.

use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod exec;
mod lint;
mod setup;
mod test;

/// Strait's tasks. The README's two commands are `cargo xtask demo` and `cargo xtask test`.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install every missing prerequisite (Debian packages, rust-src, bpf-linker, bpffs).
    Setup,
    /// Build every binary, with the BPF object embedded in the agent.
    Build,
    /// Set up, build and run every test.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// rustfmt and clippy for the host crates and the BPF crate.
    Lint,
    /// Run the benchmarks, print their figures and write reports under report/.
    Bench {
        /// Which suites (all when none is named).
        suites: Vec<bench::Suite>,
        /// The full sizes (100,000 services or objects) instead of the quick ones.
        #[arg(long)]
        full: bool,
    },
    /// Set up, build and show the dataplane working on real traffic.
    Demo,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build => exec::cargo_build(),
        Task::Test { args } => test::run(&args),
        Task::Lint => lint::run(),
        Task::Bench { suites, full } => bench::run(&suites, full),
        Task::Demo => demo::run(),
    }
}
