//! Packet tests of the per-packet service path, run with `BPF_PROG_TEST_RUN` on crafted
//! packets: build a packet, seed the maps, run the program, check the bytes.
//!
//! ```text
//!   client 10.0.0.1:40000 ─▶ [ingress: strait_from_netdev] ─▶ service 10.96.0.10:80 → backend
//!   client ◀─ [egress: strait_to_netdev] ◀─ local backend 10.244.1.2 (reply restored)
//!   client ◀─ [ingress] ◀─ remote backend 10.244.2.2, replying to the node 192.168.77.2 (SNAT)
//! ```

use std::{collections::BTreeSet, net::Ipv4Addr};

use strait_agent::dataplane::{
    Dataplane, DataplaneConfig, Frontend, PacketHook, Protocol, ServiceOptions, ServiceSpec,
};
use strait_ebpf_common::{ct::CT_F_SNAT, drop::DropReason};
use strait_tests::{
    PinDir,
    packet::{
        Ipv4Packet, icmp_checksum_ok, icmp_error, icmp_quoted, ip_checksum_ok, l4_checksum, read,
    },
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 40000);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);

fn dataplane(pins: &PinDir) -> Dataplane {
    Dataplane::load(DataplaneConfig {
        node_ipv4: Some(NODE),
        pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        ct_entries: Some(4096),
        ..DataplaneConfig::new(pins.path())
    })
    .expect("load the dataplane")
}

fn service(port: u16, protocol: Protocol, backends: &[&str]) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: VIP.into(),
            port,
            protocol,
        },
        backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        options: ServiceOptions::default(),
    }
}

fn drops(dp: &Dataplane, reason: DropReason) -> u64 {
    dp.drops()
        .unwrap()
        .into_iter()
        .find(|d| d.reason == reason)
        .map_or(0, |d| d.packets)
}

/// Asserts both checksums of `packet` are what a full recomputation gives.
fn assert_checksums(packet: &[u8], what: &str) {
    assert!(ip_checksum_ok(packet), "{what}: IPv4 header checksum");
    assert_eq!(
        read::l4_checksum(packet),
        l4_checksum(packet),
        "{what}: L4 checksum"
    );
}

#[test]
fn tcp_to_a_service_is_rewritten_to_its_backend_with_valid_checksums() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.244.1.2:8080"]))
        .unwrap();

    let packet = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"GET / HTTP/1.0\r\n\r\n");
    let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();

    assert_eq!(run.verdict, TC_ACT_OK, "service traffic passes on");
    assert_eq!(run.packet.len(), packet.len(), "DNAT keeps the length");
    assert_eq!(
        read::tuple(&run.packet),
        (CLIENT, (LOCAL_POD, 8080)),
        "only the destination changes"
    );
    assert_checksums(&run.packet, "after DNAT");
}

#[test]
fn replies_of_a_local_backend_are_restored_on_egress() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.244.1.2:8080"]))
        .unwrap();
    dp.test_run(
        PacketHook::FromNetdev,
        &Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b""),
        1,
    )
    .unwrap();

    let reply = Ipv4Packet::tcp((LOCAL_POD, 8080), CLIENT).build(b"HTTP/1.0 200 OK\r\n\r\n");
    let run = dp.test_run(PacketHook::ToNetdev, &reply, 1).unwrap();

    assert_eq!(run.verdict, TC_ACT_OK);
    assert_eq!(
        read::tuple(&run.packet),
        ((VIP, 80), CLIENT),
        "the client sees the service answer"
    );
    assert_checksums(&run.packet, "after reverse NAT");
}

