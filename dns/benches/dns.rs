//! `cargo xtask bench dns`: dnsperf against strait-dns (cluster names from its watch cache,
//! and external names from its forwarding cache) and against Debian's unbound serving the
//! same names as local-data, on the same machine in the same run. Prints queries per second
//! and latency, writes `report/dns.md`; never passes or fails on time.
//!
//! ```text
//!   namespace (lo only)
//!   ├── strait-control  127.0.0.1:6443   N Services in namespace `bench`
//!   ├── strait-dns      127.0.0.2:53     --upstream 127.0.0.3:53
//!   ├── unbound         127.0.0.3:53     local-data: the N cluster names + N external names
//!   └── dnsperf         → one of them
//! ```

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use strait_tests::{ControlPlane, Netns, dns::DnsServer};

const DNS: &str = env!("CARGO_BIN_EXE_strait-dns");

/// One dnsperf run's figures.
struct Run {
    qps: f64,
    avg_ms: f64,
    max_ms: f64,
    lost: String,
    /// Queries answered per CPU second the server used during the run.
    per_cpu: f64,
}

/// User and system CPU seconds `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / clock_ticks(),
        _ => f64::NAN,
    }
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Runs dnsperf from inside `ns` and reads its summary.
fn dnsperf(
    ns: &Netns,
    server: &str,
    file: &Path,
    seconds: u32,
) -> anyhow::Result<(f64, f64, f64, String)> {
    let out = ns.exec(&[
        "dnsperf",
        "-s",
        server,
        "-d",
        file.to_str().unwrap_or_default(),
        "-l",
        &seconds.to_string(),
        "-c",
        "4",
        "-T",
        "1",
        "-q",
        "100",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(str::trim)
            .map(str::to_owned)
    };
    let qps: f64 = field("Queries per second:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("dnsperf against {server} printed no rate:\n{text}"))?;
    // "Average Latency (s):  0.000123 (min 0.000012, max 0.001234)"
    let latency = field("Average Latency (s):").unwrap_or_default();
    let avg: f64 = latency
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let max: f64 = latency
        .split("max ")
        .nth(1)
        .and_then(|v| v.trim_end_matches(')').parse().ok())
        .unwrap_or(f64::NAN);
    let lost = field("Queries lost:").unwrap_or_default();
    Ok((qps, avg * 1e3, max * 1e3, lost))
}

/// The median of `values` and their range, `min–max`.
fn median(values: impl Iterator<Item = f64>) -> (f64, String) {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    let (Some(min), Some(max)) = (sorted.first(), sorted.last()) else {
        return (f64::NAN, String::new());
    };
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    (median, format!("{min:.0}–{max:.0}"))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

struct Unbound(Child);

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    strait_tests::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--rebuild-only") {
        // Only the pure part: no servers, no dnsperf.
        print!("{}", rebuild_figures(quick));
        return Ok(());
    }
    let (services, seconds, rounds) = if quick { (200, 5, 3) } else { (1000, 15, 5) };
    let report_dir = args
        .iter()
        .position(|a| a == "--report-dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../report"),
            PathBuf::from,
        );
    let control = Path::new(DNS).with_file_name("strait-control");
    anyhow::ensure!(
        control.exists(),
        "{} is missing: build every binary first (`cargo build --release --bins`)",
        control.display()
    );
    let plane = ControlPlane::start(&control, &[]);
    let ns = plane.netns();
    let work = tempfile::tempdir()?;

    eprintln!("bench dns: creating {services} Services");
    let mut items = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    ];
    items.extend((0..services).map(|i| {
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 80}]}})
    }));
    let manifest = work.path().join("services.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )?;
    plane.kubectl_ok(
        "1.33",
        &["apply", "-f", manifest.to_str().unwrap_or_default()],
    );
    let listed = plane.kubectl_ok(
        "1.33",
        &[
            "-n",
            "bench",
            "get",
            "svc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.clusterIP}{\"\\n\"}{end}",
        ],
    );
    let cluster: Vec<(String, String)> = listed
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, ip)| (format!("{n}.bench.svc.cluster.local"), ip.to_owned()))
        .collect();
    anyhow::ensure!(
        cluster.len() == services,
        "listed {} Services",
        cluster.len()
    );
    let external: Vec<(String, String)> = (0..services)
        .map(|i| {
            (
                format!("ext-{i}.example.test"),
                format!("192.0.2.{}", i % 250 + 1),
            )
        })
        .collect();

    // unbound: the same names as local-data, two threads (the machine's cores).
    let mut conf = String::from(
        "server:\n  interface: 127.0.0.3\n  port: 53\n  do-daemonize: no\n  chroot: \"\"\n  \
         username: \"\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  \
         num-threads: 2\n  access-control: 127.0.0.0/8 allow\n  \
         local-zone: \"cluster.local.\" static\n  local-zone: \"example.test.\" static\n",
    );
    for (name, ip) in &cluster {
        let _ = writeln!(conf, "  local-data: \"{name}. 5 IN A {ip}\"");
    }
    for (name, ip) in &external {
        let _ = writeln!(conf, "  local-data: \"{name}. 3600 IN A {ip}\"");
    }
    let conf_path = work.path().join("unbound.conf");
    std::fs::write(&conf_path, conf)?;
    let unbound = Unbound(
        ns.command(&[
            "unbound",
            "-d",
            "-c",
            conf_path.to_str().unwrap_or_default(),
        ])
        .stdout(Stdio::null())
        .spawn()?,
    );

    let dns = DnsServer::start(
        Path::new(DNS),
        ns,
        "127.0.0.2:53",
        &plane.kubeconfig(),
        &["--upstream", "127.0.0.3:53"],
    );
    // Wait until strait-dns holds every Service and unbound answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = &cluster[services - 1];
    loop {
        let a = dns.dig(ns, &["+short", &last.0]);
        let b = strait_tests::dns::dig(ns, "127.0.0.3:53", &["+short", &last.0]);
        if a.trim() == last.1 && b.trim() == last.1 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "servers not ready: {a:?} {b:?}\n{}",
            dns.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let write_queries = |file: &str, names: &[(String, String)]| -> anyhow::Result<PathBuf> {
        let path = work.path().join(file);
        let text: String = names.iter().map(|(n, _)| format!("{n} A\n")).collect();
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let cluster_file = write_queries("cluster.txt", &cluster)?;
    let external_file = write_queries("external.txt", &external)?;
    // Fill strait-dns's forwarding cache: one pass over the external names.
    let _ = dnsperf(ns, "127.0.0.2", &external_file, 2);

    let strait_pid = dns.pid().unwrap_or_default();
    let unbound_pid = unbound.0.id();
    let configs = [
        (
            "strait-dns",
            strait_pid,
            "127.0.0.2",
            "cluster (watch cache)",
            &cluster_file,
        ),
        (
            "strait-dns",
            strait_pid,
            "127.0.0.2",
            "external (forward cache)",
            &external_file,
        ),
        (
            "unbound",
            unbound_pid,
            "127.0.0.3",
            "cluster (local-data)",
            &cluster_file,
        ),
        (
            "unbound",
            unbound_pid,
            "127.0.0.3",
            "external (local-data)",
            &external_file,
        ),
    ];
    // Rounds interleave the servers, so a disturbance of the machine (another process, a
    // slow period of the VM) falls on both rather than on one.
    let mut runs: Vec<Vec<Run>> = configs.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for ((target, pid, server, names, file), runs) in configs.iter().zip(&mut runs) {
            eprintln!("bench dns: round {round}/{rounds}: {target}, {names}, {seconds} s");
            let before = cpu_seconds(*pid);
            let (qps, avg_ms, max_ms, lost) = dnsperf(ns, server, file, seconds)?;
            let cpu = cpu_seconds(*pid) - before;
            runs.push(Run {
                qps,
                avg_ms,
                max_ms,
                lost,
                per_cpu: qps * f64::from(seconds) / cpu,
            });
        }
    }
    let strait_rss = dns.pid().map_or(f64::NAN, rss_mib);
    let unbound_rss = rss_mib(unbound.0.id());

    let mut report = String::new();
    let _ = writeln!(report, "# Cluster DNS: strait-dns and unbound\n");
    let _ = writeln!(
        report,
        "{services} Services; dnsperf `-c 4 -T 1 -q 100 -l {seconds}` from the same namespace, \
         on the same 2-core machine as both servers (dnsperf shares the cores), {rounds} rounds \
         taking the servers in turn; medians, with the range over the rounds. unbound 1.17 \
         with `num-threads: 2`, every name as local-data; strait-dns (release) answering \
         cluster names from its watch cache and external names from its forwarding cache, \
         filled by one pass first. Queries per CPU second divide the queries answered by the \
         CPU time (user and system) the server used during its run: with dnsperf on the same \
         cores, it is the fairer comparison. Figures only: nothing passes or fails on them.\n"
    );
    let _ = writeln!(
        report,
        "| server | names | queries/s | queries per server CPU second | avg latency (ms) | max latency (ms) | lost |"
    );
    let _ = writeln!(report, "|---|---|---:|---:|---:|---:|---|");
    let mut medians = Vec::new();
    for ((target, _, _, names, _), runs) in configs.iter().zip(&runs) {
        let (qps, qps_range) = median(runs.iter().map(|r| r.qps));
        let (per_cpu, cpu_range) = median(runs.iter().map(|r| r.per_cpu));
        let (avg, _) = median(runs.iter().map(|r| r.avg_ms));
        let max = runs.iter().map(|r| r.max_ms).fold(0.0, f64::max);
        let lost: Vec<&str> = runs.iter().map(|r| r.lost.as_str()).collect();
        let _ = writeln!(
            report,
            "| {target} | {names} | {qps:.0} ({qps_range}) | {per_cpu:.0} ({cpu_range}) | {avg:.3} | {max:.3} | {} |",
            lost.join(", ")
        );
        medians.push((qps, per_cpu));
    }
    let _ = writeln!(
        report,
        "\nstrait-dns / unbound, medians: cluster names {:.2}× the rate ({:.2}× per CPU second), \
         external names {:.2}× ({:.2}× per CPU second).",
        medians[0].0 / medians[2].0,
        medians[0].1 / medians[2].1,
        medians[1].0 / medians[3].0,
        medians[1].1 / medians[3].1,
    );
    let _ = writeln!(
        report,
        "\nResident memory after the runs: strait-dns {strait_rss:.1} MiB, unbound {unbound_rss:.1} MiB."
    );
    drop(dns);
    drop(unbound);
    report.push_str(&rebuild_figures(quick));
    std::fs::create_dir_all(&report_dir)?;
    std::fs::write(report_dir.join("dns.md"), &report)?;
    print!("{report}");
    Ok(())
}

