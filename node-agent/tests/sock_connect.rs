//! Namespace tests of socket-level service translation (cgroup `connect4`), on real traffic.
//!
//! ```text
//!   client netns, in a test cgroup              backend netns
//!   10.0.1.1 ──────────── veth pair ─────────── 10.0.1.2:8080 "backend-a"
//!                                               10.0.1.3:8080 "backend-b"
//!   wget http://10.96.0.10:80 ─[connect4]─▶ a backend
//! ```
//!
//! The client is busybox nc run inside the client namespace and the test's cgroup. Without
//! the program nothing routes the service address, so the negative controls fail to connect.

use std::{collections::BTreeSet, net::SocketAddr};

use strait_agent::dataplane::{
    Dataplane, DataplaneConfig, Frontend, Protocol, ServiceOptions, ServiceSpec,
};
use strait_tests::{Cgroup, HttpServer, Netns, PinDir, UdpEchoServer, VethPair, http_get};

const VIP: &str = "10.96.0.10";
const VIP_80: &str = "10.96.0.10:80";

struct Topology {
    client: Netns,
    backends: Netns,
    _link: VethPair,
    cgroup: Cgroup,
    pins: PinDir,
}

impl Topology {
    fn new() -> Self {
        let client = Netns::new("sc");
        let backends = Netns::new("sb");
        let link = VethPair::new(&client, "10.0.1.1/24", &backends, "10.0.1.2/24");
        backends.exec_ok(&["ip", "addr", "add", "10.0.1.3/24", "dev", &link.b.ifname]);
        Self {
            client,
            backends,
            _link: link,
            cgroup: Cgroup::new("strait-t"),
            pins: PinDir::new("strait-test-"),
        }
    }

    fn dataplane(&self) -> Dataplane {
        let mut dp = Dataplane::load(DataplaneConfig {
            ct_entries: Some(4096),
            ..DataplaneConfig::new(self.pins.path())
        })
        .expect("load the dataplane");
        dp.attach_cgroup(self.cgroup.path())
            .expect("attach connect4");
        dp
    }

    /// Runs a Python snippet as a client in the client namespace and cgroup; returns its
    /// trimmed stdout, or panics with its stderr.
    fn python(&self, script: &str) -> String {
        let out = self
            .client
            .exec_in_cgroup(self.cgroup.path(), &["python3", "-c", script]);
        assert!(
            out.status.success(),
            "client script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// GET / from `target` in the client namespace and cgroup: Ok(body) or Err(client error).
    fn get(&self, target: &str) -> Result<String, String> {
        http_get(&self.client, Some(self.cgroup.path()), target)
    }
}

fn service(port: u16, backends: &[&str]) -> ServiceSpec {
    service_proto(port, Protocol::Tcp, backends)
}

fn service_proto(port: u16, protocol: Protocol, backends: &[&str]) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: VIP.parse().unwrap(),
            port,
            protocol,
        },
        backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        options: ServiceOptions::default(),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn a_client_reaches_the_backend_through_the_service_address() {
    let topo = Topology::new();
    let server = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.2:8080"])).unwrap();

    let body = topo.get(VIP_80).expect("the service answers");

    assert_eq!(body, "backend-a\n");
    assert_eq!(
        server.requests(),
        1,
        "the backend saw exactly the one connection"
    );
}

#[test]
fn connections_spread_over_every_backend() {
    let topo = Topology::new();
    let _a = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let _b = HttpServer::start(&topo.backends, addr("10.0.1.3:8080"), "backend-b\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.2:8080", "10.0.1.3:8080"]))
        .unwrap();

    let bodies: BTreeSet<String> = (0..24)
        .map(|_| topo.get(VIP_80).expect("the service answers"))
        .collect();

    // 24 random picks all on one of two backends: probability 2^-23.
    assert_eq!(
        bodies,
        BTreeSet::from(["backend-a\n".to_owned(), "backend-b\n".to_owned()])
    );
}

#[test]
fn without_the_program_the_service_address_leads_nowhere() {
    let topo = Topology::new();
    let server = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.2:8080"])).unwrap();
    assert!(topo.get(VIP_80).is_ok(), "works while attached");

    dp.detach_cgroups().unwrap();
    let err = topo
        .get(VIP_80)
        .expect_err("no route to the service address");

    assert!(
        err.contains("unreachable"),
        "the client should fail to route: {err}"
    );
    assert_eq!(
        server.requests(),
        1,
        "only the attached request reached the backend"
    );
}

