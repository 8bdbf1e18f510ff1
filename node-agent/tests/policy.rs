//! Namespace tests of NetworkPolicy enforcement on real traffic: the tc programs on each pod's
//! host-side veth, the maps planned from `strait_policy` compilations, the flow records.
//!
//! ```text
//!   pod a netns                    node netns (router)                  pod b netns
//!   10.200.1.2 ── veth ── 10.200.1.1 [strait_from_pod / strait_to_pod]
//!                                    [strait_from_pod / strait_to_pod] 10.200.2.1 ── veth ── 10.200.2.2
//!                                                                                    :80 :81 (HTTP)
//! ```
//!
//! Pod a is `x/a` (app=a), pod b is `x/b` (app=b). Every case writes the maps from a policy
//! set and connects for real; denied connections time out (nc -w 1).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use strait_agent::dataplane::{
    Dataplane, DataplaneConfig,
    policy::{PolicyMaps, RuleTable, desired, diff},
};
use strait_ebpf_common::policy::{DIR_INGRESS, FlowRecord, RULE_DEFAULT_DENY, VERDICT_DENIED};
use strait_policy::{Cluster, Identities, Labels, NamedPort, PodInfo, Protocol, compile, parse};
use strait_tests::{EchoServer, HttpServer, Netns, PinDir, VethPair, http_get};

struct Topology {
    node: Arc<Netns>,
    a: Netns,
    b: Netns,
    link_a: VethPair,
    link_b: VethPair,
    _servers: Vec<HttpServer>,
    _pins: PinDir,
    dp: Dataplane,
    maps: PolicyMaps,
    rules: RuleTable,
    identities: Identities,
}

fn pod(name: &str, ip: &str) -> PodInfo {
    PodInfo {
        namespace: "x".into(),
        name: name.into(),
        labels: [("app".to_owned(), name.to_owned())].into(),
        ip: Some(ip.parse().unwrap()),
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
    }
}

impl Topology {
    fn new() -> Self {
        let node = Arc::new(Netns::new("pn"));
        let a = Netns::new("pa");
        let b = Netns::new("pb");
        let link_a = VethPair::new(&a, "10.200.1.2/24", &node, "10.200.1.1/24");
        let link_b = VethPair::new(&b, "10.200.2.2/24", &node, "10.200.2.1/24");
        a.route(&["default", "via", "10.200.1.1"]);
        b.route(&["default", "via", "10.200.2.1"]);
        node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let servers = vec![
            HttpServer::start(&b, "10.200.2.2:80".parse().unwrap(), "b:80\n"),
            HttpServer::start(&b, "10.200.2.2:81".parse().unwrap(), "b:81\n"),
            HttpServer::start(&a, "10.200.1.2:80".parse().unwrap(), "a:80\n"),
        ];
        let pins = PinDir::new("strait-test-");
        let mut dp = Dataplane::load(DataplaneConfig {
            ct_entries: Some(4096),
            ..DataplaneConfig::new(pins.path())
        })
        .expect("load the dataplane");
        let (host_a, host_b) = (link_a.b.ifname.clone(), link_b.b.ifname.clone());
        let dp = node.run(move || {
            dp.attach_endpoint(&host_a).expect("attach to a's veth");
            dp.attach_endpoint(&host_b).expect("attach to b's veth");
            dp
        });
        Self {
            node,
            a,
            b,
            link_a,
            link_b,
            _servers: servers,
            _pins: pins,
            dp,
            maps: PolicyMaps::default(),
            rules: RuleTable::default(),
            identities: Identities::default(),
        }
    }

    fn ifindex(&self, ifname: &str) -> u32 {
        let out = self
            .node
            .exec_ok(&["cat", &format!("/sys/class/net/{ifname}/ifindex")]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// Programs `policies` (NetworkPolicy specs in namespace x) as the agent would.
    fn program(&mut self, policies: &[Value]) {
        let namespaces: BTreeMap<String, Labels> = [("x".to_owned(), Labels::new())].into();
        let policies: Vec<_> = policies
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let np: NetworkPolicy = serde_json::from_value(
                    json!({"metadata": {"name": format!("p{i}"), "namespace": "x"}, "spec": spec}),
                )
                .unwrap();
                parse(&np).unwrap()
            })
            .collect();
        let pods = [pod("a", "10.200.1.2"), pod("b", "10.200.2.2")];
        let cluster = Cluster {
            namespaces: &namespaces,
            pods: &pods,
            policies: &policies,
        };
        let compiled = compile(&cluster, &mut self.identities, |_| true);
        let local: BTreeMap<String, u32> = [
            ("x/a".to_owned(), self.ifindex(&self.link_a.b.ifname)),
            ("x/b".to_owned(), self.ifindex(&self.link_b.b.ifname)),
        ]
        .into();
        let host: [Ipv4Addr; 2] = ["10.200.1.1".parse().unwrap(), "10.200.2.1".parse().unwrap()];
        let new = desired(&compiled, &local, &host, &mut self.rules);
        let ops = diff(&self.maps, &new);
        self.dp.apply_policy(&ops).expect("write the policy maps");
        assert_eq!(self.dp.policy_maps().expect("read the maps back"), new);
        self.maps = new;
    }

