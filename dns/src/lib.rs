//! `strait-dns`: the cluster DNS. Answers the Kubernetes DNS-Based Service Discovery
//! specification for the cluster domain from watch caches of Services, EndpointSlices and
//! Pods, and forwards every other name to upstream resolvers through a cache.
//!
//! - [`names`]: what a query name means under the zone (pure).
//! - [`snapshot`]: the cluster reduced to what names need (pure).
//! - [`answer`]: snapshot + question → records and rcode (pure; most tests are here).
//! - [`state`]: watch caches → the current snapshot.
//! - [`forward`]: upstreams, deadline, cache.
//! - [`server`]: the hickory `RequestHandler` tying them together.
//! - [`packet`]: the UDP fast path's wire reading and cache of encoded responses (pure).
//! - `udp`: the UDP serving threads (batched receive and send, the packet cache, misses
//!   through hickory and the handler).
//! - [`register`]: this node's EndpointSlice behind `kube-system/kube-dns`.
//! - [`metrics`]: Prometheus text.

pub mod answer;
pub mod forward;
pub mod metrics;
pub mod names;
pub mod packet;
pub mod register;
pub mod server;
pub mod snapshot;
pub mod state;
mod udp;

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZero,
    path::PathBuf,
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use hickory_server::Server;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    net::{TcpListener, UdpSocket},
    runtime::Runtime,
    sync::watch,
};

use crate::{answer::Zone, forward::Forwarder, metrics::Metrics, server::Handler, state::Shared};

/// How long a TCP connection may sit idle between requests.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Everything the binary is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP address to answer on.
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// TTL of cluster records and of their negative answers.
    pub ttl: u32,
    /// Upstream resolvers; empty means those of `resolv_conf`.
    pub upstream: Vec<SocketAddr>,
    /// Where the host's resolvers are listed.
    pub resolv_conf: PathBuf,
    /// The deadline for one forwarded question, over every upstream.
    pub upstream_timeout: Duration,
    /// Kubeconfig; the in-cluster or default one when unset.
    pub kubeconfig: Option<PathBuf>,
    /// Address for `/metrics`.
    pub metrics: Option<SocketAddr>,
    /// With `advertise_address`: register behind `kube-system/kube-dns` as this node.
    pub node_name: Option<String>,
    pub advertise_address: Option<IpAddr>,
}

/// Why strait-dns could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("`{domain}` is not a valid cluster domain")]
    Zone {
        domain: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("failed to bind {proto} {address}")]
    Bind {
        proto: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to build an API client")]
    Client(#[source] kube::Error),
    #[error("advertise address {0} is a loopback address: pods cannot reach it")]
    LoopbackAdvertise(IpAddr),
    #[error("failed to start a UDP serving thread")]
    Thread(#[source] std::io::Error),
    #[error("failed to read {path} for upstream resolvers")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, DnsError> {
    let Some(path) = kubeconfig else {
        return Client::try_default().await.map_err(DnsError::Client);
    };
    let error = |source| DnsError::Kubeconfig {
        path: path.clone(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(error)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(error)?;
    Client::try_from(config).map_err(DnsError::Client)
}

/// The upstreams: configured ones, or the host's, never this server itself.
fn upstreams(config: &Config) -> Result<Vec<SocketAddr>, DnsError> {
    let listed = if config.upstream.is_empty() {
        let text = std::fs::read_to_string(&config.resolv_conf).map_err(|source| {
            DnsError::ResolvConf {
                path: config.resolv_conf.clone(),
                source,
            }
        })?;
        forward::parse_resolv_conf(&text)
    } else {
        config.upstream.clone()
    };
    Ok(listed.into_iter().filter(|u| *u != config.listen).collect())
}

/// Serves until `shutdown` completes; then, when registered, marks this node's endpoint
/// not ready before returning.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
    let zone = Zone::new(&config.cluster_domain, config.ttl).map_err(|source| DnsError::Zone {
        domain: config.cluster_domain.clone(),
        source,
    })?;
    if let Some(address) = config.advertise_address.filter(IpAddr::is_loopback) {
        return Err(DnsError::LoopbackAdvertise(address));
    }
    let metrics = Arc::new(Metrics::default());
    let upstreams = upstreams(&config)?;
    if upstreams.is_empty() {
        tracing::warn!("no upstream resolvers: names outside the cluster get SERVFAIL");
    }
    let client = client(config.kubeconfig.as_ref()).await?;
    let state = Shared::default();
    tokio::spawn(state::follow(client.clone(), state.clone()));
    let handler = Handler {
        zone,
        state: state.clone(),
        forwarder: Arc::new(Forwarder::new(
            upstreams.clone(),
            config.upstream_timeout,
            Arc::clone(&metrics),
        )),
        metrics: Arc::clone(&metrics),
    };
    let bind = |proto, source| DnsError::Bind {
        proto,
        address: config.listen,
        source,
    };
    let threads = std::thread::available_parallelism().map_or(1, NonZero::get);
    let sockets = reuse_port_sockets(config.listen, threads).map_err(|e| bind("UDP", e))?;
    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(|e| bind("TCP", e))?;
    let udp = UdpThreads::start(sockets, &handler)?;
    // TCP carries little (answers UDP truncated, clients that prefer it): it shares this
    // runtime with the watches, registration and metrics.
    let mut server = Server::new(handler);
    server.register_listener(tcp, TCP_IDLE, 64);
    if let Some(address) = config.metrics {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| DnsError::Bind {
                proto: "TCP",
                address,
                source,
            })?;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(error) = metrics::serve(listener, metrics).await {
                tracing::error!(%error, "the metrics server stopped");
            }
        });
    }
    tracing::info!(listen = %config.listen, ?upstreams, "serving");
    // Tests and scripts wait for this line.
    println!("strait-dns: serving on {}", config.listen);
    let registration = match (&config.node_name, config.advertise_address) {
        (Some(node), Some(address)) => Some((node.clone(), address)),
        _ => None,
    };
    let ports = register::Ports {
        dns: config.listen.port(),
        // Listed only where pods can reach it: on the advertised address or on every one.
        metrics: config
            .metrics
            .filter(|m| Some(m.ip()) == config.advertise_address || m.ip().is_unspecified())
            .map(|m| m.port()),
    };
    let registering = registration.clone().map(|(node, address)| {
        let (client, state) = (client.clone(), state.clone());
        tokio::spawn(async move { keep_registered(&client, &node, address, ports, &state).await })
    });
    shutdown.await;
    if let Some(task) = registering {
        // Stopped for sure before the last write, so a late "ready" cannot overtake it.
        task.abort();
        let _ = task.await;
    }
    if let Some((node, address)) = registration {
        // Not ready first, so clients move away before the process is gone.
        let unregister = register::register(&client, &node, address, ports, false);
        match tokio::time::timeout(Duration::from_secs(5), unregister).await {
            Ok(Ok(())) => tracing::info!(%node, "marked this node's kube-dns endpoint not ready"),
            Ok(Err(error)) => {
                tracing::warn!(error = %chain(&error), "failed to mark the endpoint not ready");
            }
            Err(_) => tracing::warn!("timed out marking the endpoint not ready"),
        }
    }
    if let Err(error) = server.shutdown_gracefully().await {
        tracing::warn!(%error, "shutting the DNS server down");
    }
    udp.stop().await;
    Ok(())
}