/// How long one rebuild of the names takes at cluster scale: a change is answered once the
/// snapshot holding it is built (`Snapshot::build`, pure, timed in this process).
fn rebuild_figures(quick: bool) -> String {
    use k8s_openapi::api::{core::v1::Pod, core::v1::Service, discovery::v1::EndpointSlice};
    use strait_dns::snapshot::Snapshot;

    let sizes: &[(usize, usize)] = if quick {
        &[(1_000, 10)]
    } else {
        &[(1_000, 10), (10_000, 15)]
    };
    let mut out = String::from(
        "\n## Rebuilding the names\n\nOne `Snapshot::build` over the watch caches' objects \
         (every Service with one EndpointSlice, every endpoint a Pod), as after each burst of \
         changes; median of 5 (min–max).\n\n\
         | Services | endpoints and Pods | rebuild (ms) |\n|---:|---:|---:|\n",
    );
    for &(count, per_service) in sizes {
        let ip = |i: usize| format!("10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256);
        let services: Vec<Service> = (0..count)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 100)},
                    "spec": {"clusterIP": format!("10.96.{}.{}", i / 256, i % 256),
                             "ports": [{"name": "http", "port": 80}]}}))
                .expect("a Service")
            })
            .collect();
        let slices: Vec<EndpointSlice> = (0..count)
            .map(|i| {
                let endpoints: Vec<serde_json::Value> = (0..per_service)
                    .map(|j| serde_json::json!({"addresses": [ip(i * per_service + j)],
                                                "conditions": {"ready": true}}))
                    .collect();
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("svc-{i}-x"), "namespace": format!("ns-{}", i % 100),
                                 "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
                .expect("an EndpointSlice")
            })
            .collect();
        let pods: Vec<Pod> = (0..count * per_service)
            .map(|k| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("pod-{k}"), "namespace": format!("ns-{}", (k / per_service) % 100)},
                    "status": {"podIP": ip(k), "podIPs": [{"ip": ip(k)}]}}))
                .expect("a Pod")
            })
            .collect();
        let mut times: Vec<f64> = (0..5)
            .map(|serial| {
                let started = Instant::now();
                let snapshot = Snapshot::build(&services, &slices, &pods, serial);
                let took = started.elapsed().as_secs_f64() * 1e3;
                assert_eq!(snapshot.services.len(), count, "every Service has a name");
                took
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "| {count} | {} | {:.0} ({:.0}–{:.0}) |",
            count * per_service,
            times[2],
            times[0],
            times[4]
        );
    }
    out
}
