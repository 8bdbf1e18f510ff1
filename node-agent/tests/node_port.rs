//! Namespace tests of NodePort traffic from outside the cluster, on real traffic through the
//! per-packet path on node 1's uplink.
//!
//! ```text
//!                      underlay bridge (own netns)
//!        ┌───────────────────┼──────────────────────┐
//!   client 192.168.77.1   node1 192.168.77.2     node2 192.168.77.3
//!                          [tc on uplink]            │
//!                            │ 10.244.1.1            │ 10.244.2.1
//!                          pod1 10.244.1.2         pod2 10.244.2.2
//!
//!   NodePort 192.168.77.2:30080 → pod1:8080 (local) or pod2:8080 (remote: SNAT to node1)
//! ```
//!
//! The client has no route beyond the underlay: a reply that is not restored to come from
//! 192.168.77.2:30080 is refused by its TCP, so a body in hand proves the reverse path.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use strait_agent::dataplane::{
    Adoption, Dataplane, DataplaneConfig, Frontend, Protocol, ServiceOptions, ServiceSpec,
};
use strait_tests::{EchoServer, HttpServer, Netns, PinDir, VethPair, http_get, plug_into_bridge};

const NODE1: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const NODE_PORT: &str = "192.168.77.2:30080";

struct Cluster {
    client: Netns,
    node1: Netns,
    pod1: Netns,
    pod2: Netns,
    uplink1: String,
    pins: PinDir,
    // Kept for their lifetime: dropping a namespace removes its links and routes.
    _links: Vec<VethPair>,
    _others: Vec<Netns>,
}

impl Cluster {
    fn new() -> Self {
        let underlay = Netns::new("ul");
        underlay.add_bridge("br0");
        let client = Netns::new("cl");
        let node1 = Netns::new("n1");
        let node2 = Netns::new("n2");
        let pod1 = Netns::new("p1");
        let pod2 = Netns::new("p2");
        let links = vec![
            plug_into_bridge(&client, "192.168.77.1/24", &underlay, "br0"),
            plug_into_bridge(&node1, "192.168.77.2/24", &underlay, "br0"),
            plug_into_bridge(&node2, "192.168.77.3/24", &underlay, "br0"),
            VethPair::new(&pod1, "10.244.1.2/24", &node1, "10.244.1.1/24"),
            VethPair::new(&pod2, "10.244.2.2/24", &node2, "10.244.2.1/24"),
        ];
        pod1.route(&["default", "via", "10.244.1.1"]);
        pod2.route(&["default", "via", "10.244.2.1"]);
        node1.route(&["10.244.2.0/24", "via", "192.168.77.3"]);
        node2.route(&["10.244.1.0/24", "via", "192.168.77.2"]);
        // Node 1 sends replies of remote backends back out of the interface they came in on;
        // that is intended, not a reason for ICMP redirects.
        node1.exec_ok(&["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"]);
        let uplink1 = links[1].a.ifname.clone();
        Self {
            client,
            node1,
            pod1,
            pod2,
            uplink1,
            pins: PinDir::new("strait-test-"),
            _links: links,
            _others: vec![underlay, node2],
        }
    }

    /// Adds IPv6 addresses and routes beside the IPv4 ones: underlay fd00:77::/64, pods
    /// fd00:244:1::2 and fd00:244:2::2.
    fn enable_ipv6(&self) {
        let [client, node1, node2, pod1, pod2] = &self._links[..] else {
            unreachable!("five links");
        };
        for (end, cidr) in [
            (&client.a, "fd00:77::1/64"),
            (&node1.a, "fd00:77::2/64"),
            (&node2.a, "fd00:77::3/64"),
            (&pod1.a, "fd00:244:1::2/64"),
            (&pod1.b, "fd00:244:1::1/64"),
            (&pod2.a, "fd00:244:2::2/64"),
            (&pod2.b, "fd00:244:2::1/64"),
        ] {
            strait_tests::cmd::run(&[
                "ip",
                "-n",
                &end.netns,
                "addr",
                "add",
                cidr,
                "dev",
                &end.ifname,
                "nodad",
            ]);
        }
        self.pod1.route(&["default", "via", "fd00:244:1::1"]);
        self.pod2.route(&["default", "via", "fd00:244:2::1"]);
        self.node1.route(&["fd00:244:2::/64", "via", "fd00:77::3"]);
        let node2 = &self._others[1];
        node2.route(&["fd00:244:1::/64", "via", "fd00:77::2"]);
        for ns in [&self.node1, node2] {
            ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        }
    }

    /// Node 1's agent: loads (or adopts) the dataplane and attaches it to the uplink from
    /// inside node 1's namespace.
    fn agent(&self) -> Dataplane {
        let mut dp = Dataplane::load(DataplaneConfig {
            node_ipv4: Some(NODE1),
            node_ipv6: Some("fd00:77::2".parse().unwrap()),
            pod_cidrs: vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:244:1::/64".parse().unwrap(),
            ],
            ct_entries: Some(4096),
            ..DataplaneConfig::new(self.pins.path())
        })
        .expect("load the dataplane");
        let uplink = self.uplink1.clone();
        self.node1.run(move || {
            dp.attach_netdev(&uplink)
                .expect("attach to node 1's uplink");
            dp
        })
    }
}