#[test]
fn remote_backends_are_source_natted_and_their_replies_restored() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.244.2.2:8080"]))
        .unwrap();

    let first = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"");
    let run = dp.test_run(PacketHook::FromNetdev, &first, 1).unwrap();
    let ((src, sport), dst) = read::tuple(&run.packet);
    assert_eq!(
        src, NODE,
        "a remote backend sees the node as source, so replies come back here"
    );
    assert!(
        sport >= 61_000,
        "SNAT port {sport} from the SNAT range (client port 40000 is outside it)"
    );
    assert_eq!(dst, (REMOTE_POD, 8080));
    assert_checksums(&run.packet, "after DNAT + SNAT");

    // The reply arrives on the uplink, addressed to the node.
    let reply = Ipv4Packet::tcp((REMOTE_POD, 8080), (NODE, sport)).build(b"ok");
    let run = dp.test_run(PacketHook::FromNetdev, &reply, 1).unwrap();
    assert_eq!(read::tuple(&run.packet), ((VIP, 80), CLIENT));
    assert_checksums(&run.packet, "after reverse SNAT + DNAT");

    let ct = dp.dump_ct().unwrap();
    assert_eq!(ct.len(), 2, "one entry per direction: {ct:?}");
    assert!(
        ct.iter()
            .all(|e| e.flags & CT_F_SNAT != 0 && e.expires_in > 0)
    );
    assert_eq!(
        ct.iter().map(|e| e.packets).sum::<u64>(),
        2,
        "each direction counted one packet"
    );
}

#[test]
fn a_local_only_frontend_keeps_the_client_address() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    let mut spec = service(30080, Protocol::Tcp, &["10.244.2.2:8080"]);
    spec.options.local_only = true;
    dp.upsert_service(&spec).unwrap();

    let run = dp
        .test_run(
            PacketHook::FromNetdev,
            &Ipv4Packet::tcp(CLIENT, (VIP, 30080)).build(b""),
            1,
        )
        .unwrap();

    assert_eq!(
        read::tuple(&run.packet),
        (CLIENT, (REMOTE_POD, 8080)),
        "no SNAT"
    );
}

#[test]
fn a_flow_keeps_its_backend_even_after_the_backend_is_removed() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(
        80,
        Protocol::Tcp,
        &["10.244.1.2:8080", "10.244.1.3:8080"],
    ))
    .unwrap();
    let packet = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"");
    let first = read::dst(
        &dp.test_run(PacketHook::FromNetdev, &packet, 1)
            .unwrap()
            .packet,
    );
    for _ in 0..16 {
        let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
        assert_eq!(
            read::dst(&run.packet),
            first,
            "conntrack keeps the flow on its backend"
        );
    }

    let other = if first == LOCAL_POD {
        "10.244.1.3:8080"
    } else {
        "10.244.1.2:8080"
    };
    dp.upsert_service(&service(80, Protocol::Tcp, &[other]))
        .unwrap();

    let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
    assert_eq!(
        read::dst(&run.packet),
        first,
        "the tracked flow survives its backend's removal"
    );
    let new_flow = Ipv4Packet::tcp((CLIENT.0, 40001), (VIP, 80)).build(b"");
    let run = dp.test_run(PacketHook::FromNetdev, &new_flow, 1).unwrap();
    assert_eq!(
        read::dst(&run.packet).to_string(),
        other.split(':').next().unwrap(),
        "new flows go to the remaining backend"
    );
}

#[test]
fn udp_to_a_service_is_rewritten_and_new_flows_spread_over_backends() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(
        53,
        Protocol::Udp,
        &["10.244.1.2:5353", "10.244.1.3:5353"],
    ))
    .unwrap();

    let mut seen = BTreeSet::new();
    for port in 0..64 {
        let packet = Ipv4Packet::udp((CLIENT.0, 40000 + port), (VIP, 53)).build(b"query");
        let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
        assert_eq!(run.verdict, TC_ACT_OK);
        assert_eq!(read::dport(&run.packet), 5353);
        assert_checksums(&run.packet, "UDP after DNAT");
        seen.insert(read::dst(&run.packet));
    }
    // 64 new flows all on one of two backends: probability 2^-63.
    assert_eq!(
        seen,
        BTreeSet::from([LOCAL_POD, Ipv4Addr::new(10, 244, 1, 3)])
    );
}

#[test]
fn ip_options_are_skipped_to_find_the_ports() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.244.1.2:8080"]))
        .unwrap();
    // Router alert (RFC 2113): type 148, length 4.
    let packet = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build_with_options(b"x", &[148, 4, 0, 0]);

    let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();

    assert_eq!(read::tuple(&run.packet), (CLIENT, (LOCAL_POD, 8080)));
    assert_eq!(&run.packet[34..38], &[148, 4, 0, 0], "options untouched");
    assert_checksums(&run.packet, "with options");
}

