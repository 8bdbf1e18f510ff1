//! The agent's kubelet duties and its watch-driven dataplane manager.
//!
//! - [`join`]: a join token pinned to the CA becomes a kubeconfig.
//! - [`node`]: the Node object, its status and its Lease.
//! - [`services`]: Services and EndpointSlices compiled into the dataplane.
//! - [`routes`]: routes to the other nodes' pod ranges.
//! - [`pods`]: pods bound to this node, run with runc and wired with strait-cni.
//! - [`policy`]: NetworkPolicy compiled into the maps for this node's pods.
//! - [`flows`]: the verdicts of those maps, named, for `netctl flows`.

pub mod flows;
pub mod join;
pub mod logs;
pub mod node;
pub mod pods;
pub mod policy;
pub mod routes;
pub mod server;
pub mod services;
pub mod spdy;
pub mod streaming;

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use tracing::{info, warn};

use crate::dataplane::{Dataplane, DataplaneConfig, DataplaneError, PodCidr, compile::NodeFacts};

/// What the agent needs to join a cluster and run its node.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The API server, `https://HOST:PORT`.
    pub server: String,
    /// A join token (`K10<CA hash>::node:<secret>`); without one, the kubeconfig a previous
    /// join wrote under `state_dir` is used.
    pub token: Option<String>,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub node_labels: Vec<(String, String)>,
    /// The agent's state: kubeconfig, IP allocations, pod directories.
    pub state_dir: PathBuf,
    /// The cgroup2 directory pods run under and socket-level translation is attached to.
    pub cgroup: PathBuf,
    /// The uplink, where NodePort traffic arrives.
    pub uplink: Option<String>,
    /// The port of the agent's HTTPS endpoint (logs, exec).
    pub agent_port: u16,
    /// Where strait-cni is.
    pub cni_bin_dir: PathBuf,
    /// The image store.
    pub image_dir: PathBuf,
    /// Image tarballs or layouts imported at start.
    pub import_images: Vec<PathBuf>,
    /// The cluster DNS Service's address and the cluster domain, for pods' resolv.conf.
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// The runc binary.
    pub runc: PathBuf,
    /// The dataplane's settings; `pod_cidrs` and the node address are filled in from the Node.
    pub dataplane: DataplaneConfig,
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("failed to join {server}: {source}")]
    Join {
        server: String,
        #[source]
        source: join::JoinError,
    },
    #[error(
        "no join token was given and {0} does not exist: pass --token (see `strait-control`'s node-token file)"
    )]
    NotJoined(PathBuf),
    #[error("failed to read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to reach the API server: {0}")]
    Api(#[from] kube::Error),
    #[error("node {node} has no pod CIDR: is the control plane's --cluster-cidr full?")]
    NoPodCidr { node: String },
    #[error("node {node} has pod CIDR {cidr}, which is not a network: {why}")]
    PodCidr {
        node: String,
        cidr: String,
        why: String,
    },
    #[error(transparent)]
    Dataplane(#[from] Box<DataplaneError>),
    #[error("failed to set up {what}: {why}")]
    Setup { what: String, why: String },
}

fn setup(what: impl Into<String>) -> impl FnOnce(String) -> AgentError {
    let what = what.into();
    move |why| AgentError::Setup { what, why }
}

/// A client from a kubeconfig file.
pub async fn client(kubeconfig: &std::path::Path) -> Result<Client, AgentError> {
    let error = |source| AgentError::Kubeconfig {
        path: kubeconfig.to_owned(),
        source,
    };
    let file = Kubeconfig::read_from(kubeconfig).map_err(error)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(error)?;
    Ok(Client::try_from(config)?)
}

/// Joins (or rejoins), registers the Node, loads the dataplane for its pod CIDR and runs the
/// node until `shutdown` resolves.
pub async fn run(
    config: ClusterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let kubeconfig = config.state_dir.join("kubeconfig");
    if let Some(token) = &config.token {
        join::join(&config.server, token, &kubeconfig)
            .await
            .map_err(|source| AgentError::Join {
                server: config.server.clone(),
                source,
            })?;
        info!(server = %config.server, "joined: the server's CA matches the token");
    } else if !kubeconfig.exists() {
        return Err(AgentError::NotJoined(kubeconfig));
    }
    let client = client(&kubeconfig).await?;

    let info = node::NodeInfo::from_host(
        &config.node_name,
        config.node_ip,
        config.agent_port,
        config.node_labels.clone(),
    );
    let health = node::Health {
        ready: true,
        ..node::Health::default()
    };
    let starting = node::Health {
        ready: false,
        ready_message: "strait-agent is starting: its dataplane and endpoint are not up yet"
            .to_owned(),
        ..node::Health::default()
    };
    let mut registered = node::register(&client, &info, &starting, &health).await?;
    let cidr = registered
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .ok_or_else(|| AgentError::NoPodCidr {
            node: config.node_name.clone(),
        })?;
    let pod_cidr: PodCidr = cidr.parse().map_err(|why| AgentError::PodCidr {
        node: config.node_name.clone(),
        cidr: cidr.clone(),
        why,
    })?;
    info!(node = %config.node_name, pod_cidr = %cidr, "node registered");

    let mut dataplane_config = config.dataplane.clone();
    dataplane_config.pod_cidrs = vec![pod_cidr];
    match config.node_ip {
        IpAddr::V4(ip) => dataplane_config.node_ipv4 = Some(ip),
        IpAddr::V6(ip) => dataplane_config.node_ipv6 = Some(ip),
    }
    let mut dataplane = Dataplane::load(dataplane_config).map_err(Box::new)?;
    info!(adoption = ?dataplane.adoption(), "dataplane loaded");
    dataplane.attach_cgroup(&config.cgroup).map_err(Box::new)?;
    if let Some(uplink) = &config.uplink {
        dataplane.attach_netdev(uplink).map_err(Box::new)?;
    }
    dataplane.release_previous();

    let reaper =
        strait_runtime::Reaper::install().map_err(|e| setup("the child reaper")(e.to_string()))?;
    let ring = dataplane.take_flows();
    let dataplane = Arc::new(Mutex::new(dataplane));
    let endpoints = Arc::new(policy::Endpoints::new(Arc::clone(&dataplane)));
    let flow_log = Arc::new(flows::FlowLog::new(flows::DEFAULT_CAPACITY));
    let pods = pod_context(
        &config,
        &client,
        &cidr,
        reaper.clone(),
        Arc::clone(&endpoints),
    )?;

    let facts = NodeFacts {
        name: config.node_name.clone(),
        addresses: vec![config.node_ip],
    };
    let services = services::run(client.clone(), facts, Arc::clone(&dataplane));
    let ip_reaper = reaper.clone();
    let ip: routes::IpRunner = Arc::new(move |args: &[&str]| run_ip(&ip_reaper, args));
    let routes = routes::run(client.clone(), config.node_name.clone(), ip);
    let host = host_addresses(&reaper, config.node_ip);
    let flow_reader = {
        let (log, endpoints, node) = (
            Arc::clone(&flow_log),
            Arc::clone(&endpoints),
            config.node_name.clone(),
        );
        async move {
            match ring {
                Some(ring) => flows::run(ring, log, endpoints, node).await,
                None => std::future::pending().await,
            }
        }
    };
    let policy = policy::run(
        client.clone(),
        endpoints,
        config.node_name.clone(),
        host,
        config.state_dir.clone(),
    );
    let (pod_store, pod_writer) =
        kube::runtime::reflector::store::<k8s_openapi::api::core::v1::Pod>();
    let listen = std::net::SocketAddr::new(config.node_ip, config.agent_port);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| setup(format!("the agent endpoint on {listen}"))(e.to_string()))?;
    let tls = server::tls_config(vec![config.node_ip.to_string(), config.node_name.clone()])
        .map_err(setup("the agent's serving certificate"))?;
    let token = std::fs::read_to_string(&kubeconfig)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_owned))
        })
        .ok_or_else(|| {
            setup("the agent endpoint")(format!("no token in {}", kubeconfig.display()))
        })?;
    let endpoint = server::serve(
        listener,
        tls,
        Arc::new(server::Endpoint {
            token,
            pods: pod_store.clone(),
            ctx: Arc::clone(&pods),
            flows: Arc::clone(&flow_log),
        }),
    );
    // Everything a pod needs is up and the endpoint listens: the node is Ready now.
    let previous = serde_json::to_value(&registered.status)
        .map(|s| s["conditions"].clone())
        .unwrap_or_default();
    match node::patch_status(&client, &info, &health, &previous).await {
        Ok(node) => registered = node,
        Err(error) => warn!(%error, "failed to report the node Ready; the heartbeat will"),
    }
    let heartbeat = heartbeat(client.clone(), info, health, registered);
    let pods = pods::run(pods, pod_store, pod_writer);
    tokio::select! {
        () = pods => {}
        () = endpoint => {}
        () = shutdown => info!("shutting down; pods and pinned maps stay for the next agent"),
        () = heartbeat => {}
        () = services => {}
        () = routes => {}
        () = policy => {}
        () = flow_reader => {}
    }
    Ok(())
}