    fn a_to_b(&self, port: u16) -> bool {
        http_get(&self.a, None, &format!("10.200.2.2:{port}")).is_ok()
    }

    fn a_pings_b(&self) -> bool {
        self.a
            .exec(&["busybox", "ping", "-c", "1", "-W", "1", "10.200.2.2"])
            .status
            .success()
    }

    fn b_to_a(&self) -> bool {
        http_get(&self.b, None, "10.200.1.2:80").is_ok()
    }
}

#[test]
fn policies_allow_and_deny_real_connections_and_replies_pass() {
    let mut t = Topology::new();
    t.program(&[]);
    assert!(
        t.a_to_b(80) && t.a_to_b(81) && t.b_to_a(),
        "no policy: everything connects"
    );

    // Default deny into b: a cannot reach it, b still reaches a (its replies come back).
    t.program(&[json!({"podSelector": {"matchLabels": {"app": "b"}}})]);
    assert!(!t.a_to_b(80) && !t.a_to_b(81));
    assert!(t.b_to_a(), "b's own connections and their replies pass");

    assert!(!t.a_pings_b(), "ICMP is judged too: b is isolated");

    // A rule without ports admits every protocol from its peers, ICMP included.
    t.program(&[json!({"podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]})]);
    assert!(t.a_pings_b() && t.a_to_b(81));

    // Allow a into b on port 80 only.
    t.program(&[json!({"podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": "http"}]}]})]);
    assert!(t.a_to_b(80));
    assert!(!t.a_to_b(81));
    assert!(!t.a_pings_b(), "a rule with ports admits no ICMP");

    // Egress: a may only talk to b on 81 (and b's ingress allows all).
    t.program(&[json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": 81}]}]})]);
    assert!(!t.a_to_b(80) && t.a_to_b(81));
    assert!(
        t.b_to_a(),
        "a's ingress is not isolated; its replies to b pass"
    );

    // ipBlock except: a may reach 10.200.0.0/16 but not b's /32.
    t.program(&[
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.200.0.0/16", "except": ["10.200.2.2/32"]}}]}]}),
    ]);
    assert!(!t.a_to_b(80));
    t.program(&[
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.200.2.0/24"}}]}]}),
    ]);
    assert!(t.a_to_b(80));

    // Back to no policy.
    t.program(&[]);
    assert!(t.a_to_b(80) && t.a_to_b(81));
}

#[test]
fn the_node_reaches_isolated_pods_and_established_connections_survive_a_new_deny() {
    let mut t = Topology::new();
    let echo = EchoServer::start(&t.b, "10.200.2.2:7000".parse().unwrap());
    t.program(&[]);
    // A long-lived connection from a to b, opened while nothing isolates b.
    let mut stream = t.a.run(|| {
        std::net::TcpStream::connect_timeout(
            &"10.200.2.2:7000".parse::<SocketAddr>().unwrap(),
            Duration::from_secs(2),
        )
        .expect("connect to the echo server")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let roundtrip = |stream: &mut std::net::TcpStream| {
        use std::io::{Read as _, Write as _};
        stream.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        stream
            .read_exact(&mut buf)
            .map(|()| buf == *b"ping")
            .unwrap_or(false)
    };
    assert!(roundtrip(&mut stream));

    t.program(&[json!({"podSelector": {"matchLabels": {"app": "b"}}})]);
    // The node (kubelet probes) still reaches b; a new connection from a does not.
    assert!(
        http_get(&t.node, None, "10.200.2.2:80").is_ok(),
        "the node reaches its pod"
    );
    assert!(!t.a_to_b(80));
    // Documented behaviour (as Cilium's): a connection allowed before the policy keeps
    // flowing until it ends or idles out; the verdict is cached in the policy conntrack.
    assert!(
        roundtrip(&mut stream),
        "the established connection keeps flowing"
    );
    drop(echo);
}

#[test]
fn every_verdict_reaches_the_flow_ring_buffer_with_its_rule() {
    let mut t = Topology::new();
    t.program(&[json!({"podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}]})]);
    let (mut flows, lost) = t.dp.take_flows().expect("the flow ring buffer");
    assert!(t.a_to_b(80));
    assert!(!t.a_to_b(81));
    assert!(!t.a_pings_b(), "a rule with ports admits no ICMP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut records = Vec::new();
    while Instant::now() < deadline && records.len() < 4 {
        while let Some(item) = flows.next() {
            let record = FlowRecord::from_bytes(&item).expect("a whole flow record");
            records.push(record);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let b_ip = u32::from_ne_bytes([10, 200, 2, 2]);
    let into_b: Vec<_> = records
        .iter()
        .filter(|r| r.daddr == b_ip && r.direction == DIR_INGRESS)
        .collect();
    let allowed = into_b
        .iter()
        .find(|r| u16::from_be(r.dport) == 80)
        .expect("the allowed flow");
    let rule = t.rules.rule(allowed.rule).expect("a known rule");
    assert_eq!((rule.policy.as_str(), rule.index), ("x/p0", 0));
    let denied = into_b
        .iter()
        .find(|r| u16::from_be(r.dport) == 81)
        .expect("the denied flow");
    assert_eq!(
        (denied.verdict, denied.rule),
        (VERDICT_DENIED, RULE_DEFAULT_DENY)
    );
    let lost: u64 = lost.get(&0, 0).expect("the loss counter").iter().sum();
    assert_eq!(lost, 0, "the ring buffer had room for every record");
    let drops = t.dp.drops().expect("drop counters");
    assert!(
        drops
            .iter()
            .any(|d| d.reason.name() == "policy-denied" && d.packets > 0),
        "{drops:?}"
    );
}

/// One HTTP exchange from pod a's fixed source `port` to b:80: the server answers and closes
/// first, then the client closes. `Err` when no connection is made within 2 s.
fn a_to_b_from_port(a: &Netns, port: u16) -> Result<String, String> {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    use std::io::{Read as _, Write as _};

    let local = SocketAddr::from(([10, 200, 1, 2], port));
    let remote = SocketAddr::from(([10, 200, 2, 2], 80));
    a.run(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        let socket = loop {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(SockProtocol::TCP))
                .map_err(|e| format!("socket: {e}"))?;
            socket
                .set_reuse_address(true)
                .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
            socket
                .bind(&local.into())
                .map_err(|e| format!("bind {local}: {e}"))?;
            match socket.connect_timeout(&remote.into(), Duration::from_secs(2)) {
                Ok(()) => break socket,
                // The client's end of the previous connection of this tuple may not have
                // finished closing yet (LAST_ACK): the kernel refuses the tuple until it has.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrNotAvailable
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("connect {local} → {remote}: {e}")),
            }
        };
        let mut stream = std::net::TcpStream::from(socket);
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: b\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("receive: {e}"))?;
        Ok(response)
    })
}

#[test]
fn a_new_connection_reusing_a_closing_tuple_is_judged_again() {
    const PORT: u16 = 40123;
    let allow_a = json!({"podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}]});
    let mut t = Topology::new();
    let (mut flows, _lost) = t.dp.take_flows().expect("the flow ring buffer");
    t.program(std::slice::from_ref(&allow_a));
    let response = a_to_b_from_port(&t.a, PORT).expect("a reaches b while allowed");
    assert!(response.ends_with("b:80\n"), "{response:?}");

    // The connection has closed (FIN both ways), so its policy conntrack entries are closing
    // and live on for seconds. A new connection of the same tuple within that time is a new
    // connection, judged by the policy of now: b denies everything.
    t.program(&[json!({"podSelector": {"matchLabels": {"app": "b"}}})]);
    while flows.next().is_some() {}
    let denied = a_to_b_from_port(&t.a, PORT);
    assert!(
        denied.is_err(),
        "the reopened tuple must be denied by the new policy, got {denied:?}"
    );
    let b_ip = u32::from_ne_bytes([10, 200, 2, 2]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut verdicts = Vec::new();
    while Instant::now() < deadline && !verdicts.contains(&VERDICT_DENIED) {
        while let Some(item) = flows.next() {
            let record = FlowRecord::from_bytes(&item).expect("a whole flow record");
            if record.daddr == b_ip
                && u16::from_be(record.sport) == PORT
                && record.direction == DIR_INGRESS
            {
                verdicts.push(record.verdict);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        verdicts.contains(&VERDICT_DENIED),
        "a denied flow is reported for the reopened tuple: {verdicts:?}"
    );

    // Allowed again: the same tuple connects once more (its verdict judged afresh).
    t.program(&[allow_a]);
    let response = a_to_b_from_port(&t.a, PORT).expect("a reaches b from the same port again");
    assert!(response.ends_with("b:80\n"), "{response:?}");
}
