//! `cargo xtask bench api`: the API server's figures, on the embedded store and on etcd.
//!
//! - Mutating calls: 16 concurrent kube-rs clients, each creating, updating and deleting
//!   ConfigMaps in turn; latency per call (p50/p90/p99) and calls per second.
//! - Watch delivery: 100 watchers on one namespace while a writer updates an object; the
//!   delay from the write's acknowledgement being sent to each watcher receiving it.
//! - Memory: the control process's resident set holding 100,000 ConfigMaps (and etcd's, on
//!   etcd).
//!
//! Everything runs inside one network namespace (clients too, as MACHINE.md asks). Figures
//! only: nothing here passes or fails on time. `--quick` uses 10,000 objects instead.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::watcher,
};
use strait_tests::{ControlPlane, Etcd, Netns};
use tokio::sync::Barrier;

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

const CLIENTS: usize = 16;
const CALLS_PER_CLIENT: usize = 150;
const WATCHERS: usize = 100;
const WATCH_WRITES: usize = 200;

struct Figures {
    engine: &'static str,
    mutating: Vec<f64>,
    mutating_rate: f64,
    delivery: Vec<f64>,
    objects: usize,
    load_seconds: f64,
    control_rss_mb: f64,
    /// After one client listed all of them (the allocator keeps what the list used).
    control_rss_listed_mb: f64,
    etcd_rss_mb: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    strait_tests::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; only our own flags matter.
    let quick = args.iter().any(|a| a == "--quick");
    let objects = if quick { 10_000 } else { 100_000 };
    let report_dir = args
        .iter()
        .position(|a| a == "--report-dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../report"),
            Into::into,
        );
    let mut rows = Vec::new();
    for engine in ["embedded (redb)", "etcd 3.4"] {
        eprintln!("bench api: {engine}");
        let netns = Arc::new(Netns::new("stb"));
        let etcd = engine.starts_with("etcd").then(|| Etcd::start(&netns));
        let extra: Vec<&str> = if etcd.is_some() {
            vec!["--store", "etcd", "--etcd-endpoints", Etcd::URL]
        } else {
            vec![]
        };
        let plane = ControlPlane::start_in(Path::new(BIN), Arc::clone(&netns), 6443, &extra);
        let kubeconfig = plane.kubeconfig();
        let pid = plane.pid().expect("running");
        let etcd_pid = etcd.as_ref().map(Etcd::pid);
        let figures = netns.run(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(measure(engine, &kubeconfig, objects, pid, etcd_pid))
        })?;
        rows.push(figures);
    }
    let report = render(&rows);
    std::fs::create_dir_all(&report_dir)?;
    std::fs::write(report_dir.join("api.md"), &report)?;
    print!("{report}");
    Ok(())
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some([("v".to_owned(), value.to_owned())].into()),
        ..ConfigMap::default()
    }
}

async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

