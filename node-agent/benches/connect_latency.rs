//! New-connection latency from a client namespace to a ClusterIP (translated at `connect()`)
//! against the same connection made straight to the backend's address, with 1 to 100,000
//! services in the maps. Each sample is connect + a small HTTP request + the response, client
//! closes; the same client code for both modes, rounds alternating between them.
//!
//! The benchmark moves its own process into a private cgroup2 subtree (the programs attach
//! there, never to the root) and runs its client on a thread inside the client namespace.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use strait_agent::dataplane::{
    Dataplane, DataplaneConfig, Frontend, Protocol, ServiceOptions, ServiceSpec,
};
use strait_tests::{Cgroup, HttpServer, Netns, PinDir, VethPair};

const SIZES: [u32; 3] = [1, 1_000, 100_000];
const CONNECTIONS: usize = 2_000;
const WARMUP: usize = 200;
const ROUNDS: usize = 3;

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i)
}

fn spec(i: u32, backend: SocketAddrV4) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: vip(i).into(),
            port: 80,
            protocol: Protocol::Tcp,
        },
        backends: vec![backend.into()],
        options: ServiceOptions::default(),
    }
}

/// Latencies in microseconds of `count` sequential request/response connections to `target`.
fn sample(target: SocketAddr, count: usize) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(count);
    let mut buf = [0u8; 256];
    for _ in 0..count {
        let start = Instant::now();
        let mut stream =
            TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("connect");
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .expect("request");
        while stream.read(&mut buf).expect("response") > 0 {}
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn move_self_to(cgroup: &Path) {
    fs::write(cgroup.join("cgroup.procs"), "0").expect("move the benchmark into its cgroup");
}

fn main() {
    let client = Netns::new("bc");
    let backend = Netns::new("bb");
    let _link = VethPair::new(&client, "10.0.1.1/24", &backend, "10.0.1.2/24");
    let _server = HttpServer::start(&backend, "10.0.1.2:8080".parse().unwrap(), "ok\n");
    let cgroup = Cgroup::new("strait-bench-");
    let pins = PinDir::new("strait-bench-");
    let mut dp = Dataplane::load(DataplaneConfig {
        ct_entries: Some(65_536),
        ..DataplaneConfig::new(pins.path())
    })
    .expect("load the dataplane");
    dp.attach_cgroup(cgroup.path()).expect("attach");
    let root = cgroup.path().parent().expect("cgroup2 root").to_path_buf();
    move_self_to(cgroup.path());

    let backend_addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 8080);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("connect_latency: {cores} cores, kernel {}", kernel.trim());
    println!(
        "{CONNECTIONS} connections per round after {WARMUP} warm-up, {ROUNDS} rounds alternating modes; \
         medians of the round figures (min–max), µs\n"
    );
    println!("| services | mode | p50 | p90 | p99 |");
    println!("|---:|---|---:|---:|---:|");
    let mut programmed = 0;
    for n in SIZES {
        while programmed < n {
            dp.upsert_service(&spec(programmed, backend_addr))
                .expect("program");
            programmed += 1;
        }
        // The last-written service: the one a linear rule list would reach last.
        let service = SocketAddr::from((vip(n - 1), 80));
        let direct = SocketAddr::from(backend_addr);
        let (mut via_service, mut straight) = (Vec::new(), Vec::new());
        client.run(|| {
            sample(service, WARMUP);
            sample(direct, WARMUP);
            for _ in 0..ROUNDS {
                via_service.push(sorted(sample(service, CONNECTIONS)));
                straight.push(sorted(sample(direct, CONNECTIONS)));
            }
        });
        for (mode, rounds) in [
            ("ClusterIP (connect4)", &via_service),
            ("direct to pod IP", &straight),
        ] {
            let figure = |p: f64| {
                let mut values: Vec<f64> = rounds.iter().map(|r| percentile(r, p)).collect();
                values.sort_by(f64::total_cmp);
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    values[values.len() / 2],
                    values[0],
                    values[values.len() - 1]
                )
            };
            println!(
                "| {n} | {mode} | {} | {} | {} |",
                figure(0.5),
                figure(0.9),
                figure(0.99)
            );
        }
    }
    // Out of the cgroup before its guard removes it (the guard kills what is left inside).
    move_self_to(&root);
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}
