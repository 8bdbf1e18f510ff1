//! `cargo xtask bench pods`: pod startup latency on real agents, and the agents' cost.
//!
//! A two-node cluster (`strait_tests::Cluster`): 100 pods (busybox httpd, image already
//! imported; `--readiness-probe` adds an httpGet probe every second), each behind its own ClusterIP
//! Service, alternating between the nodes: first one at a time (each created once the previous
//! one answers: the latency of one pod on an idle cluster), then 100 created at once (the
//! latency under a burst, on 2 cores). For every pod it reports:
//! - create → Ready (the API's Ready condition, seen through a watch);
//! - create → reachable through its Service from a client on the other node (socket-level
//!   translation), counting the EndpointSlice write: the benchmark writes each pod's slice the
//!   moment the pod is Ready (the Services have no selector, so the controller in
//!   strait-control stays out of the figures).
//!
//! It also reports the agent's proportional memory (PSS) and CPU at rest and with the pods running, and
//! the log shims' memory. Figures only: nothing here passes or fails on time. `--quick` uses
//! 20 pods.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::watcher,
};
use serde_json::json;
use strait_tests::{Cluster, cluster::Binaries};

const IMAGE: &str = "strait.test/busybox:1";

/// A client on the other node: reads `id ip port` lines, connects until an HTTP answer comes
/// back, and prints `id <unix seconds>` (threads, so 100 services are probed at once).
const PROBER: &str = r#"
import socket, sys, threading, time
out = threading.Lock()
def probe(id, ip, port):
    while True:
        try:
            s = socket.create_connection((ip, int(port)), timeout=1)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if s.recv(16).startswith(b"HTTP/1."):
                at = time.time()
                with out:
                    sys.stdout.write(f"{id} {at}\n")
                    sys.stdout.flush()
                return
        except OSError:
            pass
        time.sleep(0.005)
for line in sys.stdin:
    id, ip, port = line.split()
    threading.Thread(target=probe, args=(id, ip, port)).start()
"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Proportional set size (MiB: private pages plus a share of shared ones, so the binary's
/// text mapped by many processes counts once in all) and CPU time (s) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let rss_kib: f64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (rss_kib / 1024.0, ticks / 100.0)
}

/// Average CPU (% of one core) and PSS of the agents over `window`.
fn measure(pids: &[u32], window: Duration) -> (f64, f64) {
    let before: Vec<f64> = pids.iter().map(|p| usage(*p).1).collect();
    std::thread::sleep(window);
    let after: Vec<(f64, f64)> = pids.iter().map(|p| usage(*p)).collect();
    let cpu: f64 = after
        .iter()
        .zip(&before)
        .map(|((_, a), b)| a - b)
        .sum::<f64>()
        / window.as_secs_f64()
        / pids.len() as f64
        * 100.0;
    let rss = after.iter().map(|(r, _)| r).sum::<f64>() / pids.len() as f64;
    (cpu, rss)
}

/// The log shims of a node's containers: their count and total proportional memory (PSS).
fn shims(state_dir: &Path) -> (usize, f64) {
    let mut count = 0;
    let mut rss = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline);
        if text.contains("log-shim") && text.contains(&*state_dir.to_string_lossy()) {
            count += 1;
            rss += usage(pid).0;
        }
    }
    (count, rss)
}