async fn measure(
    engine: &'static str,
    kubeconfig: &Path,
    objects: usize,
    pid: u32,
    etcd_pid: Option<u32>,
) -> anyhow::Result<Figures> {
    let admin = client(kubeconfig).await?;
    for ns in ["mutate", "watch", "mass"] {
        namespace(&admin, ns).await?;
    }

    // Mutating calls: each client has its own connection, as separate controllers would.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = client(kubeconfig).await?;
        tasks.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "mutate");
            let mut latencies = Vec::with_capacity(CALLS_PER_CLIENT);
            for i in 0..CALLS_PER_CLIENT / 3 {
                let name = format!("c{c}-{i}");
                let t = Instant::now();
                let mut cm = api
                    .create(&PostParams::default(), &configmap(&name, "1"))
                    .await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                cm.data = Some([("v".to_owned(), "2".to_owned())].into());
                let t = Instant::now();
                api.replace(&name, &PostParams::default(), &cm).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                api.delete(&name, &DeleteParams::default()).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut mutating = Vec::new();
    for task in tasks {
        mutating.extend(task.await??);
    }
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let mutating_rate = mutating.len() as f64 / start.elapsed().as_secs_f64();

    // Watch delivery: every watcher records, per event, now minus the time the writer put
    // in the object just before sending it.
    let barrier = Arc::new(Barrier::new(WATCHERS + 1));
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "watch");
        let barrier = Arc::clone(&barrier);
        watchers.push(tokio::spawn(async move {
            let mut delays = Vec::new();
            let stream = watcher(api, watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            let mut ready = false;
            while let Some(event) = stream.try_next().await? {
                match event {
                    watcher::Event::InitDone if !ready => {
                        ready = true;
                        barrier.wait().await;
                    }
                    watcher::Event::Apply(cm) => {
                        let sent: f64 = cm
                            .data
                            .as_ref()
                            .and_then(|d| d.get("v"))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0.0);
                        delays.push(unix_ms() - sent);
                        if cm.metadata.name.as_deref() == Some("last") {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            anyhow::Ok(delays)
        }));
    }
    barrier.wait().await;
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "watch");
    for i in 0..WATCH_WRITES {
        let name = if i + 1 == WATCH_WRITES {
            "last".to_owned()
        } else {
            format!("w{}", i % 10)
        };
        let _ = api.delete(&name, &DeleteParams::default()).await;
        api.create(
            &PostParams::default(),
            &configmap(&name, &format!("{:.3}", unix_ms())),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut delivery = Vec::new();
    for watcher in watchers {
        delivery.extend(tokio::time::timeout(Duration::from_secs(60), watcher).await???);
    }

    // Memory holding many objects, loaded by the 16 clients.
    let start = Instant::now();
    let per_client = objects.div_ceil(CLIENTS);
    let mut loaders = Vec::new();
    for c in 0..CLIENTS {
        let client = client(kubeconfig).await?;
        loaders.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "mass");
            for i in 0..per_client {
                api.create(
                    &PostParams::default(),
                    &configmap(&format!("m{c}-{i}"), "some configuration value"),
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for loader in loaders {
        loader.await??;
    }
    let load_seconds = start.elapsed().as_secs_f64();
    let control_rss_mb = rss_mb(pid);
    let listed = Api::<ConfigMap>::namespaced(admin.clone(), "mass")
        .list(&Default::default())
        .await?
        .items
        .len();
    Ok(Figures {
        engine,
        mutating,
        mutating_rate,
        delivery,
        objects: listed,
        load_seconds,
        control_rss_mb,
        control_rss_listed_mb: rss_mb(pid),
        etcd_rss_mb: etcd_pid.map(rss_mb),
    })
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a sorted sample"
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn render(rows: &[Figures]) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut out = format!(
        "# cargo xtask bench api\n\n{cores} cores, kernel {}. Mutating: {CLIENTS} concurrent kube-rs clients, {} calls each (create, update, delete in turn), ms. Watch delivery: {WATCHERS} watchers, {WATCH_WRITES} writes, ms from the write being sent to each watcher having it. Memory: resident set after loading the objects with {CLIENTS} clients.\n\n",
        kernel.trim(),
        CALLS_PER_CLIENT / 3 * 3
    );
    out.push_str("| store | mutating p50 | p90 | p99 | calls/s | watch delivery p50 | p99 | objects | load time | strait-control RSS | after a full list | etcd RSS |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {} | {:.0} s | {:.0} MB | {:.0} MB | {} |\n",
            r.engine,
            percentile(&r.mutating, 0.5),
            percentile(&r.mutating, 0.9),
            percentile(&r.mutating, 0.99),
            r.mutating_rate,
            percentile(&r.delivery, 0.5),
            percentile(&r.delivery, 0.99),
            r.objects,
            r.load_seconds,
            r.control_rss_mb,
            r.control_rss_listed_mb,
            r.etcd_rss_mb.map_or("–".to_owned(), |m| format!("{m:.0} MB")),
        ));
    }
    out
}
