//! `cargo xtask bench [dataplane|services|api]`: runs the benchmarks; they print figures and
//! write reports under `report/`, and never fail on time.

use clap::ValueEnum;

use crate::exec::{cargo, exec, require_root};

/// Which benchmarks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Suite {
    /// Map lookups and connect latency of the dataplane alone.
    Dataplane,
    /// `netctl bench services`: Strait against kube-proxy's iptables and nftables modes.
    Services,
    /// The API server: mutating latency, watch delivery, memory, on redb and etcd.
    Api,
}

pub(crate) fn run(suites: &[Suite], full: bool) -> anyhow::Result<()> {
    require_root("bench")?;
    crate::setup::run()?;
    let all = [Suite::Dataplane, Suite::Services, Suite::Api];
    let suites = if suites.is_empty() { &all[..] } else { suites };
    for suite in suites {
        match suite {
            Suite::Dataplane => {
                for bench in ["service_lookup", "connect_latency"] {
                    exec(cargo().args(["bench", "--package", "strait-agent", "--bench", bench]))?;
                }
            }
            Suite::Services => {
                let mut command = cargo();
                command.args([
                    "run",
                    "--release",
                    "--package",
                    "netctl",
                    "--",
                    "bench",
                    "services",
                ]);
                if !full {
                    command.arg("--quick");
                }
                exec(&mut command)?;
            }
            Suite::Api => {
                let mut command = cargo();
                command.args([
                    "bench",
                    "--package",
                    "strait-control",
                    "--bench",
                    "api",
                    "--",
                ]);
                if !full {
                    command.arg("--quick");
                }
                exec(&mut command)?;
            }
        }
    }
    Ok(())
}
