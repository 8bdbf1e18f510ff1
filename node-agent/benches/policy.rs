//! `cargo xtask bench policy`: what NetworkPolicy costs.
//!
//! 1. New-connection latency through the policy programs, on real TCP connections between
//!    two pod namespaces behind a router namespace (the layout of the namespace tests), with
//!    0, 10, 100 and 1,000 policies selecting the destination: each allows port 80 from its
//!    own client (1,000 client pods exist in the API only, so each policy is an identity and
//!    an entry of b's policy trie), and one more allows a. The baseline is the same path with no program attached. Each connection
//!    is a new flow, judged at both hooks (ipcache, policy trie, conntrack write, flow record).
//!    The time to compile and write each policy set into the maps is reported too.
//! 2. Apply → programmed on every node: a two-node cluster of real agents; a policy is
//!    created (or deleted) through the API and the clock stops when both Nodes report the new
//!    set programmed (`policy.strait.dev/programmed`), seen through a watch.
//!
//! Figures only: nothing here passes or fails on time. `--quick` measures fewer connections
//! and fewer applies.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{core::v1::Node, networking::v1::NetworkPolicy};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{WatchStreamExt as _, watcher},
};
use serde_json::{Value, json};
use strait_agent::dataplane::{
    Dataplane, DataplaneConfig,
    policy::{PolicyMaps, RuleTable, desired, diff},
};
use strait_policy::{
    Cluster as PolicyCluster, Identities, Labels, NamedPort, PROGRAMMED_ANNOTATION, PodInfo,
    Protocol, compile, parse, programmed_digest,
};
use strait_tests::{Cluster, Netns, PinDir, VethPair, cluster::Binaries, sim};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pod(name: &str, ip: &str) -> PodInfo {
    PodInfo {
        namespace: "x".into(),
        name: name.into(),
        labels: [("app".to_owned(), name.to_owned())].into(),
        ip: Some(ip.parse().expect("an address")),
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
    }
}

/// `count` policies selecting b, each allowing port 80 from a label nobody has, and (when
/// there are any) one allowing a.
fn policies(count: usize) -> Vec<strait_policy::Policy> {
    let mut specs: Vec<Value> = (0..count)
        .map(|i| {
            json!({"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"client": format!("c{i}")}}}],
                "ports": [{"port": 80}]}]})
        })
        .collect();
    if count > 0 {
        specs.push(
            json!({"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}),
        );
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let np: NetworkPolicy = serde_json::from_value(
                json!({"metadata": {"name": format!("p{i}"), "namespace": "x"}, "spec": spec}),
            )
            .expect("a NetworkPolicy");
            parse(&np).expect("a valid policy")
        })
        .collect()
}

/// Connection latency: connect, read the server's byte, close; `count` times.
fn connections(client: &Netns, target: SocketAddr, count: usize) -> Vec<Duration> {
    client.run(|| {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                .expect("the connection is allowed");
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).expect("the server's byte");
            samples.push(started.elapsed());
        }
        samples.sort();
        samples
    })
}