#[test]
fn traffic_that_is_not_for_a_service_is_left_alone() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &["10.244.1.2:8080"]))
        .unwrap();
    let mut later_fragment = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"");
    later_fragment[20] = 0x00;
    later_fragment[21] = 0x10; // fragment offset 16 (×8 bytes): no L4 header here
    for packet in [
        Ipv4Packet::tcp(CLIENT, (VIP, 81)).build(b""),
        Ipv4Packet::udp(CLIENT, (VIP, 80)).build(b""),
        Ipv4Packet::tcp(CLIENT, (Ipv4Addr::new(10, 96, 0, 11), 80)).build(b""),
        later_fragment,
    ] {
        for hook in [PacketHook::FromNetdev, PacketHook::ToNetdev] {
            let run = dp.test_run(hook, &packet, 1).unwrap();
            assert_eq!(run.verdict, TC_ACT_OK);
            assert_eq!(run.packet, packet, "{hook:?}: bytes unchanged");
        }
    }
}

#[test]
fn a_service_without_backends_drops_and_counts_the_reason() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(80, Protocol::Tcp, &[])).unwrap();

    let run = dp
        .test_run(
            PacketHook::FromNetdev,
            &Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b""),
            1,
        )
        .unwrap();

    assert_eq!(run.verdict, TC_ACT_SHOT);
    assert_eq!(
        drops(&dp, DropReason::NoBackend),
        1,
        "drop counted under its reason"
    );
}

#[test]
fn malformed_and_truncated_packets_are_dropped_as_malformed() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    let good = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"");
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44; // IHL 4: shorter than the minimal 20-byte header.
    let truncated = good[..14 + 20 + 2].to_vec(); // the TCP header ends after the source port

    for (packet, what) in [(short_ihl, "IHL 4"), (truncated, "truncated TCP header")] {
        let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
        assert_eq!(run.verdict, TC_ACT_SHOT, "{what}");
    }
    assert_eq!(drops(&dp, DropReason::Malformed), 2);
}

#[test]
fn maps_and_flows_survive_a_reload_from_the_same_pin_directory() {
    let pins = PinDir::new("strait-test-");
    let packet = Ipv4Packet::tcp(CLIENT, (VIP, 80)).build(b"");
    let first = {
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(
            80,
            Protocol::Tcp,
            &["10.244.1.2:8080", "10.244.1.3:8080"],
        ))
        .unwrap();
        read::dst(
            &dp.test_run(PacketHook::FromNetdev, &packet, 1)
                .unwrap()
                .packet,
        )
    };

    let mut dp = dataplane(&pins);

    assert_eq!(dp.adoption(), strait_agent::dataplane::Adoption::Adopted);
    let services = dp.dump_services().unwrap();
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!(services[0].count, 2);
    for _ in 0..8 {
        let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
        assert_eq!(
            read::dst(&run.packet),
            first,
            "the flow keeps its backend across the reload"
        );
    }
}

#[test]
fn a_full_conntrack_table_evicts_the_oldest_flows_and_keeps_serving_new_ones() {
    let pins = PinDir::new("strait-test-");
    let mut dp = Dataplane::load(DataplaneConfig {
        ct_entries: Some(512),
        ..DataplaneConfig::new(pins.path())
    })
    .unwrap();
    dp.upsert_service(&service(53, Protocol::Udp, &["10.244.1.2:5353"]))
        .unwrap();

    // Each new flow takes two entries (FORWARD and REPLY): 3,000 flows need 6,000 of 512.
    for port in 0..3000u16 {
        let packet = Ipv4Packet::udp((CLIENT.0, 10000 + port), (VIP, 53)).build(b"q");
        let run = dp.test_run(PacketHook::FromNetdev, &packet, 1).unwrap();
        assert_eq!(run.verdict, TC_ACT_OK, "flow {port} is served");
        assert_eq!(
            read::dst(&run.packet),
            LOCAL_POD,
            "flow {port} is translated"
        );
    }

    // Two maps (IPv4, IPv6) of 512 entries; these IPv4 flows fill only the first.
    let pressure = dp.ct_pressure().unwrap();
    assert_eq!(pressure.capacity, 1024);
    assert!(pressure.entries <= 512, "{pressure:?}");
    let ports: BTreeSet<u16> = dp
        .dump_ct()
        .unwrap()
        .iter()
        .filter(|e| e.dir == strait_ebpf_common::ct::CT_FORWARD)
        .map(|e| e.tuple.0.port())
        .collect();
    assert!(ports.contains(&12999), "the newest flow is tracked");
    assert!(!ports.contains(&10000), "the oldest flow was evicted");
    assert_eq!(
        drops(&dp, DropReason::CtWriteFailed),
        0,
        "eviction, not failure"
    );
}

