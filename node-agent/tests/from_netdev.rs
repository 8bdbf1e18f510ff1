//! Packet tests of the per-packet service path (`strait_from_netdev`), run with
//! `BPF_PROG_TEST_RUN` on crafted packets: build a packet, seed the maps, run, check the bytes.
//!
//! ```text
//!   client 10.0.0.1:40000 ──▶ [tc strait_from_netdev] ──▶ 10.96.0.10:80 rewritten to a backend
//! ```

use std::net::Ipv4Addr;

use strait_agent::dataplane::{Dataplane, DataplaneConfig, Frontend, Protocol, ServiceSpec};
use strait_ebpf_common::drop::DropReason;
use strait_tests::{
    PinDir,
    packet::{Ipv4Packet, ip_checksum_ok, l4_checksum, read},
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 40000);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn dataplane(pins: &PinDir) -> Dataplane {
    Dataplane::load(DataplaneConfig {
        pin_dir: pins.path().to_path_buf(),
    })
    .expect("load the dataplane")
}

fn service(port: u16, protocol: Protocol, backends: &[&str]) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: VIP,
            port,
            protocol,
        },
        backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
    }
}

fn drops(dp: &Dataplane, reason: DropReason) -> u64 {
    dp.drops()
        .unwrap()
        .into_iter()
        .find(|d| d.reason == reason)
        .map_or(0, |d| d.packets)
}

#[test]
fn tcp_to_a_service_is_rewritten_to_its_backend_with_valid_checksums() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.0.1.2:8080"]))
        .unwrap();

    let packet = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"GET / HTTP/1.0\r\n\r\n");
    let run = dp.run_from_netdev(&packet, 1).unwrap();

    assert_eq!(run.verdict, TC_ACT_OK, "service traffic passes on");
    let out = &run.packet;
    assert_eq!(out.len(), packet.len(), "DNAT keeps the length");
    assert_eq!(
        read::dst(out),
        Ipv4Addr::new(10, 0, 1, 2),
        "destination is the backend"
    );
    assert_eq!(read::dport(out), 8080, "port is the backend's");
    assert_eq!(read::src(out), CLIENT.0, "source untouched");
    assert_eq!(read::sport(out), CLIENT.1, "source port untouched");
    assert!(ip_checksum_ok(out), "IPv4 header checksum updated");
    assert_eq!(
        read::l4_checksum(out),
        l4_checksum(out),
        "TCP checksum covers the new pseudo header and port"
    );
}

#[test]
fn udp_to_a_service_is_rewritten_and_spreads_over_backends() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(
        53,
        Protocol::Udp,
        &["10.0.1.2:5353", "10.0.1.3:5353"],
    ))
    .unwrap();
    let packet = Ipv4Packet::udp(CLIENT, (VIP, 53)).build(b"query");

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let run = dp.run_from_netdev(&packet, 1).unwrap();
        assert_eq!(run.verdict, TC_ACT_OK);
        assert_eq!(read::dport(&run.packet), 5353);
        assert!(ip_checksum_ok(&run.packet));
        assert_eq!(
            read::l4_checksum(&run.packet),
            l4_checksum(&run.packet),
            "UDP checksum"
        );
        seen.insert(read::dst(&run.packet));
    }
    let expected: std::collections::BTreeSet<_> =
        [Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)].into();
    // 64 random picks between two backends all landing on one: probability 2^-63.
    assert_eq!(seen, expected, "random selection reaches both backends");
}

#[test]
fn traffic_not_for_a_service_is_left_alone() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.0.1.2:8080"]))
        .unwrap();
    for packet in [
        Ipv4Packet::tcp(CLIENT, (VIP, 81)).build(b""),
        Ipv4Packet::udp(CLIENT, (VIP, 80)).build(b""),
        Ipv4Packet::tcp(CLIENT, (Ipv4Addr::new(10, 96, 0, 11), 80)).build(b""),
    ] {
        let run = dp.run_from_netdev(&packet, 1).unwrap();
        assert_eq!(run.verdict, TC_ACT_OK);
        assert_eq!(run.packet, packet, "bytes unchanged");
    }
}

#[test]
fn a_service_without_backends_drops_and_counts_the_reason() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &[])).unwrap();
    let before = drops(&dp, DropReason::NoBackend);

    let run = dp
        .run_from_netdev(&Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b""), 1)
        .unwrap();

    assert_eq!(run.verdict, TC_ACT_SHOT);
    assert_eq!(
        drops(&dp, DropReason::NoBackend),
        before + 1,
        "drop counted under its reason"
    );
}

#[test]
fn a_truncated_ipv4_header_is_dropped_as_malformed() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    let mut packet = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"");
    packet[14] = 0x44; // IHL 4: shorter than the minimal 20-byte header.

    let run = dp.run_from_netdev(&packet, 1).unwrap();

    assert_eq!(run.verdict, TC_ACT_SHOT);
    assert_eq!(drops(&dp, DropReason::Malformed), 1);
}

#[test]
fn maps_survive_a_reload_from_the_same_pin_directory() {
    let pins = PinDir::new("strait-test-");
    {
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(
            80,
            Protocol::Tcp,
            &["10.0.1.2:8080", "10.0.1.3:8080"],
        ))
        .unwrap();
    }
    let mut dp = dataplane(&pins);
    let services = dp.dump_services().unwrap();
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!(services[0].count, 2);

    let run = dp
        .run_from_netdev(&Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b""), 1)
        .unwrap();
    assert_eq!(
        read::dport(&run.packet),
        8080,
        "the reloaded object uses the pinned maps"
    );
}
