//! Cluster tier: a control plane, two real agents, and a strait-dns on each node in the
//! node's namespace, registered behind `kube-system/kube-dns`. A busybox pod resolves a
//! Service through its ClusterFirst resolv.conf (10.96.0.10, the search path), which the
//! eBPF dataplane sends to its own node's strait-dns (`internalTrafficPolicy: Local`).
//!
//! ```text
//!   underlay bridge ── control 10.77.0.2
//!        ├── node-0 ── strait-agent, strait-dns 10.77.0.10:53 ── pod client
//!        └── node-1 ── strait-agent, strait-dns 10.77.0.11:53
//! ```

use std::{
    path::Path,
    time::{Duration, Instant},
};

use strait_tests::{
    Cluster,
    cluster::{BUSYBOX, Binaries},
    dns::DnsServer,
};

const DNS: &str = env!("CARGO_BIN_EXE_strait-dns");

#[test]
fn a_pod_resolves_services_through_its_nodes_strait_dns() {
    let bins = Binaries::beside(&Path::new(DNS).with_file_name("strait-agent"));
    let (cluster, _images) = Cluster::start_with_busybox(&bins, 2);
    let kubeconfig = cluster.control.data_dir().join("dns.kubeconfig");
    let servers: Vec<DnsServer> = cluster
        .nodes
        .iter()
        .map(|node| {
            DnsServer::start(
                Path::new(DNS),
                &node.netns,
                &format!("{}:53", node.ip),
                &kubeconfig,
                // No upstream leaves the machine: a local one that knows no names.
                &[
                    "--node-name",
                    &node.name,
                    "--advertise-address",
                    &node.ip,
                    "--upstream",
                    &nxdomain_upstream(node),
                    "--metrics",
                    &format!("{}:9153", node.ip),
                ],
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = cluster.kubectl(&[
            "-n",
            "kube-system",
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[*].endpoints[0].conditions.ready}",
        ]);
        if ready.trim() == "true true" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the strait-dns instances did not register: {ready}\n{}",
            servers.iter().map(DnsServer::log).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
          {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web", "namespace": "default"}},
            "spec": {{"ports": [{{"name": "http", "port": 80}}]}}}},
          {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "client", "namespace": "default"}},
            "spec": {{"nodeName": "node-0", "containers": [{{"name": "c", "image": "{BUSYBOX}",
              "imagePullPolicy": "Never", "command": ["sleep", "3600"]}}]}}}}]}}"#
    ));
    let web_ip = cluster
        .kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .trim()
        .to_owned();
    // busybox nslookup applies the search path to single-label names only, so `web.default`
    // goes through the C library's resolver (`ping` resolves before it sends).
    for (name, command) in [
        ("web", &["nslookup", "web"][..]),
        (
            "web.default",
            &["ping", "-c", "1", "-W", "1", "web.default"][..],
        ),
        (
            "web.default.svc.cluster.local",
            &["nslookup", "web.default.svc.cluster.local"][..],
        ),
    ] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut argv = vec!["exec", "client", "--"];
            argv.extend_from_slice(command);
            let out = cluster.control.kubectl("1.33", &argv);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // nslookup goes on through the search path for AAAA and exits non-zero there,
            // and nothing answers ping: the address is what matters.
            if text.contains(&format!("Address: {web_ip}")) || text.contains(&format!("({web_ip})"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{command:?} in pod client did not resolve {name} to {web_ip}:\n{text}\n{}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                servers.iter().map(DnsServer::log).collect::<String>(),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // `internalTrafficPolicy: Local`: the pod on node-0 only ever asked node-0's resolver.
    let requests: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|node| udp_requests(node, &format!("{}:9153", node.ip)))
        .collect();
    assert!(
        requests[0] > 0 && requests[1] == 0,
        "UDP requests per node: {requests:?}"
    );
}

/// strait-dns's `strait_dns_requests_total{proto="udp"}` on `node`.
fn udp_requests(node: &strait_tests::cluster::Node, address: &str) -> u64 {
    let text = node.netns.run(|| {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .expect("send the request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        text
    });
    text.lines()
        .find_map(|l| l.strip_prefix("strait_dns_requests_total{proto=\"udp\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request counter on {address}:\n{text}"))
}

/// An upstream on `node` answering NXDOMAIN to every query, as the Internet's root does for
/// `web.default.`, which resolvers try on the way through the search path. Its address.
fn nxdomain_upstream(node: &strait_tests::cluster::Node) -> String {
    let address = "127.0.0.53:53";
    let socket = node
        .netns
        .run(|| std::net::UdpSocket::bind(address).expect("bind the upstream"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // A response (QR), recursion available, NXDOMAIN; no records, no EDNS.
            buf[2] |= 0x80;
            buf[3] = 0x80 | 3;
            buf[10] = 0;
            buf[11] = 0;
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    address.to_owned()
}
