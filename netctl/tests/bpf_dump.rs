//! `netctl bpf dump` against a real dataplane's pinned maps: the tables show what the kernel
//! holds, with no agent running.

use std::{net::Ipv4Addr, process::Command};

use serde_json::Value;
use strait_agent::dataplane::{
    Dataplane, DataplaneConfig, Frontend, PacketHook, Protocol, ServiceOptions, ServiceSpec,
};
use strait_tests::{PinDir, packet::Ipv4Packet};

fn netctl(pins: &PinDir, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netctl"))
        .args(["bpf", "dump"])
        .args(args)
        .arg("--pin-dir")
        .arg(pins.path())
        .output()
        .expect("run netctl");
    assert!(
        out.status.success(),
        "netctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A node whose agent programmed a NodePort with one remote backend, carried one flow through
/// it, and exited.
fn node_after_one_flow() -> PinDir {
    let pins = PinDir::new("strait-test-");
    let mut dp = Dataplane::load(DataplaneConfig {
        node_ipv4: Some(Ipv4Addr::new(192, 168, 77, 2)),
        pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        ct_entries: Some(4096),
        ..DataplaneConfig::new(pins.path())
    })
    .unwrap();
    dp.upsert_service(&ServiceSpec {
        frontend: Frontend {
            address: Ipv4Addr::new(192, 168, 77, 2).into(),
            port: 30080,
            protocol: Protocol::Tcp,
        },
        backends: vec![
            "10.244.2.2:8080".parse().unwrap(),
            "10.244.1.7:8080".parse().unwrap(),
        ],
        options: ServiceOptions {
            external: true,
            affinity_timeout: Some(600),
            ..ServiceOptions::default()
        },
    })
    .unwrap();
    // Affinity by client address makes the choice repeatable: force the remote backend by
    // trying client addresses until one lands there.
    for host in 1..=64u8 {
        let packet = Ipv4Packet::tcp(
            (Ipv4Addr::new(192, 168, 77, host), 40000),
            (Ipv4Addr::new(192, 168, 77, 2), 30080),
        )
        .build(b"");
        let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
        if strait_tests::packet::read::dst(&run.packet) == Ipv4Addr::new(10, 244, 2, 2) {
            break;
        }
    }
    pins
}

#[test]
fn services_and_backends_show_slots_and_locality() {
    let pins = node_after_one_flow();

    let services = netctl(&pins, &["services"]);
    assert!(services.contains("192.168.77.2:30080/TCP"), "{services}");
    assert!(services.contains("[2 backends]"), "{services}");

    let backends: Value = serde_json::from_str(&netctl(&pins, &["backends", "--json"])).unwrap();
    let local: Vec<(&str, bool)> = backends
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap(),
                b["local"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(local.contains(&("10.244.1.7:8080", true)), "{local:?}");
    assert!(local.contains(&("10.244.2.2:8080", false)), "{local:?}");
}

#[test]
fn conntrack_nat_affinity_and_counters_show_the_flow() {
    let pins = node_after_one_flow();

    let ct: Value = serde_json::from_str(&netctl(&pins, &["ct", "--json"])).unwrap();
    let snat: Vec<&Value> = ct
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["flags"] == "snat")
        .collect();
    assert_eq!(
        snat.len(),
        2,
        "the SNAT flow has an OUT and an IN entry: {ct}"
    );
    assert!(snat.iter().all(|e| e["expiresIn"].as_i64().unwrap() > 0));

    let nat = netctl(&pins, &["nat"]);
    assert!(
        nat.contains("10.244.2.2:8080") && nat.contains("192.168.77.2:"),
        "{nat}"
    );

    let affinity = netctl(&pins, &["affinity"]);
    assert!(
        affinity.contains("192.168.77."),
        "per-packet affinity is by client address: {affinity}"
    );

    let counters: Value = serde_json::from_str(&netctl(&pins, &["counters", "--json"])).unwrap();
    // Two conntrack maps (IPv4 and IPv6) of 4,096 entries each.
    assert_eq!(counters["conntrack"]["capacity"], 8192);
    let service = &counters["services"][0];
    assert_eq!(service["frontend"], "192.168.77.2:30080/TCP");
    assert!(
        service["flows"].as_u64().unwrap() >= 1,
        "new flows counted: {counters}"
    );
    assert_eq!(
        service["flows"], service["packets"],
        "each flow sent one packet: {counters}"
    );
    assert!(counters["conntrack"]["entries"].as_u64().unwrap() >= 2);
}
