//! Namespace tier: the real `strait-dns` beside a real `strait-control` in one network
//! namespace (no route out), asked by `dig` and by raw datagrams.
//!
//! ```text
//!   namespace (lo only)
//!   ├── strait-control   127.0.0.1:6443
//!   ├── strait-dns       127.0.0.2:53   --upstream 127.0.0.3:53   (the one under test)
//!   ├── strait-dns       127.0.0.3:53   --cluster-domain upstream.test (a live upstream)
//!   ├── strait-dns       127.0.0.4:53   --upstream 127.0.0.5:53   (a dead upstream)
//!   └── a UDP socket     127.0.0.5:53   that never answers
//! ```

use std::{
    net::UdpSocket,
    path::PathBuf,
    time::{Duration, Instant},
};

use strait_tests::{
    ControlPlane, Netns,
    dns::{DnsServer, status},
};

fn binaries() -> (PathBuf, PathBuf) {
    let dns = PathBuf::from(env!("CARGO_BIN_EXE_strait-dns"));
    let control = dns.with_file_name("strait-control");
    assert!(
        control.exists(),
        "{} is missing: run `cargo build -p strait-control` first",
        control.display()
    );
    (dns, control)
}

/// Applies JSON objects with kubectl.
fn apply(plane: &ControlPlane, name: &str, json: &serde_json::Value) {
    let file = plane.data_dir().join(format!("{name}.json"));
    std::fs::write(&file, json.to_string()).expect("write a manifest");
    plane.kubectl_ok("1.33", &["apply", "-f", file.to_str().expect("UTF-8")]);
}