#[test]
fn maglev_sends_a_flow_from_outside_to_the_same_backend_on_every_node() {
    let node = |pins: &PinDir| {
        Dataplane::load(DataplaneConfig {
            ct_entries: Some(4096),
            maglev_size: 1021,
            maglev_tables: 4,
            ..DataplaneConfig::new(pins.path())
        })
        .unwrap()
    };
    let (pins_a, pins_b) = (PinDir::new("strait-test-"), PinDir::new("strait-test-"));
    let (mut a, mut b) = (node(&pins_a), node(&pins_b));
    let backends = ["10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"];
    let mut external = service(30080, Protocol::Tcp, &backends);
    external.options.external = true;
    a.upsert_service(&external).unwrap();
    // Node B learned of other backends first and lists these in another order: its backend
    // ids differ, its choices must not.
    b.upsert_service(&service(81, Protocol::Tcp, &["10.244.9.9:80"]))
        .unwrap();
    external.backends.reverse();
    b.upsert_service(&external).unwrap();

    let mut used = BTreeSet::new();
    for port in 0..64 {
        let packet = Ipv4Packet::tcp((Ipv4Addr::new(198, 51, 100, 7), 20000 + port), (VIP, 30080))
            .build(b"");
        let on_a = read::dst(
            &a.test_run(PacketHook::FromNetdev, &packet, 1)
                .unwrap()
                .packet,
        );
        let on_b = read::dst(
            &b.test_run(PacketHook::FromNetdev, &packet, 1)
                .unwrap()
                .packet,
        );
        assert_eq!(
            on_a,
            on_b,
            "flow from port {} lands on one backend on both nodes",
            20000 + port
        );
        used.insert(on_a);
    }
    assert_eq!(
        used.len(),
        3,
        "the table spreads flows over every backend: {used:?}"
    );
}

#[test]
fn maps_of_another_layout_version_are_replaced_not_reused() {
    use aya::maps::{Array, Map, MapData};
    use strait_agent::dataplane::Adoption;
    use strait_ebpf_common::config::{LAYOUT_VERSION, NodeConfig};

    let pins = PinDir::new("strait-test-");
    {
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(80, Protocol::Tcp, &["10.244.1.2:8080"]))
            .unwrap();
    }
    // Pretend an agent of an older layout wrote these maps.
    let data = MapData::from_pin(pins.path().join("STRAIT_CONFIG")).unwrap();
    let mut config: Array<MapData, NodeConfig> =
        Array::try_from(Map::from_map_data(data).unwrap()).unwrap();
    let mut old = config.get(&0, 0).unwrap();
    old.layout_version = LAYOUT_VERSION - 1;
    config.set(0, old, 0).unwrap();
    drop(config);

    let dp = dataplane(&pins);

    assert_eq!(
        dp.adoption(),
        Adoption::Replaced {
            found: Some(LAYOUT_VERSION - 1)
        }
    );
    assert!(
        dp.dump_services().unwrap().is_empty(),
        "nothing of the old layout is read as ours"
    );
}

/// ICMP port unreachable: type 3, code 3.
const UNREACHABLE: (u8, u8) = (3, 3);

