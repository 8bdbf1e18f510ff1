//! `strait-control`: the Kubernetes-compatible API server on its store.
//!
//! [`run`] is the whole process: open the store (a redb file, or etcd), create or load the PKI
//! and tokens, bootstrap the default namespaces and the `kubernetes` Service, repair the
//! address allocations, then serve HTTPS until asked to stop. The binary only parses
//! [`Config`] and calls it.

pub mod alloc;
pub mod auth;
pub mod bootstrap;
pub mod controllers;
pub mod convert;
pub mod error;
pub mod http;
pub mod namespaces;
pub mod nodes;
pub mod objects;
pub mod pki;
pub mod request;
pub mod serve;
pub mod typed;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

/// Strait's control plane: a Kubernetes-compatible API server on an embedded store or etcd.
#[derive(Clone, Debug, Parser)]
#[command(name = "strait-control", version)]
pub struct Config {
    /// Address the HTTPS API listens on (port 0 picks a free one; the address served is
    /// printed and written to the kubeconfigs).
    #[arg(long, env = "STRAIT_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,

    /// Address other machines reach the API at (the `kubernetes` Service's endpoint and the
    /// kubeconfigs' server); the listen address when unset.
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,

    /// Directory for the embedded store, the CA, the tokens and the generated kubeconfigs.
    #[arg(
        long,
        env = "STRAIT_DATA_DIR",
        default_value = "/var/lib/strait/control"
    )]
    pub data_dir: PathBuf,

    /// Which store holds the cluster's objects.
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    pub store: StoreKind,

    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', required_if_eq("store", "etcd"))]
    pub etcd_endpoints: Vec<String>,

    /// Key prefix in etcd, so several clusters can share one etcd.
    #[arg(long, default_value = "/strait")]
    pub etcd_prefix: String,

    /// Service ClusterIP range.
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: String,

    /// NodePort range.
    #[arg(long, default_value = "30000-32767")]
    pub node_port_range: String,

    /// Range from which each node gets its pod CIDR.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,

    /// Prefix length of each node's pod CIDR, cut from the cluster CIDR.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,

    /// Extra names and addresses for the serving certificate.
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// How often history older than the previous interval is compacted away (watchers
    /// further behind get 410 Gone and re-list, as with kube-apiserver's 5 minutes).
    #[arg(long, value_parser = parse_seconds, default_value = "300")]
    pub compaction_interval: Duration,

    /// How long a node may go without renewing its Lease or status before its Ready
    /// condition becomes Unknown and it is tainted unreachable (a duration: `50s`, `1m`).
    #[arg(long, value_parser = parse_duration, default_value = "50s")]
    pub node_monitor_grace_period: Duration,

    /// How many terminated pods may exist before the oldest are deleted (0 or less: no limit).
    #[arg(long, default_value_t = controllers::podgc::DEFAULT_THRESHOLD, allow_negative_numbers = true)]
    pub terminated_pod_gc_threshold: i64,

    /// Addresses LoadBalancer Services get their external IP from (a CIDR such as
    /// `10.96.200.0/24`, or `first-last`); without it they stay pending, as without a cloud.
    #[arg(long)]
    pub load_balancer_pool: Option<controllers::cloud::Pool>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

/// A duration as Kubernetes flags write them (`50s`, `1m30s`, `500ms`, `2h`), or seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 50s, 1m30s or 500ms");
    if let Ok(seconds) = parse_seconds(text) {
        return Ok(seconds);
    }
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
    }
    Ok(total)
}

/// The store engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// An embedded redb file under the data directory: zero setup, one control process.
    Redb,
    /// An etcd cluster: several control processes for high availability.
    Etcd,
}

/// Run the control plane until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    serve::run(config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubernetes_flags_write_them() {
        assert_eq!(parse_duration("50s"), Ok(Duration::from_secs(50)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("4"), Ok(Duration::from_secs(4)));
        assert!(parse_duration("4 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
