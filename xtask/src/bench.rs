//! `cargo xtask bench [dataplane|services|api|pods|scheduling|policy|dns|cluster]`: runs the benchmarks; they print figures and
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
    /// Pod startup latency on real agents, and the agents' memory and CPU.
    Pods,
    /// The scheduler: pods bound per second and binding latency over simulated nodes.
    Scheduling,
    /// NetworkPolicy: connection latency with 0 to 1,000 policies, apply → programmed.
    Policy,
    /// Cluster DNS: dnsperf against strait-dns and unbound serving the same names.
    Dns,
    /// `netctl cluster up` to every node Ready and answering DNS, `down`, and memory.
    Cluster,
}

pub(crate) fn run(suites: &[Suite], full: bool) -> anyhow::Result<()> {
    require_root("bench")?;
    crate::setup::run()?;
    let all = [
        Suite::Dataplane,
        Suite::Services,
        Suite::Api,
        Suite::Pods,
        Suite::Scheduling,
        Suite::Policy,
        Suite::Dns,
        Suite::Cluster,
    ];
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
            Suite::Pods | Suite::Policy => {
                // The cluster tier needs every binary beside the agent's, in release.
                exec(cargo().args(["build", "--release", "--bins"]))?;
                let bench = if *suite == Suite::Pods {
                    "pod_startup"
                } else {
                    "policy"
                };
                let mut command = cargo();
                command.args(["bench", "--package", "strait-agent", "--bench", bench, "--"]);
                if !full {
                    command.arg("--quick");
                }
                exec(&mut command)?;
            }
            Suite::Api | Suite::Scheduling => {
                let bench = if *suite == Suite::Api {
                    "api"
                } else {
                    "scheduling"
                };
                let mut command = cargo();
                command.args([
                    "bench",
                    "--package",
                    "strait-control",
                    "--bench",
                    bench,
                    "--",
                ]);
                if !full {
                    command.arg("--quick");
                }
                exec(&mut command)?;
            }
            Suite::Dns => {
                // The benchmark runs strait-control from beside strait-dns, in release.
                exec(cargo().args([
                    "build",
                    "--release",
                    "--package",
                    "strait-control",
                    "--package",
                    "strait-dns",
                ]))?;
                let mut command = cargo();
                command.args(["bench", "--package", "strait-dns", "--bench", "dns", "--"]);
                if !full {
                    command.arg("--quick");
                }
                exec(&mut command)?;
            }
            Suite::Cluster => {
                // `netctl cluster up` runs the binaries beside netctl's, in release.
                exec(cargo().args(["build", "--release", "--bins"]))?;
                let mut command = cargo();
                command.args([
                    "bench",
                    "--package",
                    "netctl",
                    "--bench",
                    "cluster_up",
                    "--",
                ]);
                command.arg(if full { "--full" } else { "--quick" });
                exec(&mut command)?;
            }
        }
    }
    Ok(())
}
