//! `cargo xtask bench scheduling`: the scheduler's throughput and latency in a real
//! `strait-control`, with simulated kubelets (`strait_tests::sim`) that make bound pods
//! Running, so the whole path (API, scheduler, binding, kubelet status) is exercised.
//!
//! - 100 simulated nodes in 4 zones; 5,000 plain pods with requests (four label sets),
//!   created by 8 concurrent clients. Figures: pods bound per second (first creation to last
//!   binding, as a pod watch sees them), creation-to-binding latency p50/p99, and the time
//!   until every pod is Running.
//! - A 1,000-replica ReplicaSet: the time until it reports every replica available
//!   (ReplicaSet controller, scheduler and simulated kubelets together).
//!
//! `--quick` uses 1,000 pods and 200 replicas; `--pods N` (or `STRAIT_BENCH_PODS=N`) sets
//! the pod count, the ReplicaSet being a fifth of it. Figures only: nothing fails on time.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::TryStreamExt as _;
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Namespace, Pod},
};
use kube::{Api, Client, ResourceExt as _, api::PostParams, runtime::watcher};
use serde_json::json;
use strait_tests::{
    ControlPlane,
    sim::{self, SimKubelet, SimNode},
};
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

const NODES: usize = 100;
const ZONES: usize = 4;
const CREATORS: usize = 8;
/// Give up waiting after this long (a broken scheduler must not hang the bench).
const PATIENCE: Duration = Duration::from_secs(600);

struct Figures {
    pods: usize,
    bound: usize,
    running: usize,
    bind_rate: f64,
    to_bind_ms: Vec<f64>,
    all_running_s: f64,
    replicas: usize,
    available_s: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    strait_tests::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; only our own flags matter.
    let quick = args.iter().any(|a| a == "--quick");
    let asked = args
        .iter()
        .position(|a| a == "--pods")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("STRAIT_BENCH_PODS").ok())
        .and_then(|n| n.parse::<usize>().ok());
    let pods = asked.unwrap_or(if quick { 1_000 } else { 5_000 });
    let replicas = (pods / 5).max(1);
    let report_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../report");

    eprintln!(
        "bench scheduling: {pods} pods over {NODES} simulated nodes, then {replicas} replicas"
    );
    let plane = ControlPlane::start(Path::new(BIN), &[]);
    let figures = {
        let kubeconfig = plane.kubeconfig();
        let (tx, rx) = std::sync::mpsc::channel();
        sim::block_on(&plane, move |client| async move {
            let _ = tx.send(measure(client, &kubeconfig, pods, replicas).await);
        });
        rx.recv()??
    };
    let report = render(&figures);
    std::fs::create_dir_all(&report_dir)?;
    std::fs::write(report_dir.join("scheduling.md"), &report)?;
    print!("{report}");
    Ok(())
}

async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// When each pod was first seen bound and Running.
#[derive(Default)]
struct Seen {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

/// Watches namespace `bench` until `pods` pods are Running (or patience runs out); tells
/// `ready` once the watch is established.
async fn watch(client: Client, pods: usize, ready: oneshot::Sender<()>) -> anyhow::Result<Seen> {
    let api: Api<Pod> = Api::namespaced(client, "bench");
    let mut seen = Seen::default();
    let mut ready = Some(ready);
    let stream = watcher(api, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = match tokio::time::timeout_at(deadline, stream.try_next()).await {
            Ok(event) => event?,
            Err(_) => break,
        };
        let pod = match event {
            Some(watcher::Event::InitDone) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                continue;
            }
            Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Some(_) => continue,
            None => break,
        };
        let now = Instant::now();
        let name = pod.name_any();
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some()
        {
            seen.bound.entry(name.clone()).or_insert(now);
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            seen.running.entry(name).or_insert(now);
        }
        if seen.running.len() >= pods {
            break;
        }
    }
    Ok(seen)
}