fn node_port(backends: &[&str], local_only: bool) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: NODE1.into(),
            port: 30080,
            protocol: Protocol::Tcp,
        },
        backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        options: ServiceOptions {
            external: true,
            local_only,
            affinity_timeout: None,
        },
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn node_port_reaches_a_local_backend_and_the_reply_comes_from_the_node_port() {
    let cluster = Cluster::new();
    let server = HttpServer::start(&cluster.pod1, addr("10.244.1.2:8080"), "pod-1\n");
    let mut dp = cluster.agent();
    dp.upsert_service(&node_port(&["10.244.1.2:8080"], false))
        .unwrap();

    let body = http_get(&cluster.client, None, NODE_PORT).expect("the NodePort answers");

    assert_eq!(body, "pod-1\n");
    assert_eq!(server.requests(), 1);
}

#[test]
fn node_port_reaches_a_backend_on_another_node_through_snat() {
    let cluster = Cluster::new();
    let server = HttpServer::start(&cluster.pod2, addr("10.244.2.2:8080"), "pod-2\n");
    let mut dp = cluster.agent();
    dp.upsert_service(&node_port(&["10.244.2.2:8080"], false))
        .unwrap();

    let body = http_get(&cluster.client, None, NODE_PORT).expect("the NodePort answers");

    assert_eq!(body, "pod-2\n");
    let peers = server.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0].ip(),
        NODE1,
        "the remote backend sees node 1, so it replies through it"
    );
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let cluster = Cluster::new();
    let server = HttpServer::start(&cluster.pod1, addr("10.244.1.2:8080"), "pod-1\n");
    let mut dp = cluster.agent();
    dp.upsert_service(&node_port(&["10.244.1.2:8080"], true))
        .unwrap();

    http_get(&cluster.client, None, NODE_PORT).expect("the NodePort answers");

    assert_eq!(
        server.peers()[0].ip(),
        CLIENT,
        "the backend sees the real client"
    );
}

#[test]
fn an_established_connection_survives_an_agent_restart() {
    let cluster = Cluster::new();
    let _echo = EchoServer::start(&cluster.pod2, addr("10.244.2.2:8080"));
    let mut dp = cluster.agent();
    dp.upsert_service(&node_port(&["10.244.2.2:8080"], false))
        .unwrap();

    let mut stream = cluster
        .client
        .run(|| TcpStream::connect_timeout(&addr(NODE_PORT), Duration::from_secs(2)))
        .expect("connect to the NodePort");
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut round_trip = |i: u32| {
        let message = format!("ping {i:04}\n");
        let start = Instant::now();
        stream.write_all(message.as_bytes()).expect("write");
        let mut echoed = vec![0u8; message.len()];
        stream
            .read_exact(&mut echoed)
            .unwrap_or_else(|e| panic!("round trip {i} stalled or failed: {e}"));
        assert_eq!(echoed, message.as_bytes());
        start.elapsed()
    };
    for i in 0..5 {
        round_trip(i);
    }

    // The agent exits (its programs and maps stay pinned) and a new one takes over.
    drop(dp);
    let mid = round_trip(5);
    let mut restarted = cluster.agent();
    assert_eq!(
        restarted.adoption(),
        Adoption::Adopted,
        "the new agent reuses the pinned maps"
    );
    restarted.release_previous();
    let mut worst = mid;
    for i in 6..12 {
        worst = worst.max(round_trip(i));
    }

    assert!(
        worst < Duration::from_secs(1),
        "no round trip stalled: worst {worst:?}"
    );
    let services = restarted.dump_services().unwrap();
    assert_eq!(
        services.len(),
        1,
        "the service survived the restart: {services:?}"
    );
}

/// GET / from `[address]:port` with Python from the client namespace; the body or an error.
fn get6(cluster: &Cluster, address: &str, port: u16) -> Result<String, String> {
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('{address}', {port}), timeout=3)\n\
         s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   chunk = s.recv(4096)\n\
         \x20   if not chunk: break\n\
         \x20   data += chunk\n\
         print(data.split(b'\\r\\n\\r\\n', 1)[1].decode(), end='')"
    );
    let out = cluster.client.exec(&["python3", "-c", &script]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn node_port6(backends: &[&str]) -> ServiceSpec {
    let mut spec = node_port(backends, false);
    spec.frontend.address = "fd00:77::2".parse().unwrap();
    spec
}

#[test]
fn ipv6_node_port_reaches_local_and_remote_backends() {
    let cluster = Cluster::new();
    cluster.enable_ipv6();
    let _local = HttpServer::start(&cluster.pod1, addr("[fd00:244:1::2]:8080"), "pod-1 v6\n");
    let remote = HttpServer::start(&cluster.pod2, addr("[fd00:244:2::2]:8080"), "pod-2 v6\n");
    let mut dp = cluster.agent();

    dp.upsert_service(&node_port6(&["[fd00:244:1::2]:8080"]))
        .unwrap();
    assert_eq!(get6(&cluster, "fd00:77::2", 30080).unwrap(), "pod-1 v6\n");

    dp.upsert_service(&node_port6(&["[fd00:244:2::2]:8080"]))
        .unwrap();
    assert_eq!(get6(&cluster, "fd00:77::2", 30080).unwrap(), "pod-2 v6\n");
    assert_eq!(
        remote.peers()[0].ip().to_string(),
        "fd00:77::2",
        "the remote backend sees node 1's IPv6 address"
    );
}