#[test]
fn a_service_without_backends_refuses_the_connection() {
    let topo = Topology::new();
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &[])).unwrap();

    let err = topo.get(VIP_80).expect_err("nothing to connect to");

    assert!(
        err.contains("refused"),
        "connect should fail with ECONNREFUSED: {err}"
    );
}

#[test]
fn a_backend_change_is_one_map_update_away() {
    let topo = Topology::new();
    let _a = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let _b = HttpServer::start(&topo.backends, addr("10.0.1.3:8080"), "backend-b\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.2:8080"])).unwrap();
    assert_eq!(topo.get(VIP_80).unwrap(), "backend-a\n");

    dp.upsert_service(&service(80, &["10.0.1.3:8080"])).unwrap();

    assert_eq!(topo.get(VIP_80).unwrap(), "backend-b\n");
}

#[test]
fn getpeername_shows_the_service_address_not_the_backend() {
    let topo = Topology::new();
    let _server = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.2:8080"])).unwrap();

    let peer = topo.python(
        "import socket\n\
         s = socket.create_connection(('10.96.0.10', 80), timeout=3)\n\
         print('%s:%d' % s.getpeername())",
    );

    assert_eq!(peer, "10.96.0.10:80");
}

#[test]
fn unconnected_udp_is_translated_per_message_and_replies_come_from_the_service() {
    let topo = Topology::new();
    let _echo = UdpEchoServer::start(&topo.backends, addr("10.0.1.2:5353"));
    let mut dp = topo.dataplane();
    dp.upsert_service(&service_proto(53, Protocol::Udp, &["10.0.1.2:5353"]))
        .unwrap();

    // sendto() without connect(): the sendmsg4 hook translates, recvmsg4 restores.
    let answer = topo.python(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(3)\n\
         s.sendto(b'hello', ('10.96.0.10', 53))\n\
         data, peer = s.recvfrom(100)\n\
         print(data.decode(), '%s:%d' % peer)",
    );

    assert_eq!(
        answer, "hello 10.96.0.10:53",
        "the reply is shown as coming from the service"
    );
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend() {
    let topo = Topology::new();
    let _a = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let _b = HttpServer::start(&topo.backends, addr("10.0.1.3:8080"), "backend-b\n");
    let mut dp = topo.dataplane();
    let mut spec = service(80, &["10.0.1.2:8080", "10.0.1.3:8080"]);
    spec.options.affinity_timeout = Some(10_800);
    dp.upsert_service(&spec).unwrap();

    let bodies: BTreeSet<String> = (0..12)
        .map(|_| topo.get(VIP_80).expect("the service answers"))
        .collect();

    // Without affinity, 12 picks landing on one of two backends has probability 2^-11.
    assert_eq!(
        bodies.len(),
        1,
        "every connection went to the same backend: {bodies:?}"
    );
}

/// The same topology with IPv6 addresses on the veth pair.
fn ipv6_topology() -> Topology {
    let client = Netns::new("sc");
    let backends = Netns::new("sb");
    let link = VethPair::new(&client, "fd00:1::1/64", &backends, "fd00:1::2/64");
    Topology {
        client,
        backends,
        _link: link,
        cgroup: Cgroup::new("strait-t"),
        pins: PinDir::new("strait-test-"),
    }
}

fn service6(port: u16, protocol: Protocol, backends: &[&str]) -> ServiceSpec {
    ServiceSpec {
        frontend: Frontend {
            address: "fd00:96::10".parse().unwrap(),
            port,
            protocol,
        },
        backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        options: ServiceOptions::default(),
    }
}

#[test]
fn ipv6_clients_reach_the_backend_through_the_service_and_see_it_as_their_peer() {
    let topo = ipv6_topology();
    let server = HttpServer::start(&topo.backends, addr("[fd00:1::2]:8080"), "backend-v6\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service6(80, Protocol::Tcp, &["[fd00:1::2]:8080"]))
        .unwrap();

    let answer = topo.python(
        "import socket\n\
         s = socket.create_connection(('fd00:96::10', 80), timeout=3)\n\
         s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
         body = b''\n\
         while True:\n\
         \x20   chunk = s.recv(4096)\n\
         \x20   if not chunk: break\n\
         \x20   body += chunk\n\
         peer = s.getpeername()\n\
         print('[%s]:%d' % peer[:2], body.split(b'\\r\\n\\r\\n', 1)[1].decode().strip())",
    );

    assert_eq!(answer, "[fd00:96::10]:80 backend-v6");
    assert_eq!(server.requests(), 1);
}

#[test]
fn ipv6_unconnected_udp_is_translated_and_answered_from_the_service() {
    let topo = ipv6_topology();
    let _echo = UdpEchoServer::start(&topo.backends, addr("[fd00:1::2]:5353"));
    let mut dp = topo.dataplane();
    dp.upsert_service(&service6(53, Protocol::Udp, &["[fd00:1::2]:5353"]))
        .unwrap();

    let answer = topo.python(
        "import socket\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         s.settimeout(3)\n\
         s.sendto(b'hello6', ('fd00:96::10', 53))\n\
         data, peer = s.recvfrom(100)\n\
         print(data.decode(), '[%s]:%d' % peer[:2])",
    );

    assert_eq!(answer, "hello6 [fd00:96::10]:53");
}

#[test]
fn an_ipv6_service_without_backends_refuses_the_connection() {
    let topo = ipv6_topology();
    let mut dp = topo.dataplane();
    dp.upsert_service(&service6(80, Protocol::Tcp, &[]))
        .unwrap();

    let answer = topo.python(
        "import socket\n\
         try:\n\
         \x20   socket.create_connection(('fd00:96::10', 80), timeout=3)\n\
         \x20   print('connected')\n\
         except ConnectionRefusedError:\n\
         \x20   print('refused')",
    );

    assert_eq!(answer, "refused");
}

#[test]
fn a_pod_reaches_its_own_service_hairpin() {
    let topo = Topology::new();
    // The client namespace serves the service itself.
    let _own = HttpServer::start(&topo.client, addr("10.0.1.1:8080"), "myself\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.1:8080"])).unwrap();

    assert_eq!(
        topo.get(VIP_80).expect("the pod reaches itself"),
        "myself\n"
    );
}