/// `count` UDP sockets bound to `listen` with SO_REUSEPORT, so the kernel spreads clients
/// over them by source address and port (unbound's `so-reuseport`). Only sockets of the
/// same user can join the group (socket(7)), and the TCP listener, bound without it, still
/// fails when another server holds the address. Port 0 binds the first socket to a free
/// port and the rest to the same one.
fn reuse_port_sockets(
    listen: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let mut address = listen;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        // tokio's sockets must be non-blocking.
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        let socket = std::net::UdpSocket::from(socket);
        address = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// One thread per UDP socket, each with a single-threaded runtime serving its socket
/// ([`udp::serve`]): a query is received, answered and its response sent on one thread, as
/// unbound's threads do, and each thread keeps its own packet cache, so the hot path shares
/// no lock and no cache line with another thread.
struct UdpThreads {
    /// Dropped to stop every thread.
    stop: watch::Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpThreads {
    /// On an error, the threads already started stop as `stop` is dropped.
    fn start(sockets: Vec<std::net::UdpSocket>, handler: &Handler) -> Result<Self, DnsError> {
        let (stop, _) = watch::channel(());
        let mut threads = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DnsError::Thread)?;
            let socket = {
                // Registered with the reactor of the runtime entered here.
                let _entered = runtime.enter();
                UdpSocket::from_std(socket).map_err(DnsError::Thread)?
            };
            let (handler, stopped) = (handler.clone(), stop.subscribe());
            let thread = std::thread::Builder::new()
                .name(format!("strait-dns-udp-{i}"))
                .spawn(move || serve_udp(&runtime, socket, handler, stopped))
                .map_err(DnsError::Thread)?;
            threads.push(thread);
        }
        Ok(Self { stop, threads })
    }

    /// Stops every thread and waits for the threads to end.
    async fn stop(self) {
        drop(self.stop);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }
}

fn serve_udp(runtime: &Runtime, socket: UdpSocket, handler: Handler, stopped: watch::Receiver<()>) {
    // Misses are local tasks: they share the thread's cache without a lock.
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(udp::serve(socket, handler, stopped)));
}

/// Registers as ready once the caches have listed (so the endpoint never answers from an
/// empty view), again as soon as this node's Node object appears or changes (a resolver that
/// starts before its node registers stands behind kube-dns the moment the node does, and a
/// Node deleted and made again gets its slice back with the new owner), and every 30 s (a
/// slice deleted by hand returns), retrying failures every 2 s.
async fn keep_registered(
    client: &Client,
    node: &str,
    address: IpAddr,
    ports: register::Ports,
    state: &Shared,
) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};

    while state.get().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes = Api::<Node>::all(client.clone());
    let selector = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut changes = std::pin::pin!(watcher(nodes, selector).default_backoff());
    let mut registered = false;
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            event = changes.next() => match event {
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::InitApply(_))) => {}
                // Listing markers, deletions (the garbage collector takes the slice) and
                // watch errors (retried with backoff by the stream) change nothing here.
                Some(_) => continue,
                None => {
                    // The stream never ends while retrying; if it does, the timer remains.
                    tokio::time::sleep_until(next).await;
                }
            },
        }
        let pause = match register::register(client, node, address, ports, true).await {
            Ok(()) => {
                if !registered {
                    tracing::info!(%node, %address, "registered behind kube-system/kube-dns");
                    registered = true;
                }
                Duration::from_secs(30)
            }
            Err(error) => {
                tracing::info!(error = %chain(&error), "registration failed; retrying");
                Duration::from_secs(2)
            }
        };
        next = tokio::time::Instant::now() + pause;
    }
}

/// An error with its sources, `: `-separated, for one log line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