fn connection_latency(count: usize) {
    let node = Netns::new("bpn");
    let a = Netns::new("bpa");
    let b = Netns::new("bpb");
    let link_a = VethPair::new(&a, "10.201.1.2/24", &node, "10.201.1.1/24");
    let link_b = VethPair::new(&b, "10.201.2.2/24", &node, "10.201.2.1/24");
    a.route(&["default", "via", "10.201.1.1"]);
    b.route(&["default", "via", "10.201.2.1"]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let listener = b.run(|| TcpListener::bind("10.201.2.2:80").expect("bind b:80"));
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            listener.set_nonblocking(true).expect("non-blocking");
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(b"k");
                    }
                    Err(_) => thread::sleep(Duration::from_micros(50)),
                }
            }
        })
    };
    let target: SocketAddr = "10.201.2.2:80".parse().expect("an address");
    // Warm the neighbours and the path.
    let _ = connections(&a, target, 50);
    let base = connections(&a, target, count);

    let pins = PinDir::new("strait-bench-");
    let mut dp = Dataplane::load(DataplaneConfig {
        ct_entries: Some(1 << 16),
        ..DataplaneConfig::new(pins.path())
    })
    .expect("load the dataplane");
    let (host_a, host_b) = (link_a.b.ifname.clone(), link_b.b.ifname.clone());
    let mut dp = node.run(move || {
        dp.attach_endpoint(&host_a).expect("attach to a");
        dp.attach_endpoint(&host_b).expect("attach to b");
        dp
    });
    let ifindex =
        |name: &str| node.run(|| strait_agent::dataplane::ifindex(name).expect("an ifindex"));
    let local: BTreeMap<String, u32> = [
        ("x/a".to_owned(), ifindex(&link_a.b.ifname)),
        ("x/b".to_owned(), ifindex(&link_b.b.ifname)),
    ]
    .into();
    let namespaces: BTreeMap<String, Labels> = [("x".to_owned(), Labels::new())].into();
    // Every policy's client label is some pod's: 1,000 policies are 1,000 identities and trie
    // entries (the clients exist in the API only; no traffic comes from them).
    let mut pods = vec![pod("a", "10.201.1.2"), pod("b", "10.201.2.2")];
    for i in 0..1000u32 {
        let mut client = pod(
            &format!("client-{i}"),
            &format!("10.202.{}.{}", i / 250, i % 250 + 1),
        );
        client.labels = [("client".to_owned(), format!("c{i}"))].into();
        pods.push(client);
    }
    let host: [Ipv4Addr; 2] = [
        "10.201.1.1".parse().expect("ip"),
        "10.201.2.1".parse().expect("ip"),
    ];
    let (mut identities, mut rules, mut current) = (
        Identities::default(),
        RuleTable::default(),
        PolicyMaps::default(),
    );

    println!(
        "new-connection latency, a → b:80 (connect, 1 byte, close), {count} connections per row:"
    );
    println!(
        "  {:<26} {:>9} {:>9} {:>9} {:>10} {:>11} {:>9}",
        "policies selecting b", "p50 µs", "p99 µs", "mean µs", "vs 0", "program ms", "entries"
    );
    let mean =
        |s: &[Duration]| s.iter().sum::<Duration>() / u32::try_from(s.len().max(1)).unwrap_or(1);
    println!(
        "  {:<26} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>11} {:>9}",
        "(no program attached)",
        micros(percentile(&base, 0.5)),
        micros(percentile(&base, 0.99)),
        micros(mean(&base)),
        "",
        "",
        ""
    );
    let mut none_p50 = Duration::ZERO;
    for n in [0usize, 10, 100, 1000] {
        let set = policies(n);
        let started = Instant::now();
        let cluster = PolicyCluster {
            namespaces: &namespaces,
            pods: &pods,
            policies: &set,
        };
        let compiled = compile(&cluster, &mut identities, |_| true);
        let wanted = desired(&compiled, &local, &host, &mut rules);
        let ops = diff(&current, &wanted);
        dp.apply_policy(&ops).expect("write the maps");
        let programmed = started.elapsed();
        current = wanted;
        let _ = connections(&a, target, 50);
        let samples = connections(&a, target, count);
        let p50 = percentile(&samples, 0.5);
        if n == 0 {
            none_p50 = p50;
        }
        let versus = if n == 0 {
            String::new()
        } else {
            format!("{:+.1}%", (micros(p50) / micros(none_p50) - 1.0) * 100.0)
        };
        println!(
            "  {:<26} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>11.2} {:>9}",
            n,
            micros(p50),
            micros(percentile(&samples, 0.99)),
            micros(mean(&samples)),
            versus,
            programmed.as_secs_f64() * 1e3,
            current.policy.len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
}

/// Apply (or delete) through the API → every node reports the new set programmed.
fn apply_to_programmed(rounds: usize) {
    let agent = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("strait-agent")))
        .filter(|p| p.exists())
        .expect("strait-agent beside the bench (cargo build first)");
    let (cluster, _images) = Cluster::start_with_busybox(&Binaries::beside(&agent), 2);
    let nodes = cluster.nodes.len();
    let mut samples = Vec::new();
    sim::block_on(&cluster.control, |client| async move {
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "default");
        let all: Api<NetworkPolicy> = Api::all(client.clone());
        let node_api: Api<Node> = Api::all(client.clone());
        for round in 0..rounds {
            let started = Instant::now();
            if round % 2 == 0 {
                let np: NetworkPolicy = serde_json::from_value(json!({
                    "metadata": {"name": "bench"},
                    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]},
                }))
                .expect("a NetworkPolicy");
                policies
                    .create(&PostParams::default(), &np)
                    .await
                    .expect("create");
            } else {
                policies
                    .delete("bench", &DeleteParams::default())
                    .await
                    .expect("delete");
            }
            let list = all.list(&ListParams::default()).await.expect("list");
            let want = programmed_digest(list.items.iter());
            let done = |n: &Node| {
                n.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(PROGRAMMED_ANNOTATION))
                    == Some(&want)
            };
            let mut stream = watcher(node_api.clone(), watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut programmed = std::collections::BTreeSet::new();
            while programmed.len() < nodes {
                let Ok(Some(event)) = stream.try_next().await else {
                    continue;
                };
                let seen: Vec<Node> = match event {
                    watcher::Event::Apply(n) | watcher::Event::InitApply(n) => vec![n],
                    _ => Vec::new(),
                };
                for n in seen.iter().filter(|n| done(n)) {
                    programmed.insert(n.metadata.name.clone().unwrap_or_default());
                }
            }
            samples.push(started.elapsed());
        }
        samples.sort();
        println!(
            "\napply → programmed on both nodes ({rounds} creates and deletes through the API, seen by a watch):"
        );
        println!(
            "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&samples, 0.5).as_secs_f64() * 1e3,
            percentile(&samples, 0.99).as_secs_f64() * 1e3,
            samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    });
}

fn main() {
    strait_tests::clean_up_on_signal().expect("signal handlers");
    let quick = std::env::args().any(|a| a == "--quick");
    let (connections, rounds) = if quick { (500, 10) } else { (3000, 40) };
    println!(
        "policy benchmark ({}):",
        if quick { "quick" } else { "full" }
    );
    connection_latency(connections);
    apply_to_programmed(rounds);
}