#[test]
fn icmp_errors_about_a_source_natted_flow_reach_the_client_in_its_own_terms() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(53, Protocol::Udp, &["10.244.2.2:5353"]))
        .unwrap();
    let query = Ipv4Packet::udp(CLIENT, (VIP, 53)).build(b"query");
    let sent = dp
        .test_run(PacketHook::FromNetdev, &query, 1)
        .unwrap()
        .packet;

    // The remote backend has nothing listening: it answers the node with port unreachable.
    let error = icmp_error(REMOTE_POD, NODE, UNREACHABLE.0, UNREACHABLE.1, &sent);
    let run = dp.test_run(PacketHook::FromNetdev, &error, 1).unwrap();

    let out = &run.packet;
    assert_eq!(
        (read::src(out), read::dst(out)),
        (VIP, CLIENT.0),
        "from the service, to the client"
    );
    let quoted = icmp_quoted(out);
    assert_eq!(
        read::tuple(&quoted),
        (CLIENT, (VIP, 53)),
        "quotes what the client sent"
    );
    assert!(ip_checksum_ok(out), "outer IP checksum");
    assert!(ip_checksum_ok(&quoted), "quoted IP checksum");
    assert!(
        icmp_checksum_ok(out),
        "ICMP checksum covers the rewritten quote"
    );
}

#[test]
fn icmp_errors_from_a_local_backend_or_a_router_are_translated_on_egress() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    dp.upsert_service(&service(53, Protocol::Udp, &["10.244.1.2:5353"]))
        .unwrap();
    let query = Ipv4Packet::udp(CLIENT, (VIP, 53)).build(b"query");
    let sent = dp
        .test_run(PacketHook::FromNetdev, &query, 1)
        .unwrap()
        .packet;
    let router = Ipv4Addr::new(10, 244, 1, 254);

    for (source, expected_source) in [(LOCAL_POD, VIP), (router, router)] {
        let error = icmp_error(source, CLIENT.0, 11, 0, &sent);
        let run = dp.test_run(PacketHook::ToNetdev, &error, 1).unwrap();
        let out = &run.packet;
        assert_eq!(
            read::src(out),
            expected_source,
            "the backend's own errors come from the service; a router keeps its address"
        );
        assert_eq!(read::tuple(&icmp_quoted(out)), (CLIENT, (VIP, 53)));
        assert!(
            ip_checksum_ok(out) && icmp_checksum_ok(out),
            "checksums after translation"
        );
    }
}

#[test]
fn icmp_errors_about_unknown_flows_pass_untouched() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    let stray = Ipv4Packet::udp(
        (Ipv4Addr::new(10, 1, 1, 1), 1234),
        (Ipv4Addr::new(10, 2, 2, 2), 53),
    )
    .build(b"x");
    let error = icmp_error(
        Ipv4Addr::new(10, 2, 2, 2),
        Ipv4Addr::new(10, 1, 1, 1),
        3,
        3,
        &stray,
    );

    for hook in [PacketHook::FromNetdev, PacketHook::ToNetdev] {
        let run = dp.test_run(hook, &error, 1).unwrap();
        assert_eq!(run.verdict, TC_ACT_OK);
        assert_eq!(run.packet, error, "{hook:?}: unchanged");
    }
}

#[test]
fn client_ip_affinity_in_the_per_packet_path_goes_by_source_address() {
    let pins = PinDir::new("strait-test-");
    let mut dp = dataplane(&pins);
    let mut spec = service(80, Protocol::Tcp, &["10.244.1.2:8080", "10.244.1.3:8080"]);
    spec.options.affinity_timeout = Some(10_800);
    dp.upsert_service(&spec).unwrap();
    let backend_for = |dp: &mut Dataplane, client: Ipv4Addr, port: u16| {
        let packet = Ipv4Packet::tcp((client, port), (VIP, 80)).build(b"");
        read::dst(
            &dp.test_run(PacketHook::FromNetdev, &packet, 1)
                .unwrap()
                .packet,
        )
    };

    // New flows (new source ports) from one client all land where its first flow did.
    let first = backend_for(&mut dp, CLIENT.0, 30000);
    for port in 30001..30032 {
        assert_eq!(
            backend_for(&mut dp, CLIENT.0, port),
            first,
            "flow from port {port}"
        );
    }
    // Other clients are spread over both backends.
    let spread: BTreeSet<Ipv4Addr> = (1..=32)
        .map(|host| backend_for(&mut dp, Ipv4Addr::new(10, 0, 9, host), 30000))
        .collect();
    assert_eq!(
        spread.len(),
        2,
        "32 clients all on one backend: probability 2^-31"
    );
}

