//! How the per-packet service path and map programming scale with the number of services.
//!
//! For N services (2 backends each) it measures: the time to program all N through the
//! dataplane's ordered writes; the time to apply one endpoint change at N; and the kernel's
//! own per-packet run time of `strait_from_netdev` (`BPF_PROG_TEST_RUN`, mean over many
//! repeats) for packets to services chosen at random, and to the last one written.
//! Figures only: nothing here passes or fails on time.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use strait_agent::dataplane::{
    Dataplane, DataplaneConfig, Frontend, PacketHook, Protocol, ServiceOptions, ServiceSpec,
};
use strait_tests::{PinDir, packet::Ipv4Packet};

const SIZES: [u32; 4] = [1, 1_000, 10_000, 100_000];
const ROUNDS: usize = 5;
const REPEAT: u32 = 200_000;

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i)
}

fn spec(i: u32, generation: u32) -> ServiceSpec {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 4 + generation;
    ServiceSpec {
        frontend: Frontend {
            address: vip(i).into(),
            port: 80,
            protocol: Protocol::Tcp,
        },
        backends: vec![
            SocketAddrV4::new(Ipv4Addr::from(base), 8080).into(),
            SocketAddrV4::new(Ipv4Addr::from(base + 1), 8080).into(),
        ],
        options: ServiceOptions::default(),
    }
}

/// xorshift64: enough randomness to pick services, without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

fn ns_per_packet(dp: &mut Dataplane, service: u32) -> f64 {
    let packet =
        Ipv4Packet::tcp((Ipv4Addr::new(10, 0, 0, 1), 40000), (vip(service), 80)).build(b"x");
    let run = dp
        .test_run(PacketHook::FromNetdev, &packet, REPEAT)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(run.verdict, 0, "service packets pass");
    run.duration.as_nanos() as f64
}

fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("service_lookup: {cores} cores, kernel {}", kernel.trim());
    println!(
        "per-packet: BPF_PROG_TEST_RUN of strait_from_netdev, mean of {REPEAT} runs per round, {ROUNDS} rounds; median (min–max)\n"
    );
    println!(
        "| services | program all | one endpoint change | ns/packet, random service | ns/packet, last service |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut rng = Rng(Instant::now().elapsed().as_nanos() as u64 | 0x9e37_79b9_7f4a_7c15);
    for n in SIZES {
        let pins = PinDir::new("strait-bench-");
        let mut dp = Dataplane::load(DataplaneConfig {
            ct_entries: Some(65_536),
            ..DataplaneConfig::new(pins.path())
        })
        .expect("load the dataplane");
        let start = Instant::now();
        for i in 0..n {
            dp.upsert_service(&spec(i, 0)).expect("program a service");
        }
        let program_all = start.elapsed();

        let mut changes = Vec::new();
        for round in 0..ROUNDS as u32 {
            let service = rng.below(n);
            let start = Instant::now();
            dp.upsert_service(&spec(service, 1 + round % 2))
                .expect("change endpoints");
            changes.push(start.elapsed().as_nanos() as f64);
        }
        let random: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let service = rng.below(n);
                ns_per_packet(&mut dp, service)
            })
            .collect();
        let last: Vec<f64> = (0..ROUNDS).map(|_| ns_per_packet(&mut dp, n - 1)).collect();

        let (change, change_min, change_max) = median_min_max(changes);
        let (r, r_min, r_max) = median_min_max(random);
        let (l, l_min, l_max) = median_min_max(last);
        println!(
            "| {n} | {} | {:.1} µs ({:.1}–{:.1}) | {r:.0} ({r_min:.0}–{r_max:.0}) | {l:.0} ({l_min:.0}–{l_max:.0}) |",
            human(program_all),
            change / 1e3,
            change_min / 1e3,
            change_max / 1e3,
        );
    }
}

fn human(d: Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
