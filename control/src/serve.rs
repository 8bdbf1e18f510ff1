//! The process: store, PKI, bootstrap, background tasks, and the HTTPS accept loop.

use std::{net::IpAddr, sync::Arc};

use anyhow::Context as _;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strait_store::Store;
use tokio::net::TcpListener;

use crate::{
    Config, StoreKind,
    alloc::Ranges,
    auth::AllowAuthenticated,
    bootstrap,
    http::{self, Server},
    objects::Objects,
    pki::Pki,
};

/// Run until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "failed to create data directory {}",
            config.data_dir.display()
        )
    })?;
    let ranges = Ranges::parse(&config.service_cidr, &config.node_port_range)
        .and_then(|r| r.with_cluster_cidr(&config.cluster_cidr, config.node_cidr_mask_size))
        .map_err(anyhow::Error::msg)?;
    let store: Arc<dyn Store> = match config.store {
        StoreKind::Redb => {
            let path = config.data_dir.join("store.redb");
            Arc::new(
                strait_store::RedbStore::open(&path)
                    .with_context(|| format!("failed to open the store {}", path.display()))?,
            )
        }
        StoreKind::Etcd => Arc::new(
            strait_store::EtcdStore::connect(&config.etcd_endpoints, &config.etcd_prefix)
                .await
                .with_context(|| {
                    format!(
                        "failed to connect to etcd at {}",
                        config.etcd_endpoints.join(",")
                    )
                })?,
        ),
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    let advertise = config.advertise_address.unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            local.ip()
        }
    });
    let url = match advertise {
        IpAddr::V4(ip) => format!("https://{ip}:{}", local.port()),
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", local.port()),
    };
    let mut names: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push(ranges.first_ip().to_string());
    names.push(advertise.to_string());
    names.extend(config.tls_san.iter().cloned());
    names.sort();
    names.dedup();
    let pki = Arc::new(Pki::load_or_create(&config.data_dir, &names, &url)?);

    let objects = Arc::new(Objects::new(Arc::clone(&store), ranges.clone()));
    bootstrap::defaults(&objects, &ranges, advertise, local.port())
        .await
        .context("failed to create the default namespaces and the kubernetes Service")?;
    let (dropped, added) = bootstrap::repair_allocations(&objects).await?;
    if dropped + added > 0 {
        tracing::warn!(
            dropped,
            added,
            "repaired service address and port allocations"
        );
    }
    bootstrap::resume_namespace_finalizers(&objects).await?;
    tokio::spawn(compactor(Arc::clone(&store), config.compaction_interval));

    let tls = tls_config(&pki)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let server = Arc::new(Server {
        objects,
        pki: Arc::clone(&pki),
        authorizer: Box::new(AllowAuthenticated),
    });
    // Tests and `netctl cluster up` wait for this line.
    println!(
        "strait-control: serving {url} (kubeconfig {}, node join token in {})",
        pki.admin_kubeconfig().display(),
        pki.node_token_file().display()
    );

    let controllers = pki.dir.join("controller-manager.kubeconfig");
    let options = crate::controllers::Options {
        node_monitor_grace_period: config.node_monitor_grace_period,
        terminated_pod_gc_threshold: config.terminated_pod_gc_threshold,
        load_balancer_pool: config.load_balancer_pool.clone(),
        // Stable across restarts: a process restarted in place resumes its own Lease at
        // once instead of waiting out its earlier life's.
        identity: url.clone(),
    };
    tokio::spawn(async move {
        if let Err(error) = crate::controllers::run(&controllers, options).await {
            tracing::error!(%error, "the controllers stopped");
        }
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        let acceptor = acceptor.clone();
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let server = Arc::clone(&server);
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::handle(server, request.map(Body::new)).await,
                        )
                    }
                },
            );
            if let Err(error) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    tracing::info!("stopping");
    Ok(())
}

fn tls_config(pki: &Pki) -> anyhow::Result<rustls::ServerConfig> {
    strait_tls::server_config(
        &pki.server_cert_pem,
        &pki.server_key_pem,
        &[b"h2", b"http/1.1"],
    )
    .context("the serving certificate")
}

/// Every interval, forget history older than the revision seen one interval ago.
async fn compactor(store: Arc<dyn Store>, interval: std::time::Duration) {
    let mut previous = None;
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        if let Some(revision) = previous
            && let Err(error) = store.compact(revision).await
        {
            tracing::warn!(revision, %error, "compaction failed");
        }
        previous = store.current_revision().await.ok();
    }
}