mod ipv6 {
    //! The same path over IPv6: DNAT, SNAT to the node's IPv6 address, reverse translation.

    use std::net::Ipv6Addr;

    use strait_agent::dataplane::{
        Dataplane, DataplaneConfig, Frontend, PacketHook, Protocol, ServiceOptions, ServiceSpec,
    };
    use strait_tests::{
        PinDir,
        packet::{Ipv6Packet, icmp6_checksum, icmp6_error, icmp6_quoted, l4_checksum6, read6},
    };

    const TC_ACT_SHOT: u32 = 2;

    fn ip(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn client() -> (Ipv6Addr, u16) {
        (ip("2001:db8::7"), 40000)
    }

    fn vip() -> Ipv6Addr {
        ip("fd00:96::10")
    }

    fn dataplane(pins: &PinDir) -> Dataplane {
        Dataplane::load(DataplaneConfig {
            node_ipv6: Some(ip("fd00:77::2")),
            pod_cidrs: vec!["fd00:244:1::/64".parse().unwrap()],
            ct_entries: Some(4096),
            ..DataplaneConfig::new(pins.path())
        })
        .expect("load the dataplane")
    }

    fn service(port: u16, protocol: Protocol, backends: &[&str]) -> ServiceSpec {
        ServiceSpec {
            frontend: Frontend {
                address: vip().into(),
                port,
                protocol,
            },
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
            options: ServiceOptions::default(),
        }
    }

    fn assert_checksum(packet: &[u8], what: &str) {
        assert_eq!(
            read6::l4_checksum(packet),
            l4_checksum6(packet),
            "{what}: L4 checksum"
        );
    }

    #[test]
    fn tcp_to_an_ipv6_service_reaches_a_local_backend_and_replies_are_restored() {
        let pins = PinDir::new("strait-test-");
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(80, Protocol::Tcp, &["[fd00:244:1::2]:8080"]))
            .unwrap();

        let run = dp
            .test_run(
                PacketHook::FromNetdev,
                &Ipv6Packet::tcp(client(), (vip(), 80)).build(b"GET"),
                1,
            )
            .unwrap();
        assert_eq!(
            read6::tuple(&run.packet),
            (client(), (ip("fd00:244:1::2"), 8080))
        );
        assert_checksum(&run.packet, "after DNAT");

        let reply = Ipv6Packet::tcp((ip("fd00:244:1::2"), 8080), client()).build(b"OK");
        let run = dp.test_run(PacketHook::ToNetdev, &reply, 1).unwrap();
        assert_eq!(read6::tuple(&run.packet), ((vip(), 80), client()));
        assert_checksum(&run.packet, "after reverse NAT");
    }

    #[test]
    fn a_remote_ipv6_backend_is_source_natted_to_the_node_and_its_replies_restored() {
        let pins = PinDir::new("strait-test-");
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(53, Protocol::Udp, &["[fd00:244:2::2]:5353"]))
            .unwrap();

        let run = dp
            .test_run(
                PacketHook::FromNetdev,
                &Ipv6Packet::udp(client(), (vip(), 53)).build(b"q"),
                1,
            )
            .unwrap();
        let ((src, sport), dst) = read6::tuple(&run.packet);
        assert_eq!(src, ip("fd00:77::2"), "the node's IPv6 address");
        assert!(sport >= 61_000, "an SNAT port: {sport}");
        assert_eq!(dst, (ip("fd00:244:2::2"), 5353));
        assert_checksum(&run.packet, "after DNAT + SNAT");