/// Renews the Lease every 10 s and rewrites the Node's status every minute.
async fn heartbeat(
    client: Client,
    info: node::NodeInfo,
    health: node::Health,
    mut registered: k8s_openapi::api::core::v1::Node,
) {
    let mut ticker = tokio::time::interval(node::LEASE_RENEW);
    let mut beats = 0u32;
    loop {
        ticker.tick().await;
        if let Err(error) = node::renew_lease(&client, &registered).await {
            warn!(%error, "failed to renew the node lease");
        }
        beats += 1;
        if beats.is_multiple_of(6) {
            let previous = serde_json::to_value(&registered.status)
                .map(|s| s["conditions"].clone())
                .unwrap_or_default();
            match node::patch_status(&client, &info, &health, &previous).await {
                Ok(node) => registered = node,
                Err(error) => warn!(%error, "failed to update the node status"),
            }
        }
    }
}

/// Everything pods need: IPAM serving strait-cni, the conflist, images, runc, cgroups.
fn pod_context(
    config: &ClusterConfig,
    client: &Client,
    pod_cidr: &str,
    reaper: strait_runtime::Reaper,
    policy: Arc<policy::Endpoints>,
) -> Result<Arc<pods::Context>, AgentError> {
    let state = &config.state_dir;
    std::fs::create_dir_all(state.join("pods"))
        .map_err(|e| setup(state.display().to_string())(e.to_string()))?;
    let cidr: strait_cni::ipam::PodCidr = pod_cidr
        .parse()
        .map_err(|e: strait_cni::ipam::IpamError| setup("IPAM")(e.to_string()))?;
    let ipam = strait_cni::ipam::Ipam::open(cidr, state.join("ipam.json"))
        .map_err(|e| setup("IPAM")(e.to_string()))?;
    let socket = state.join("ipam.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| setup(socket.display().to_string())(e.to_string()))?;
    std::thread::Builder::new()
        .name("ipam".into())
        .spawn(move || {
            if let Err(error) = strait_cni::ipam::serve(listener, Arc::new(Mutex::new(ipam))) {
                warn!(%error, "the IPAM server stopped");
            }
        })
        .map_err(|e| setup("the IPAM thread")(e.to_string()))?;
    let conflist_path = pods::sandbox::write_conflist(&state.join("cni"), &socket)
        .map_err(|e| setup("the CNI configuration")(e.to_string()))?;
    let conflist: serde_json::Value = std::fs::read(&conflist_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| setup("the CNI configuration")("unreadable conflist".to_owned()))?;

    let images = strait_image::ImageStore::open(&config.image_dir)
        .map_err(|e| setup("the image store")(e.to_string()))?;
    for path in &config.import_images {
        match images.import(path) {
            Ok(imported) => {
                for image in imported {
                    info!(image = %image.reference, "image imported");
                }
            }
            Err(error) => warn!(path = %path.display(), %error, "image import failed"),
        }
    }
    let cgroups =
        strait_runtime::Hierarchies::detect().map_err(|e| setup("cgroups")(e.to_string()))?;
    let cgroup2 =
        strait_host::mounts::cgroup2_mount().map_err(|e| setup("cgroups")(e.to_string()))?;
    let parent = config
        .cgroup
        .strip_prefix(&cgroup2)
        .map(|p| format!("/{}", p.display()))
        .map_err(|_| {
            setup("cgroups")(format!(
                "{} is not under the cgroup2 mount {}",
                config.cgroup.display(),
                cgroup2.display()
            ))
        })?;
    let runc = strait_runtime::Runc::new(&config.runc, state.join("runc"), reaper.clone());
    Ok(Arc::new(pods::Context {
        policy,
        client: client.clone(),
        node_name: config.node_name.clone(),
        node_ip: config.node_ip.to_string(),
        pods_dir: state.join("pods"),
        reaper,
        runc: Arc::new(runc),
        images,
        cgroups,
        cgroup_parent: parent.trim_end_matches('/').to_owned(),
        cni_dir: config.cni_bin_dir.clone(),
        agent_binary: std::env::current_exe()
            .map_err(|e| setup("the agent's own path")(e.to_string()))?,
        conflist,
        cluster_dns: config.cluster_dns.clone(),
        cluster_domain: config.cluster_domain.clone(),
        host_resolv: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }))
}

/// Runs `ip ARGS…` (through the reaper, which owns every child) and returns its stdout, or
/// its stderr as the error.
/// The node's own IPv4 addresses (the source of its probes and other traffic to its pods),
/// loopback aside.
fn host_addresses(reaper: &strait_runtime::Reaper, node_ip: IpAddr) -> Vec<std::net::Ipv4Addr> {
    let mut found: Vec<std::net::Ipv4Addr> = run_ip(reaper, &["-4", "-o", "addr", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let cidr = line
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?;
            cidr.split('/').next()?.parse().ok()
        })
        .filter(|ip: &std::net::Ipv4Addr| !ip.is_loopback())
        .collect();
    if let IpAddr::V4(ip) = node_ip
        && !found.contains(&ip)
    {
        found.push(ip);
    }
    found
}

fn run_ip(reaper: &strait_runtime::Reaper, args: &[&str]) -> Result<String, String> {
    let output = reaper
        .output(std::process::Command::new("ip").args(args))
        .map_err(|e| format!("failed to run ip: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
