//! `netctl bench services`: Strait against kube-proxy's iptables and nftables modes and the
//! direct connection, side by side, on one topology, in one run.
//!
//! ```text
//!   client netns ── veth ── router netns (the node) ── veth ── backend netns
//!   10.0.0.1       10.0.0.254 │ 10.1.0.254                    10.1.0.1–4 :8080
//!   (cgroup for            rules here: iptables nat,
//!    Strait's sockets)     nftables, or Strait's tc path on
//!                          the client-facing device
//! ```
//!
//! For every N and mode it measures: the time to program all N services, the time to apply one
//! endpoint change, and new-connection latency (connect + a small request + the response,
//! client closes) to services picked at random, the last-written one included. Every mode uses
//! the same client code; modes alternate within a round so none gets a warmer cache.

mod chart;
mod kube_proxy;

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use strait_agent::dataplane::{
    Dataplane, DataplaneConfig, Frontend, Protocol, ServiceOptions, ServiceSpec,
};
use strait_tests::{Cgroup, EchoServer, HttpServer, Netns, PinDir, VethPair};

use self::kube_proxy::BenchService;

/// How much to measure.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) sizes: Vec<usize>,
    pub(crate) connections: usize,
    pub(crate) warmup: usize,
    pub(crate) rounds: usize,
    /// Services per `nft -f` transaction above which the nftables table is loaded in
    /// transactions of this many services (see `kube_proxy::nft_scripts`).
    pub(crate) nft_transaction_max: usize,
    /// How long loading the nftables table may take before the row is given up.
    pub(crate) nft_budget: Duration,
    pub(crate) report_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Direct,
    StraitSocket,
    StraitTc,
    Iptables,
    Nftables,
}

impl Mode {
    const ALL: [Self; 5] = [
        Self::Direct,
        Self::StraitSocket,
        Self::StraitTc,
        Self::Iptables,
        Self::Nftables,
    ];

    /// The mode's colour in the charts.
    fn color(self) -> &'static str {
        match self {
            Self::Direct => "#555555",
            Self::StraitSocket => "#1f77b4",
            Self::StraitTc => "#17becf",
            Self::Iptables => "#d62728",
            Self::Nftables => "#ff7f0e",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct to pod IP (the limit)",
            Self::StraitSocket => "Strait, socket (connect4)",
            Self::StraitTc => "Strait, per-packet (tc)",
            Self::Iptables => "kube-proxy iptables",
            Self::Nftables => "kube-proxy nftables",
        }
    }
}

/// One row of the report.
struct Row {
    n: usize,
    mode: Mode,
    program: Option<Duration>,
    change: Option<Duration>,
    latency: Option<[Figure; 3]>,
    /// Request/response round trips per second on one established connection.
    rate: Option<Figure>,
    /// Busy CPU time of the whole machine per 1,000 connections, in ms.
    cpu: Option<Figure>,
    note: String,
}

/// A median with the min and max over rounds, in µs.
#[derive(Clone, Copy)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
}

impl Figure {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

const BACKENDS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 1, 0, 1),
    Ipv4Addr::new(10, 1, 0, 2),
    Ipv4Addr::new(10, 1, 0, 3),
    Ipv4Addr::new(10, 1, 0, 4),
];

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + u32::try_from(i).expect("small index"))
}

/// Service `i`: 2 to 4 endpoints among the backends, rotating.
fn service(i: usize) -> BenchService {
    let count = 2 + i % 3;
    BenchService {
        vip: SocketAddrV4::new(vip(i), 80),
        endpoints: (0..count)
            .map(|e| SocketAddrV4::new(BACKENDS[(i + e) % BACKENDS.len()], 8080))
            .collect(),
    }
}

fn spec(s: &BenchService) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: (*s.vip.ip()).into(),
            port: s.vip.port(),
            protocol: Protocol::Tcp,
        },
        backends: s.endpoints.iter().map(|e| (*e).into()).collect(),
        options: ServiceOptions::default(),
    }
}

struct Topology {
    client: Netns,
    router: Netns,
    _backend: Netns,
    _links: [VethPair; 2],
    _servers: Vec<HttpServer>,
    _echo: EchoServer,
    uplink: String,
    cgroup: Cgroup,
}

