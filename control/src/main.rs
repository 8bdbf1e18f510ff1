//! `strait-control`: the control-plane process (API server, store, scheduler, controllers).
//!
//! Only its configuration exists so far; the API server and store arrive with issue 5 (P4),
//! the scheduler and controllers with issue 6 (P6). See ARCHITECTURE.md.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};

/// Strait's control plane: a Kubernetes-compatible API server on an embedded store or etcd,
/// with the scheduler and the controller manager in the same process.
#[derive(Debug, Parser)]
#[command(name = "strait-control", version)]
struct Args {
    /// Address the HTTPS API listens on.
    #[arg(long, env = "STRAIT_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,

    /// Directory for the embedded store, the CA and the generated kubeconfigs.
    #[arg(
        long,
        env = "STRAIT_DATA_DIR",
        default_value = "/var/lib/strait/control"
    )]
    data_dir: PathBuf,

    /// Which store holds the cluster's objects.
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    store: StoreKind,

    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', required_if_eq("store", "etcd"))]
    etcd_endpoints: Vec<String>,

    /// Service ClusterIP range.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,

    /// Range from which each node gets its pod CIDR.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
}

/// The store engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// An embedded redb file under the data directory: zero setup, one control process.
    Redb,
    /// An etcd cluster: several control processes for high availability.
    Etcd,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "strait-control cannot serve yet: the API server and store are issue 5 (P4) \
         (configuration parsed: listen {}, data dir {}, store {:?})",
        args.listen,
        args.data_dir.display(),
        args.store
    )
}