#[test]
fn removing_a_backend_keeps_its_open_connections_and_moves_new_ones() {
    use std::io::{BufRead as _, BufReader};

    let topo = Topology::new();
    let _a = strait_tests::EchoServer::start(&topo.backends, addr("10.0.1.2:8080"));
    let _b = HttpServer::start(&topo.backends, addr("10.0.1.3:8080"), "backend-b\n");
    let mut dp = topo.dataplane();
    dp.upsert_service(&service(80, &["10.0.1.2:8080"])).unwrap();
    let go = std::env::temp_dir().join(strait_tests::unique_name("strait-go-"));

    // A client holds a connection open across the change: ping, wait for the go file, ping.
    let script = format!(
        "import os, socket, time\n\
         s = socket.create_connection(('10.96.0.10', 80), timeout=3)\n\
         s.sendall(b'one'); first = s.recv(3)\n\
         print('connected', flush=True)\n\
         while not os.path.exists('{}'): time.sleep(0.01)\n\
         s.sendall(b'two'); second = s.recv(3)\n\
         print(first.decode(), second.decode())",
        go.display()
    );
    let mut child = topo
        .client
        .command_in_cgroup(topo.cgroup.path(), &["python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the client");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "connected");

    dp.upsert_service(&service(80, &["10.0.1.3:8080"])).unwrap();
    std::fs::write(&go, "").unwrap();
    let last = lines.next().unwrap().unwrap();
    let _ = std::fs::remove_file(&go);
    child.wait().unwrap();

    assert_eq!(
        last, "one two",
        "the open connection still reaches the removed backend"
    );
    assert_eq!(
        topo.get(VIP_80).unwrap(),
        "backend-b\n",
        "new connections go to the new one"
    );
}

#[test]
fn an_agent_that_stops_before_attaching_leaves_the_running_dataplane_alone() {
    let topo = Topology::new();
    let _server = HttpServer::start(&topo.backends, addr("10.0.1.2:8080"), "backend-a\n");
    let mut first = topo.dataplane();
    first
        .upsert_service(&service(80, &["10.0.1.2:8080"]))
        .unwrap();
    drop(first);

    // A new agent loads (adopting the pins) and then dies before attaching anything.
    let second = Dataplane::load(DataplaneConfig {
        ct_entries: Some(4096),
        ..DataplaneConfig::new(topo.pins.path())
    })
    .unwrap();
    drop(second);

    assert_eq!(topo.get(VIP_80).expect("still served"), "backend-a\n");
}

#[test]
fn an_oversized_maglev_configuration_is_refused_before_anything_is_loaded() {
    let pins = PinDir::new("strait-test-");
    let err = Dataplane::load(DataplaneConfig {
        maglev_size: 131_071,
        maglev_tables: u16::MAX,
        ..DataplaneConfig::new(pins.path())
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("65535 Maglev tables of 131071 entries"),
        "{err}"
    );
}