        let reply =
            Ipv6Packet::udp((ip("fd00:244:2::2"), 5353), (ip("fd00:77::2"), sport)).build(b"a");
        let run = dp.test_run(PacketHook::FromNetdev, &reply, 1).unwrap();
        assert_eq!(read6::tuple(&run.packet), ((vip(), 53), client()));
        assert_checksum(&run.packet, "after reverse SNAT + DNAT");
        assert_eq!(
            dp.dump_ct().unwrap().len(),
            2,
            "one IPv6 entry per direction"
        );
    }

    #[test]
    fn an_ipv6_service_without_backends_drops() {
        let pins = PinDir::new("strait-test-");
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(80, Protocol::Tcp, &[])).unwrap();
        let run = dp
            .test_run(
                PacketHook::FromNetdev,
                &Ipv6Packet::tcp(client(), (vip(), 80)).build(b""),
                1,
            )
            .unwrap();
        assert_eq!(run.verdict, TC_ACT_SHOT);
    }

    #[test]
    fn maglev_agrees_across_nodes_for_ipv6_flows_too() {
        let node = |pins: &PinDir| {
            Dataplane::load(DataplaneConfig {
                ct_entries: Some(4096),
                maglev_size: 1021,
                maglev_tables: 4,
                ..DataplaneConfig::new(pins.path())
            })
            .unwrap()
        };
        let (pins_a, pins_b) = (PinDir::new("strait-test-"), PinDir::new("strait-test-"));
        let (mut a, mut b) = (node(&pins_a), node(&pins_b));
        let mut external = service(
            30080,
            Protocol::Tcp,
            &[
                "[fd00:244:1::2]:80",
                "[fd00:244:2::2]:80",
                "[fd00:244:3::2]:80",
            ],
        );
        external.options.external = true;
        a.upsert_service(&external).unwrap();
        b.upsert_service(&service(81, Protocol::Tcp, &["[fd00:244:9::9]:80"]))
            .unwrap();
        external.backends.reverse();
        b.upsert_service(&external).unwrap();

        let mut used = std::collections::BTreeSet::new();
        for port in 0..64 {
            let packet =
                Ipv6Packet::tcp((ip("2001:db8::9"), 20000 + port), (vip(), 30080)).build(b"");
            let on_a = read6::tuple(
                &a.test_run(PacketHook::FromNetdev, &packet, 1)
                    .unwrap()
                    .packet,
            )
            .1;
            let on_b = read6::tuple(
                &b.test_run(PacketHook::FromNetdev, &packet, 1)
                    .unwrap()
                    .packet,
            )
            .1;
            assert_eq!(
                on_a,
                on_b,
                "flow from port {} lands on one backend on both nodes",
                20000 + port
            );
            used.insert(on_a);
        }
        assert_eq!(used.len(), 3, "spread over every backend: {used:?}");
    }

    #[test]
    fn icmpv6_packet_too_big_about_a_source_natted_flow_reaches_the_client() {
        let pins = PinDir::new("strait-test-");
        let mut dp = dataplane(&pins);
        dp.upsert_service(&service(53, Protocol::Udp, &["[fd00:244:2::2]:5353"]))
            .unwrap();
        let query = Ipv6Packet::udp(client(), (vip(), 53)).build(b"query");
        let sent = dp
            .test_run(PacketHook::FromNetdev, &query, 1)
            .unwrap()
            .packet;

        // Packet too big (type 2), MTU 1280, from the remote backend to the node.
        let error = icmp6_error(ip("fd00:244:2::2"), ip("fd00:77::2"), 2, 0, 1280, &sent);
        let run = dp.test_run(PacketHook::FromNetdev, &error, 1).unwrap();

        let out = &run.packet;
        let (outer_src, outer_dst) = read6::tuple(out);
        assert_eq!(
            (outer_src.0, outer_dst.0),
            (vip(), client().0),
            "from the service, to the client"
        );
        assert_eq!(
            read6::tuple(&icmp6_quoted(out)),
            (client(), (vip(), 53)),
            "quotes what the client sent"
        );
        assert_eq!(
            read6::icmp6_checksum(out),
            icmp6_checksum(out),
            "ICMPv6 checksum, pseudo header included"
        );
    }
}