impl Topology {
    fn new() -> Self {
        let client = Netns::new("bnc");
        let router = Netns::new("bnr");
        let backend = Netns::new("bnb");
        let up = VethPair::new(&client, "10.0.0.1/24", &router, "10.0.0.254/24");
        let down = VethPair::new(&router, "10.1.0.254/24", &backend, "10.1.0.1/24");
        for extra in &BACKENDS[1..] {
            backend.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{extra}/24"),
                "dev",
                &down.b.ifname,
            ]);
        }
        router.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        client.route(&["default", "via", "10.0.0.254"]);
        backend.route(&["default", "via", "10.1.0.254"]);
        let servers = BACKENDS
            .iter()
            .map(|b| {
                HttpServer::start_client_closes(&backend, SocketAddr::from((*b, 8080)), "ok\n")
            })
            .collect();
        let echo = EchoServer::start(&backend, SocketAddr::from((BACKENDS[0], 9090)));
        let uplink = up.b.ifname.clone();
        Self {
            client,
            router,
            _backend: backend,
            _links: [up, down],
            _servers: servers,
            _echo: echo,
            uplink,
            cgroup: Cgroup::new("strait-bench-"),
        }
    }
}

/// Runs `argv` in the router namespace with `input` on stdin; fails naming the command.
fn router_exec(router: &Netns, argv: &[&str], input: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut child = router
        .command(argv)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{}`", argv.join(" ")))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// Latencies (µs) of `count` sequential request/response connections, targets taken in turn.
/// The client closes first, once the whole response is in (see
/// `HttpServer::start_client_closes` for why).
fn sample(targets: &[SocketAddr], count: usize) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(count);
    let mut buf = [0u8; 512];
    for i in 0..count {
        let target = targets[i % targets.len()];
        let start = Instant::now();
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .with_context(|| format!("connect to {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\nok\n") {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                bail!("{target} closed before the whole response");
            }
            response.extend_from_slice(&buf[..n]);
        }
        drop(stream);
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The service written after the `n` measured ones: one port to echo servers, for the
/// request/response rate on an established connection.
fn echo_service(n: usize) -> BenchService {
    BenchService {
        vip: SocketAddrV4::new(vip(n), 90),
        endpoints: vec![SocketAddrV4::new(BACKENDS[0], 9090)],
    }
}

/// Round trips of a 64-byte message per second on one connection to `target`, for `period`.
fn round_trips(target: SocketAddr, period: Duration) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .with_context(|| format!("connect to {target}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let message = [7u8; 64];
    let mut echoed = [0u8; 64];
    let start = Instant::now();
    let mut count = 0u32;
    while start.elapsed() < period {
        stream.write_all(&message)?;
        stream.read_exact(&mut echoed)?;
        count += 1;
    }
    Ok(f64::from(count) / start.elapsed().as_secs_f64())
}

/// Busy CPU time of the whole machine so far (user, system, irq, softirq, steal), in ms.
/// Per-namespace accounting of softirq work does not exist, so the figure is the machine's:
/// client and servers cost the same in every mode, and the difference is the dataplane's.
fn busy_ms() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    // USER_HZ is 100 on Linux: one jiffy is 10 ms.
    busy * 10.0
}

/// Random service addresses among the first `n`, the last-written one first.
fn targets(n: usize, count: usize, seed: &mut u64, direct: bool) -> Vec<SocketAddr> {
    (0..count)
        .map(|k| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let i = if k == 0 {
                n - 1
            } else {
                (*seed % n as u64) as usize
            };
            let s = service(i);
            if direct {
                SocketAddr::V4(s.endpoints[0])
            } else {
                SocketAddr::V4(s.vip)
            }
        })
        .collect()
}

fn move_self_to(cgroup: &Path) -> anyhow::Result<()> {
    fs::write(cgroup.join("cgroup.procs"), "0")
        .with_context(|| format!("move netctl into {}", cgroup.display()))
}

pub(crate) fn services(options: &Options) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for &n in &options.sizes {
        // The measured services, then the echo service the rate is measured through.
        let all: Vec<BenchService> = (0..n).map(service).chain([echo_service(n)]).collect();
        for mode in Mode::ALL {
            eprintln!("bench: {} services, {}", n, mode.name());
            // A fresh topology per measurement: the router's conntrack table, neighbour
            // entries and sockets in TIME_WAIT from one mode must not help or hurt the next.
            let topo = Topology::new();
            let row = measure(&topo, options, mode, &all, &mut seed)
                .with_context(|| format!("{} at {n} services", mode.name()))?;
            rows.push(row);
            // Written after every row: a long run that is interrupted keeps what it measured.
            write_report(&rows, options)?;
        }
    }
    print!("{}", render(&rows, options));
    eprintln!(
        "bench: report written to {}",
        options.report_dir.join("services.md").display()
    );
    Ok(())
}

fn write_report(rows: &[Row], options: &Options) -> anyhow::Result<()> {
    fs::create_dir_all(&options.report_dir)?;
    fs::write(
        options.report_dir.join("services.md"),
        render(rows, options),
    )?;
    write_charts(rows, &options.report_dir)
}

fn measure(
    topo: &Topology,
    options: &Options,
    mode: Mode,
    all: &[BenchService],
    seed: &mut u64,
) -> anyhow::Result<Row> {
    // The last service is the echo service (see `echo_service`).
    let n = all.len() - 1;
    let mut row = Row {
        n,
        mode,
        program: None,
        change: None,
        latency: None,
        rate: None,
        cpu: None,
        note: String::new(),
    };
    // Whatever a mode sets up lives until the end of this function.
    let mut _dataplane: Option<(PinDir, Dataplane)> = None;
    let changed = BenchService {
        endpoints: vec![
            SocketAddrV4::new(BACKENDS[3], 8080),
            SocketAddrV4::new(BACKENDS[2], 8080),
        ],
        ..all[n / 2].clone()
    };
    match mode {
        Mode::Direct => {}
        Mode::Iptables => {
            row.program = Some(router_exec(
                &topo.router,
                &["iptables-restore"],
                &kube_proxy::iptables_restore(all),
            )?);
            row.change = Some(router_exec(
                &topo.router,
                &["iptables-restore", "--noflush"],
                &kube_proxy::iptables_restore_one(n / 2, &changed),
            )?);
        }
        Mode::Nftables => {
            let per_transaction = if all.len() > options.nft_transaction_max {
                options.nft_transaction_max / 10
            } else {
                all.len()
            };
            let scripts = kube_proxy::nft_scripts(all, per_transaction);
            let mut last = Duration::ZERO;
            if scripts.len() > 1 {
                row.note = format!(
                    "loaded in {} transactions of {per_transaction} services; kube-proxy's one \
                     transaction grows quadratically in the kernel",
                    scripts.len()
                );
            }
            let mut total = Duration::ZERO;
            for (done, script) in scripts.iter().enumerate() {
                if total > options.nft_budget {
                    // The kernel names each new anonymous verdict map by scanning every set
                    // of the table, so each transaction costs more than the last.
                    row.note = format!(
                        "not measured: {} of {n} services loaded in {:.0} min ({} transactions of \
                         {per_transaction}), the last took {:.0} s; each new anonymous verdict \
                         map costs a scan of every set in the table",
                        done * per_transaction,
                        total.as_secs_f64() / 60.0,
                        done,
                        last.as_secs_f64()
                    );
                    return Ok(row);
                }
                last = router_exec(&topo.router, &["nft", "-f", "-"], script)?;
                total += last;
            }
            row.program = Some(total);
            row.change = Some(router_exec(
                &topo.router,
                &["nft", "-f", "-"],
                &kube_proxy::nft_script_one(n / 2, &changed, 1),
            )?);
        }
        Mode::StraitSocket | Mode::StraitTc => {
            let pins = PinDir::new("strait-bench-");
            let mut dp = Dataplane::load(DataplaneConfig {
                ct_entries: Some(1 << 16),
                pod_cidrs: vec!["10.1.0.0/24".parse().map_err(anyhow::Error::msg)?],
                ..DataplaneConfig::new(pins.path())
            })?;
            let start = Instant::now();
            for s in all {
                dp.upsert_service(&spec(s))?;
            }
            row.program = Some(start.elapsed());
            let start = Instant::now();
            dp.upsert_service(&spec(&changed))?;
            row.change = Some(start.elapsed());
            if mode == Mode::StraitSocket {
                dp.attach_cgroup(topo.cgroup.path())?;
            } else {
                let uplink = topo.uplink.clone();
                dp = topo.router.run(move || -> anyhow::Result<Dataplane> {
                    dp.attach_netdev(&uplink)?;
                    Ok(dp)
                })?;
            }
            _dataplane = Some((pins, dp));
        }
    }

    let direct = mode == Mode::Direct;
    let socket = mode == Mode::StraitSocket;
    let cgroup_root = topo.cgroup.path().parent().context("cgroup2 root")?;
    if socket {
        move_self_to(topo.cgroup.path())?;
    }
    let echo = if direct {
        SocketAddr::V4(echo_service(n).endpoints[0])
    } else {
        SocketAddr::V4(echo_service(n).vip)
    };
    let result = topo
        .client
        .run(|| -> anyhow::Result<Vec<([f64; 3], f64, f64)>> {
            sample(&targets(n, 50, seed, direct), options.warmup)?;
            let mut rounds = Vec::new();
            for _ in 0..options.rounds {
                let busy = busy_ms();
                let mut latencies = sample(&targets(n, 100, seed, direct), options.connections)?;
                let cpu = (busy_ms() - busy) * 1000.0 / options.connections as f64;
                latencies.sort_by(f64::total_cmp);
                rounds.push((
                    [
                        percentile(&latencies, 0.5),
                        percentile(&latencies, 0.9),
                        percentile(&latencies, 0.99),
                    ],
                    round_trips(echo, Duration::from_millis(500))?,
                    cpu,
                ));
            }
            Ok(rounds)
        });
    if socket {
        move_self_to(cgroup_root)?;
    }
    let rounds = result?;
    row.latency = Some([0, 1, 2].map(|p| Figure::of(rounds.iter().map(|r| r.0[p]).collect())));
    row.rate = Some(Figure::of(rounds.iter().map(|r| r.1).collect()));
    row.cpu = Some(Figure::of(rounds.iter().map(|r| r.2).collect()));

    // The rules go with the router's namespace.
    Ok(row)
}

/// `latency.svg` (p50 against N per mode) and `programming.svg` (time to program all N, log).
fn write_charts(rows: &[Row], dir: &Path) -> anyhow::Result<()> {
    let series = |value: &dyn Fn(&Row) -> Option<f64>| -> Vec<chart::Series> {
        Mode::ALL
            .iter()
            .map(|&mode| chart::Series {
                name: mode.name(),
                color: mode.color(),
                points: rows
                    .iter()
                    .filter(|r| r.mode == mode)
                    .filter_map(|r| Some((r.n as f64, value(r)?)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let latency = series(&|r| r.latency.map(|l| l[0].median));
    fs::write(
        dir.join("latency.svg"),
        chart::line_chart("New connection, p50", "µs", &latency, false),
    )?;
    let programming = series(&|r| r.program.map(|d| d.as_secs_f64() * 1e3));
    fs::write(
        dir.join("programming.svg"),
        chart::line_chart("Program all services", "ms (log scale)", &programming, true),
    )?;
    Ok(())
}

fn human(d: Option<Duration>) -> String {
    match d {
        None => "–".to_owned(),
        Some(d) if d.as_secs_f64() >= 1.0 => format!("{:.2} s", d.as_secs_f64()),
        Some(d) if d.as_secs_f64() >= 1e-3 => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.0} µs", d.as_secs_f64() * 1e6),
    }
}

fn render(rows: &[Row], options: &Options) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut out = format!(
        "# netctl bench services\n\n{cores} cores, kernel {}. {} connections per round after {} warm-up, {} rounds; \
         latency in µs, median of the rounds (min–max). Services have 2–4 endpoints. Round trips: \
         64-byte messages on one established connection for 0.5 s. CPU: busy time of the whole \
         machine (client and servers included, the same in every mode) per 1,000 connections.\n\n",
        kernel.trim(),
        options.connections,
        options.warmup,
        options.rounds
    );
    out.push_str("![latency](latency.svg) ![programming](programming.svg)\n\n");
    out.push_str(
        "| services | mode | program all | one endpoint change | p50 | p90 | p99 | round trips/s | CPU ms / 1k conn | note |\n",
    );
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let show = |f: Option<Figure>, precision: usize| {
        f.map_or_else(
            || "–".to_owned(),
            |f| {
                format!(
                    "{:.p$} ({:.p$}–{:.p$})",
                    f.median,
                    f.min,
                    f.max,
                    p = precision
                )
            },
        )
    };
    for row in rows {
        let latency = |i: usize| show(row.latency.map(|l| l[i]), 0);
        let _ = std::fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                row.n,
                row.mode.name(),
                human(row.program),
                human(row.change),
                latency(0),
                latency(1),
                latency(2),
                show(row.rate, 0),
                show(row.cpu, 0),
                row.note
            ),
        );
    }
    out
}

/// Whether a host command is present (the baselines need iptables-restore and nft).
pub(crate) fn require_tools() -> anyhow::Result<()> {
    for tool in ["iptables-restore", "nft"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("`{tool}` is missing: run `cargo xtask setup`");
        }
    }
    Ok(())
}