async fn measure(
    client: Client,
    kubeconfig: &Path,
    pods: usize,
    replicas: usize,
) -> anyhow::Result<Figures> {
    let nodes: Vec<SimNode> = (0..NODES)
        .map(|i| SimNode::new(&format!("sim-{i:03}")).zone(&format!("zone-{}", i % ZONES)))
        .collect();
    let _kubelet = SimKubelet::start(client.clone(), nodes).await;
    namespace(&client, "bench").await?;
    namespace(&client, "bench-rs").await?;

    let (ready_tx, ready_rx) = oneshot::channel();
    let watching = tokio::spawn(watch(client.clone(), pods, ready_tx));
    ready_rx.await?;

    // Each creator notes when it sent each pod.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let mut creators = Vec::new();
    for c in 0..CREATORS {
        let client = sim::client(kubeconfig).await;
        let created = Arc::clone(&created);
        creators.push(tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "bench");
            for i in (c..pods).step_by(CREATORS) {
                let name = format!("p-{i:05}");
                let pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": format!("bench-{}", i % 4)}},
                    "spec": {"containers": [{"name": "c", "image": "busybox",
                             "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]},
                }))?;
                created
                    .lock()
                    .expect("the creation times")
                    .insert(name, Instant::now());
                api.create(&PostParams::default(), &pod).await?;
            }
            anyhow::Ok(())
        }));
    }
    for creator in creators {
        creator.await??;
    }
    eprintln!(
        "bench scheduling: {pods} pods created in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let seen = watching.await??;
    let created = created.lock().expect("the creation times").clone();
    let to_bind_ms: Vec<f64> = seen
        .bound
        .iter()
        .filter_map(|(name, at)| Some(at.duration_since(*created.get(name)?).as_secs_f64() * 1e3))
        .collect();
    let last_bound = seen.bound.values().max().copied().unwrap_or(start);
    let last_running = seen.running.values().max().copied().unwrap_or(start);
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let bind_rate = seen.bound.len() as f64 / last_bound.duration_since(start).as_secs_f64();

    // A ReplicaSet: controller, scheduler and kubelets together.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "bench-rs");
    let rs = serde_json::from_value(json!({
        "metadata": {"name": "wide"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "wide"}},
                 "template": {"metadata": {"labels": {"app": "wide"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox",
                                       "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
    }))?;
    let rs_start = Instant::now();
    sets.create(&PostParams::default(), &rs).await?;
    let mut available_s = None;
    while rs_start.elapsed() < PATIENCE {
        let rs = sets.get("wide").await?;
        let available = rs
            .status
            .and_then(|s| s.available_replicas)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        if available >= replicas {
            available_s = Some(rs_start.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Figures {
        pods,
        bound: seen.bound.len(),
        running: seen.running.len(),
        bind_rate,
        to_bind_ms,
        all_running_s: last_running.duration_since(start).as_secs_f64(),
        replicas,
        available_s,
    })
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

fn render(f: &Figures) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut out = format!(
        "# cargo xtask bench scheduling\n\n{cores} cores, kernel {}. {NODES} simulated nodes in {ZONES} zones \
         (simulated kubelets make bound pods Running); {} plain pods with requests created by {CREATORS} \
         concurrent clients; kube-scheduler manages about 100–300 pods/s.\n\n",
        kernel.trim(),
        f.pods
    );
    out.push_str("| pods | bound | running | pods bound/s | creation→binding p50 | p99 | all Running after |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    out.push_str(&format!(
        "| {} | {} | {} | {:.0} | {:.0} ms | {:.0} ms | {:.1} s |\n\n",
        f.pods,
        f.bound,
        f.running,
        f.bind_rate,
        percentile(&f.to_bind_ms, 0.5),
        percentile(&f.to_bind_ms, 0.99),
        f.all_running_s
    ));
    out.push_str(&format!(
        "ReplicaSet of {} replicas fully available after: {}\n",
        f.replicas,
        f.available_s.map_or_else(
            || format!("not within {} s", PATIENCE.as_secs()),
            |s| format!("{s:.1} s")
        )
    ));
    out
}