fn main() -> anyhow::Result<()> {
    strait_tests::clean_up_on_signal()?;
    let quick = std::env::args().any(|a| a == "--quick");
    let pods = if quick { 20 } else { 100 };
    // With an httpGet readiness probe every second, Ready waits for the probe after the one
    // that ran before the server listened: about one period. Without one (the default, as
    // the Kubernetes pod-startup SLO measures), Ready follows the container's start.
    let readiness_probe = std::env::args().any(|a| a == "--readiness-probe");
    let images = tempfile::tempdir()?;
    let archive = strait_tests::image::busybox_archive(images.path(), IMAGE, &[]);
    let bins = Binaries::beside(Path::new(env!("CARGO_BIN_EXE_strait-agent")));
    let import = format!("--import-image={}", archive.display());
    let started = Instant::now();
    let cluster = Cluster::start(&bins, 2, &[&import]);
    println!(
        "pod startup: cluster of 2 nodes Ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let agents: Vec<u32> = cluster.nodes.iter().filter_map(|n| n.agent_pid()).collect();
    let (rest_cpu, rest_rss) = measure(&agents, Duration::from_secs(10));

    // The prober runs on node-0, inside its cgroup (socket-level translation applies there).
    let client = &cluster.nodes[0];
    let mut prober = client
        .netns
        .command_in_cgroup(client.cgroup.path(), &["python3", "-c", PROBER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let prober_in = prober.stdin.take().expect("piped");
    let reached: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
    {
        let reached = Arc::clone(&reached);
        let out = prober.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((id, at)) = line.split_once(' ')
                    && let Ok(at) = at.parse::<f64>()
                {
                    reached.lock().expect("lock").insert(id.to_owned(), at);
                }
            }
        });
    }

    let kubeconfig = cluster.control.kubeconfig();
    let seen = Arc::clone(&reached);
    let (one_by_one, at_once) = cluster.control.netns().run(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async move {
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
                &KubeConfigOptions::default(),
            )
            .await
            .expect("client config");
            let client = Client::try_from(config).expect("client");
            let mut wave = Wave {
                pods: Api::namespaced(client.clone(), "default"),
                services: Api::namespaced(client.clone(), "default"),
                slices: Api::namespaced(client, "default"),
                prober: prober_in,
                reached: seen,
                running: BTreeMap::new(),
                readiness_probe,
            };
            // One at a time first (each pod alone on an idle cluster), then all at once.
            let sequential: Vec<String> = (0..pods).map(|i| format!("a{i}")).collect();
            let burst: Vec<String> = (0..pods).map(|i| format!("b{i}")).collect();
            let one_by_one = wave.run(&sequential, true).await;
            let at_once = wave.run(&burst, false).await;
            (one_by_one, at_once)
        })
    });
    let (busy_cpu, busy_rss) = measure(&agents, Duration::from_secs(10));
    let (shim_count, shim_rss) = cluster
        .nodes
        .iter()
        .map(|n| shims(&n.state_dir))
        .fold((0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let _ = prober.kill();
    let _ = prober.wait();

    let reached = reached.lock().expect("lock").clone();
    for (title, (created, running, ready)) in [
        (
            format!("{pods} pods one at a time (each created once the previous one answered)"),
            one_by_one,
        ),
        (
            format!("{pods} pods created at once, half on each node"),
            at_once,
        ),
    ] {
        let mut to_running: Vec<f64> = created
            .iter()
            .filter_map(|(n, c)| running.get(n).map(|r| (r - c) * 1000.0))
            .collect();
        to_running.sort_by(f64::total_cmp);
        let mut to_ready: Vec<f64> = created
            .iter()
            .filter_map(|(n, c)| ready.get(n).map(|r| (r - c) * 1000.0))
            .collect();
        let mut to_service: Vec<f64> = created
            .iter()
            .filter_map(|(n, c)| reached.get(n).map(|r| (r - c) * 1000.0))
            .collect();
        to_ready.sort_by(f64::total_cmp);
        to_service.sort_by(f64::total_cmp);
        println!("pod startup: {title} (image present)");
        println!(
            "  create → container running:           p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {pods})",
            percentile(&to_running, 50.0),
            percentile(&to_running, 99.0),
            to_running.last().copied().unwrap_or(f64::NAN),
            to_running.len()
        );
        println!(
            "  create → Ready:                       p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {pods})",
            percentile(&to_ready, 50.0),
            percentile(&to_ready, 99.0),
            to_ready.last().copied().unwrap_or(f64::NAN),
            to_ready.len()
        );
        println!(
            "  create → answers through its Service: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {pods})",
            percentile(&to_service, 50.0),
            percentile(&to_service, 99.0),
            to_service.last().copied().unwrap_or(f64::NAN),
            to_service.len()
        );
    }
    println!(
        "  agent at rest:        {rest_rss:.1} MiB PSS, {rest_cpu:.2} % of a core (mean of 2 agents, 10 s)"
    );
    println!(
        "  agent with {pods} pods per node: {busy_rss:.1} MiB PSS, {busy_cpu:.2} % of a core (mean of 2 agents, 10 s)"
    );
    println!("  log shims: {shim_count}, {shim_rss:.1} MiB PSS in all");
    Ok(())
}

/// One wave of pods, each behind its own Service, timed from create to Ready and to an
/// answer through the Service.
struct Wave {
    pods: Api<Pod>,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    prober: std::process::ChildStdin,
    reached: Arc<Mutex<BTreeMap<String, f64>>>,
    running: BTreeMap<String, f64>,
    readiness_probe: bool,
}

/// When each pod was created, when its container was running, and when it was Ready.
type Times = (
    BTreeMap<String, f64>,
    BTreeMap<String, f64>,
    BTreeMap<String, f64>,
);

impl Wave {
    async fn run(&mut self, names: &[String], one_at_a_time: bool) -> Times {
        // Services first (their ClusterIPs), so only pod startup is timed.
        let mut vips = BTreeMap::new();
        for name in names {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("s-{name}")},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
            }))
            .expect("a service");
            let svc = self
                .services
                .create(&PostParams::default(), &svc)
                .await
                .expect("create a service");
            vips.insert(
                name.clone(),
                svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default(),
            );
        }
        let mut watch = watcher(self.pods.clone(), watcher::Config::default()).boxed();
        let mut created = BTreeMap::new();
        let mut ready = BTreeMap::new();
        self.running.clear();
        if one_at_a_time {
            for (i, name) in names.iter().enumerate() {
                created.insert(name.clone(), now());
                self.create(name, i).await;
                let count = ready.len() + 1;
                self.until_ready(&mut watch, &mut ready, &vips, count).await;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !self.reached.lock().expect("lock").contains_key(name)
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        } else {
            for (i, name) in names.iter().enumerate() {
                created.insert(name.clone(), now());
                self.create(name, i).await;
            }
            self.until_ready(&mut watch, &mut ready, &vips, names.len())
                .await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while names
                .iter()
                .any(|n| !self.reached.lock().expect("lock").contains_key(n))
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        (created, std::mem::take(&mut self.running), ready)
    }

    async fn create(&self, name: &str, i: usize) {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": format!("node-{}", i % 2), "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]}]},
        }))
        .expect("a pod");
        if self.readiness_probe {
            pod.spec.as_mut().expect("a spec").containers[0].readiness_probe =
                serde_json::from_value(
                    json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}),
                )
                .ok();
        }
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .expect("create a pod");
    }

    /// Follows the watch until `count` pods of this wave are Ready; writes each one's
    /// EndpointSlice the moment it is (the EndpointSlice controller's job) and hands its
    /// Service to the prober.
    async fn until_ready(
        &mut self,
        watch: &mut (impl futures::Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Unpin),
        ready: &mut BTreeMap<String, f64>,
        vips: &BTreeMap<String, String>,
        count: usize,
    ) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while ready.len() < count && Instant::now() < deadline {
            let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), watch.try_next())
                .await
                .map(|r| r.ok().flatten())
            else {
                continue;
            };
            let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let is_ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let Some(vip) = vips.get(&name) else { continue };
            let started = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                });
            if started && !self.running.contains_key(&name) {
                self.running.insert(name.clone(), now());
            }
            if !is_ready || ready.contains_key(&name) {
                continue;
            }
            ready.insert(name.clone(), now());
            let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
            let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
            let slice: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"name": format!("s-{name}"),
                             "labels": {"kubernetes.io/service-name": format!("s-{name}")}},
                "addressType": "IPv4",
                "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": true}, "nodeName": node}],
            }))
            .expect("a slice");
            self.slices
                .create(&PostParams::default(), &slice)
                .await
                .expect("create a slice");
            let _ = writeln!(self.prober, "{name} {vip} 80");
            let _ = self.prober.flush();
        }
    }
}