/// Polls `f` every 50 ms until it returns true; panics naming `what` after 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The answer section of `dig +short`.
fn short(server: &DnsServer, netns: &Netns, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["+short"];
    argv.extend_from_slice(args);
    let mut lines: Vec<String> = server
        .dig(netns, &argv)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Waits until `server` has listed the API (cluster names stop giving SERVFAIL).
fn synced(server: &DnsServer, netns: &Netns, domain: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let version = format!("dns-version.{domain}");
    while status(&server.dig(netns, &[&version, "TXT"])) != "NOERROR" {
        assert!(
            Instant::now() < deadline,
            "strait-dns on {} did not list the API within 20 s; its log:\n{}",
            server.listen,
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn app(endpoints: usize) -> serde_json::Value {
    let many: Vec<serde_json::Value> = (0..endpoints)
        .map(|i| serde_json::json!({"addresses": [format!("10.244.7.{}", i + 1)], "conditions": {"ready": true}}))
        .collect();
    serde_json::json!({
    "apiVersion": "v1", "kind": "List",
    "items": [
      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
      {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
       "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
      {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"},
       "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
      {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
       "metadata": {"name": "db-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
       "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
       "endpoints": [
         {"addresses": ["10.244.1.2"], "hostname": "db-0", "conditions": {"ready": true}},
         {"addresses": ["10.244.1.3"], "hostname": "db-1", "conditions": {"ready": false}}]},
      {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "many", "namespace": "shop"},
       "spec": {"clusterIP": "None"}},
      {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
       "metadata": {"name": "many-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "many"}},
       "addressType": "IPv4", "ports": [], "endpoints": many},
      {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "shop"},
       "spec": {"type": "ExternalName", "externalName": "web.shop.svc.upstream.test"}},
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    ]})
}

#[test]
fn cluster_names_forwarding_and_bad_input() {
    let (dns_bin, control_bin) = binaries();
    let plane = ControlPlane::start(&control_bin, &[]);
    let ns = plane.netns();
    let kubeconfig = plane.kubeconfig();
    apply(&plane, "app", &app(100));
    plane.kubectl_ok(
        "1.33",
        &[
            "-n", "shop", "patch", "pod", "p", "--subresource=status", "--type=merge", "-p",
            r#"{"status": {"phase": "Running", "podIP": "10.244.2.7", "podIPs": [{"ip": "10.244.2.7"}]}}"#,
        ],
    );
    let web_ip = plane
        .kubectl_ok(
            "1.33",
            &[
                "-n",
                "shop",
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
        .trim()
        .to_owned();

    let upstream = DnsServer::start(
        &dns_bin,
        ns,
        "127.0.0.3:53",
        &kubeconfig,
        &[
            "--cluster-domain",
            "upstream.test",
            "--upstream",
            "127.0.0.9:53",
        ],
    );
    let dns = DnsServer::start(
        &dns_bin,
        ns,
        "127.0.0.2:53",
        &kubeconfig,
        &["--upstream", "127.0.0.3:53", "--metrics", "127.0.0.2:9153"],
    );
    synced(&dns, ns, "cluster.local");
    synced(&upstream, ns, "upstream.test");

    // ClusterIP Service: A; names are case-insensitive.
    assert_eq!(
        short(&dns, ns, &["web.shop.svc.cluster.local"]),
        [web_ip.as_str()]
    );
    assert_eq!(
        short(&dns, ns, &["WEB.Shop.SVC.cluster.LOCAL"]),
        [web_ip.as_str()]
    );
    // SRV for a named port, with the target's address in the additional section.
    let srv = dns.dig(ns, &["_http._tcp.web.shop.svc.cluster.local", "SRV"]);
    assert!(
        srv.contains("SRV\t0 100 80 web.shop.svc.cluster.local."),
        "{srv}"
    );
    assert!(
        srv.contains(&format!("web.shop.svc.cluster.local. 5\tIN\tA\t{web_ip}")),
        "{srv}"
    );
    // Headless: ready endpoints only; per-endpoint hostnames.
    assert_eq!(
        short(&dns, ns, &["db.shop.svc.cluster.local"]),
        ["10.244.1.2"]
    );
    assert_eq!(
        short(&dns, ns, &["db-0.db.shop.svc.cluster.local"]),
        ["10.244.1.2"]
    );
    assert_eq!(
        short(&dns, ns, &["_pg._tcp.db.shop.svc.cluster.local", "SRV"]),
        ["0 100 5432 db-0.db.shop.svc.cluster.local."]
    );
    // Pod A record and PTR for pod and Service addresses.
    assert_eq!(
        short(&dns, ns, &["10-244-2-7.shop.pod.cluster.local"]),
        ["10.244.2.7"]
    );
    assert_eq!(
        short(&dns, ns, &["-x", "10.244.2.7"]),
        ["10-244-2-7.shop.pod.cluster.local."]
    );
    assert_eq!(
        short(&dns, ns, &["-x", &web_ip]),
        ["web.shop.svc.cluster.local."]
    );
    // The specification's version.
    assert_eq!(
        short(&dns, ns, &["dns-version.cluster.local", "TXT"]),
        ["\"1.1.0\""]
    );
    // NXDOMAIN and NODATA carry the SOA for negative caching.
    let nx = dns.dig(ns, &["nope.shop.svc.cluster.local"]);
    assert_eq!(status(&nx), "NXDOMAIN", "{nx}");
    assert!(
        nx.contains(
            "cluster.local.\t\t5\tIN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local."
        ),
        "{nx}"
    );
    let nodata = dns.dig(ns, &["web.shop.svc.cluster.local", "AAAA"]);
    assert_eq!(status(&nodata), "NOERROR", "{nodata}");
    assert!(nodata.contains("IN\tSOA"), "{nodata}");
    // An unknown type on a name that exists is NODATA too.
    assert_eq!(
        status(&dns.dig(ns, &["web.shop.svc.cluster.local", "TYPE65000"])),
        "NOERROR"
    );

    // Forwarding to a live upstream, then from the cache; an ExternalName followed upstream.
    let external = "web.shop.svc.upstream.test";
    assert_eq!(short(&dns, ns, &[external]), [web_ip.as_str()]);
    assert_eq!(short(&dns, ns, &[external]), [web_ip.as_str()]);
    let nx = dns.dig(ns, &["nope.shop.svc.upstream.test"]);
    assert_eq!(status(&nx), "NXDOMAIN", "{nx}");
    let ext = short(&dns, ns, &["ext.shop.svc.cluster.local"]);
    assert_eq!(
        ext,
        [web_ip.clone(), format!("{external}.")],
        "CNAME and its target's address"
    );
    let metrics = metrics_text(ns, "127.0.0.2:9153");
    let hits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strait_dns_cache_hits_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        hits >= 1,
        "the second question came from the cache: {metrics}"
    );
    assert!(
        metrics.contains("strait_dns_responses_total{rcode=\"NXDOMAIN\"}"),
        "{metrics}"
    );

    answers_are_patched_for_each_asker(ns, &dns.listen, &web_ip);

    // Truncation: 100 addresses do not fit 512 bytes over UDP; TCP carries them all.
    let udp = dns.dig(ns, &["+noedns", "+ignore", "many.shop.svc.cluster.local"]);
    assert!(udp.contains(" tc"), "expected the TC flag: {udp}");
    assert_eq!(
        short(&dns, ns, &["+tcp", "many.shop.svc.cluster.local"]).len(),
        100
    );
    assert_eq!(
        short(&dns, ns, &["+bufsize=4096", "many.shop.svc.cluster.local"]).len(),
        100
    );

    // A change is answered within moments (polled, not timed).
    plane.kubectl_ok(
        "1.33",
        &[
            "-n",
            "shop",
            "label",
            "endpointslice",
            "db-1",
            "kubernetes.io/service-name=web",
            "--overwrite",
        ],
    );
    eventually("db to lose its endpoints", || {
        short(&dns, ns, &["db.shop.svc.cluster.local"]).is_empty()
    });
    plane.kubectl_ok("1.33", &["-n", "shop", "delete", "svc", "web"]);
    eventually("web to go", || {
        status(&dns.dig(ns, &["web.shop.svc.cluster.local"])) == "NXDOMAIN"
    });

    bad_input(&dns, ns);

    // A dead upstream: SERVFAIL within the deadline; cluster names keep answering.
    let _blackhole = ns.run(|| UdpSocket::bind("127.0.0.5:53").expect("bind the black hole"));
    let dead = DnsServer::start(
        &dns_bin,
        ns,
        "127.0.0.4:53",
        &kubeconfig,
        &[
            "--upstream",
            "127.0.0.5:53",
            "--upstream-timeout-ms",
            "1000",
        ],
    );
    synced(&dead, ns, "cluster.local");
    let out = dead.dig(ns, &["example.com"]);
    assert_eq!(
        status(&out),
        "SERVFAIL",
        "a SERVFAIL within dig's 4 s: {out}"
    );
    assert_eq!(
        short(&dead, ns, &["dns-version.cluster.local", "TXT"]),
        ["\"1.1.0\""]
    );
    let metrics = metrics_text(ns, "127.0.0.2:9153");
    assert!(metrics.contains("strait_dns_requests_total"), "{metrics}");
    drop(upstream);
}

/// `GET /metrics` from inside `ns` (HTTP/1.0, so the server closes when done).
fn metrics_text(ns: &Netns, address: &str) -> String {
    ns.run(|| {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: strait-dns\r\n\r\n")
            .expect("send the request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        text
    })
}

/// Sends `bytes` to `server` from inside `ns` and returns the reply, if any within 2 s.
fn raw(ns: &Netns, server: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    ns.run(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket.send_to(bytes, server).expect("send");
        let mut buf = vec![0u8; 65535];
        let n = socket.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    })
}

/// One client (one source port, so one serving thread and its packet cache) asks the same
/// question in other spellings, with other IDs and RD flags: the first answer is cached, the
/// rest come from the cache, and each carries its asker's ID, RD flag and spelling (resolvers
/// randomize the case of names, draft-vixie-dnsext-0x20, and check the echo).
fn answers_are_patched_for_each_asker(ns: &Netns, at: &str, web_ip: &str) {
    use hickory_proto::op::Message;

    let spellings = [
        "web.shop.svc.cluster.local",
        "WeB.sHoP.SVC.cluster.local",
        "WEB.SHOP.SVC.CLUSTER.LOCAL",
    ];
    let hits_before = counter(
        &metrics_text(ns, "127.0.0.2:9153"),
        "strait_dns_packet_cache_hits_total",
    );
    let replies = ns.run(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut replies = Vec::new();
        for (i, name) in spellings.iter().cycle().take(6).enumerate() {
            let rd = i % 2 == 0;
            let mut q = query(if rd { 0x0100 } else { 0 }, 1, name, 1, 1);
            let id = 0x4000 + u16::try_from(i).expect("a few");
            q[..2].copy_from_slice(&id.to_be_bytes());
            socket.send_to(&q, at).expect("send");
            let mut buf = vec![0u8; 4096];
            let n = socket.recv(&mut buf).expect("an answer within 2 s");
            buf.truncate(n);
            replies.push((id, rd, *name, buf));
        }
        replies
    });
    for (id, rd, name, reply) in replies {
        let message = Message::from_vec(&reply).expect("a well-formed answer");
        assert_eq!(message.metadata.id, id);
        assert_eq!(
            message.metadata.recursion_desired, rd,
            "RD of query {id:#x}"
        );
        assert!(message.metadata.authoritative);
        assert_eq!(message.queries[0].name().to_ascii(), format!("{name}."));
        let answer = &message.answers[0];
        assert_eq!(
            answer.name.to_ascii(),
            format!("{name}."),
            "the owner as asked"
        );
        assert_eq!(answer.data.to_string(), web_ip);
    }
    let hits = counter(
        &metrics_text(ns, "127.0.0.2:9153"),
        "strait_dns_packet_cache_hits_total",
    );
    assert!(
        hits >= hits_before + 5,
        "five of six answers from the packet cache: {hits_before} → {hits}"
    );
}

/// The value of an unlabelled counter in Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// A query for `name` with the given header flags word, counts and class.
fn query(flags: u16, qdcount: u16, name: &str, qtype: u16, class: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34];
    q.extend_from_slice(&flags.to_be_bytes());
    q.extend_from_slice(&qdcount.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for _ in 0..qdcount {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(u8::try_from(label.len()).expect("a short label"));
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&class.to_be_bytes());
    }
    q
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn bad_input(dns: &DnsServer, ns: &Netns) {
    let at = dns.listen.as_str();
    let name = "web.shop.svc.cluster.local";
    // Shorter than a header: dropped.
    assert_eq!(raw(ns, at, &[1, 2, 3]), None);
    // A header promising a question that is not there: FORMERR.
    let cut = &query(0x0100, 1, name, 1, 1)[..16];
    assert_eq!(
        raw(ns, at, cut).map(|r| rcode(&r)),
        Some(1),
        "FORMERR for a cut question"
    );
    // Garbage of the largest datagram size: FORMERR or dropped, never a crash.
    let garbage: Vec<u8> = (0..65000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = raw(ns, at, &garbage);
    // Two questions: FORMERR.
    assert_eq!(
        raw(ns, at, &query(0x0100, 2, name, 1, 1)).map(|r| rcode(&r)),
        Some(1)
    );
    // Opcode STATUS (2): NOTIMP.
    assert_eq!(
        raw(ns, at, &query(0x1100, 1, name, 1, 1)).map(|r| rcode(&r)),
        Some(4)
    );
    // Class CHAOS: REFUSED.
    assert_eq!(
        raw(ns, at, &query(0x0100, 1, "version.bind", 16, 3)).map(|r| rcode(&r)),
        Some(5)
    );
    // A zone transfer: REFUSED.
    assert_eq!(
        raw(ns, at, &query(0x0100, 1, "cluster.local", 252, 1)).map(|r| rcode(&r)),
        Some(5)
    );
    // EDNS version 1: BADVERS (16, its high bits in the OPT record).
    let out = dns.dig(ns, &["+edns=1", "+noednsneg", name]);
    assert_eq!(status(&out), "BADVERS", "{out}");
    // A TCP stream announcing more than it sends is dropped; the server goes on.
    ns.run(|| {
        use std::io::Write as _;
        let mut stream = std::net::TcpStream::connect(at).expect("connect");
        stream.write_all(&[0xff, 0xff, 0, 1, 2]).expect("write");
    });
    assert_eq!(
        status(&dns.dig(ns, &["+tcp", "dns-version.cluster.local", "TXT"])),
        "NOERROR"
    );
    assert_eq!(
        status(&dns.dig(ns, &["dns-version.cluster.local", "TXT"])),
        "NOERROR"
    );
}

#[test]
fn registers_behind_the_kube_dns_service() {
    let (dns_bin, control_bin) = binaries();
    let plane = ControlPlane::start(&control_bin, &[]);
    let ns = plane.netns();
    // The control plane made the Service: tenth address, no selector, Local traffic.
    let svc = plane.kubectl_ok(
        "1.33",
        &["-n", "kube-system", "get", "svc", "kube-dns", "-o", "json"],
    );
    let svc: serde_json::Value = serde_json::from_str(&svc).expect("JSON");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");
    assert!(svc["spec"]["selector"].is_null(), "{svc}");
    assert_eq!(svc["metadata"]["labels"]["k8s-app"], "kube-dns");
    apply(
        &plane,
        "node",
        &serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    );
    // Endpoints may not be loopback addresses: the node's address is a real one.
    strait_tests::cmd::run(&[
        "ip",
        "-n",
        ns.name(),
        "addr",
        "add",
        "10.0.0.53/32",
        "dev",
        "lo",
    ]);
    let mut dns = DnsServer::start(
        &dns_bin,
        ns,
        "10.0.0.53:53",
        &plane.kubeconfig(),
        &[
            "--node-name",
            "n1",
            "--advertise-address",
            "10.0.0.53",
            "--metrics",
            "10.0.0.53:9153",
        ],
    );
    // A JSONPath of the slice; empty while there is none.
    let slice = |path: &str| {
        let jsonpath = format!("jsonpath={path}");
        let out = plane.kubectl(
            "1.33",
            &[
                "-n",
                "kube-system",
                "get",
                "endpointslice",
                "kube-dns-n1",
                "-o",
                &jsonpath,
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ready = |want: &str| {
        slice(
            "{.endpoints[0].conditions.ready} {.endpoints[0].nodeName} {.metadata.ownerReferences[0].kind}",
        ) == want
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready("true n1 Node") {
        assert!(
            Instant::now() < deadline,
            "no ready kube-dns-n1 slice within 20 s; strait-dns's log:\n{}",
            dns.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every port of the Service has its backend here, metrics included.
    let ports = slice("{range .ports[*]}{.name}/{.protocol}/{.port} {end}");
    assert_eq!(ports.trim(), "dns/UDP/53 dns-tcp/TCP/53 metrics/TCP/9153");
    // The EndpointSlice controller leaves a selector-less Service's slices alone.
    std::thread::sleep(Duration::from_secs(2));
    assert!(ready("true n1 Node"), "the slice stays");
    // The Node is deleted (the garbage collector takes its slice) and made again: strait-dns
    // sees the new Node through its watch and registers under the new owner, well before its
    // 30 s re-assertion would.
    let owner = || slice("{.metadata.ownerReferences[0].uid}");
    let old_uid = plane.kubectl_ok(
        "1.33",
        &["get", "node", "n1", "-o", "jsonpath={.metadata.uid}"],
    );
    assert_eq!(owner(), old_uid);
    plane.kubectl_ok("1.33", &["delete", "node", "n1"]);
    apply(
        &plane,
        "node",
        &serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    );
    let new_uid = plane.kubectl_ok(
        "1.33",
        &["get", "node", "n1", "-o", "jsonpath={.metadata.uid}"],
    );
    assert_ne!(new_uid, old_uid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(ready("true n1 Node") && owner() == new_uid) {
        assert!(
            Instant::now() < deadline,
            "kube-dns-n1 not owned by the new Node within 20 s; strait-dns's log:\n{}",
            dns.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = dns.terminate().expect("strait-dns exits");
    assert!(status.success(), "{status:?}: {}", dns.log());
    assert!(
        ready("false n1 Node"),
        "not ready after SIGTERM: {}",
        dns.log()
    );
}
