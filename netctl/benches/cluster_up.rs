//! `cargo xtask bench cluster`: how long `netctl cluster up` takes to a cluster whose nodes are
//! all Ready and whose DNS answers on every node, for 2 and 5 nodes (10 with `--full`), how long
//! `down` takes, and what the processes weigh once up (proportional memory, PSS, from
//! `/proc/<pid>/smaps_rollup`, a few seconds after up). Figures only: nothing here passes or
//! fails on time. `--quick` runs each size once; otherwise three times.

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

const NETCTL: &str = env!("CARGO_BIN_EXE_netctl");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    let sizes: &[usize] = if full { &[2, 5, 10] } else { &[2, 5] };
    let rounds = if quick { 1 } else { 3 };
    println!(
        "netctl cluster up → every node Ready and its DNS answering ({rounds} round(s) a size)\n"
    );
    println!(
        "| nodes | up (median) | up (min–max) | down (median) | control PSS | agent PSS (mean) | dns PSS (mean) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &nodes in sizes {
        let mut ups = Vec::new();
        let mut downs = Vec::new();
        let mut memory: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            let name = format!("bench{}r{round}", std::process::id() % 10_000);
            let began = Instant::now();
            let out = Command::new(NETCTL)
                .args([
                    "cluster",
                    "up",
                    "--name",
                    &name,
                    "--nodes",
                    &nodes.to_string(),
                ])
                .output()
                .expect("run netctl cluster up");
            let up = began.elapsed();
            if !out.status.success() {
                let _ = Command::new(NETCTL)
                    .args(["cluster", "down", "--name", &name])
                    .output();
                panic!(
                    "cluster up with {nodes} nodes failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            ups.push(up.as_secs_f64());
            // Let the agents and DNS settle (first syncs, image import) before weighing them.
            thread::sleep(Duration::from_secs(5));
            for (role, pss) in weigh(&name) {
                memory.entry(role).or_default().push(pss);
            }
            let began = Instant::now();
            let out = Command::new(NETCTL)
                .args(["cluster", "down", "--name", &name])
                .output()
                .expect("run netctl cluster down");
            assert!(
                out.status.success(),
                "cluster down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            downs.push(began.elapsed().as_secs_f64());
        }
        let mean = |role: &str| {
            memory
                .get(role)
                .map_or(0.0, |v| v.iter().sum::<f64>() / v.len() as f64)
        };
        println!(
            "| {nodes} | {:.2} s | {:.2}–{:.2} s | {:.2} s | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            median(&mut ups.clone()),
            ups.iter().copied().fold(f64::INFINITY, f64::min),
            ups.iter().copied().fold(0.0, f64::max),
            median(&mut downs),
            mean("control"),
            mean("agent"),
            mean("dns"),
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Each recorded process's PSS in MiB, by role.
fn weigh(name: &str) -> Vec<(String, f64)> {
    let record = Path::new("/var/lib/strait/clusters")
        .join(name)
        .join("cluster.json");
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(&record).expect("the cluster record")).expect("JSON");
    record["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let role = p["role"].as_str()?.to_owned();
            let pid = p["pid"].as_u64()?;
            let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            let kib: f64 = rollup
                .lines()
                .find(|l| l.starts_with("Pss:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((role, kib / 1024.0))
        })
        .collect()
}
