//! Cluster tier: the upstream network-policy e2e model on real agents. Namespaces x, y, z
//! with pods a, b, c spread over two nodes; every scenario of `strait_tests::netpol` is
//! applied with kubectl step by step, and after each step the whole reachability table
//! (every ordered pair of distinct pods, TCP 80 and 81 and UDP 80, more where a scenario
//! asks) is probed with real connections and compared with the one the specification
//! requires.
//!
//! The servers and the probing clients are sockets the test opens inside each pod's network
//! namespace (the agents keep them under their state directories), so one table of ~220
//! probes takes about a second: allowed connections answer at once, denied ones time out
//! after 1 s, all in parallel.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use strait_tests::{
    Cluster,
    cluster::{BUSYBOX, Binaries},
    netns::run_in,
    netpol::{self, NAMESPACES, PODS, PORTS, Proto, Relabel, Scenario, Step},
};

/// A model pod as the test reaches it.
struct Pod {
    ip: String,
    netns: PathBuf,
}

/// TCP and UDP servers on ports 80 and 81 inside one pod's namespace, until dropped.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Servers {
    fn start(netns: &Path) -> Self {
        let (tcp, udp): (Vec<TcpListener>, Vec<UdpSocket>) = run_in(netns, || {
            let tcp = PORTS
                .iter()
                .map(|p| TcpListener::bind(("0.0.0.0", *p)).expect("bind a TCP port in the pod"))
                .collect();
            let udp = PORTS
                .iter()
                .map(|p| UdpSocket::bind(("0.0.0.0", *p)).expect("bind a UDP port in the pod"))
                .collect();
            (tcp, udp)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for listener in tcp {
            listener.set_nonblocking(true).expect("non-blocking");
            let stop = Arc::clone(&stop);
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.write_all(b"ok");
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        for socket in udp {
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("a read timeout");
            let stop = Arc::clone(&stop);
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], peer);
                    }
                }
            }));
        }
        Self { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One real connection from inside `from`'s namespace: a TCP connect and read, or a UDP
/// datagram and its echo, within a second.
fn connects(from: &Path, to: &str, proto: Proto, port: u16) -> bool {
    let target: SocketAddr = format!("{to}:{port}").parse().expect("an address");
    let timeout = Duration::from_secs(1);
    run_in(from, || match proto {
        // A fresh source port for every probe: an allowed flow stays in the policy conntrack
        // for a while after it ends (as established connections survive a policy change, by
        // design), and a kernel-chosen port may repeat an earlier probe's tuple (the server
        // closes first, so the client's port is free at once).
        Proto::Tcp => tcp_connect(target, timeout).is_some_and(|mut s| {
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf).is_ok()
        }),
        Proto::Udp => udp_socket().is_some_and(|s| {
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 16];
            s.send_to(b"ping", target).is_ok() && s.recv_from(&mut buf).is_ok_and(|(n, _)| n == 4)
        }),
    })
}

/// Source ports no earlier probe used, TCP and UDP alike.
static NEXT_PORT: AtomicU16 = AtomicU16::new(20_000);

/// A UDP socket on a source port no earlier probe used.
fn udp_socket() -> Option<UdpSocket> {
    (0..100)
        .find_map(|_| UdpSocket::bind(("0.0.0.0", NEXT_PORT.fetch_add(1, Ordering::Relaxed))).ok())
}

/// A TCP connection to `target` from a source port no earlier probe used.
fn tcp_connect(target: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = (0..100).find_map(|_| {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).ok()?;
        let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let local = SocketAddr::from(([0, 0, 0, 0], port));
        socket.bind(&local.into()).ok().map(|()| socket)
    })?;
    socket.connect_timeout(&target.into(), timeout).ok()?;
    Some(socket.into())
}

struct Model<'a> {
    cluster: &'a Cluster,
    pods: BTreeMap<String, Pod>,
}

impl Model<'_> {
    /// Every probe of the step whose outcome differs from the expectation, described.
    fn mismatches(&self, scenario: &Scenario, step: &Step) -> Vec<String> {
        let mut cases = Vec::new();
        for (proto, port) in scenario.probes() {
            for from in self.pods.keys() {
                for to in self.pods.keys() {
                    if from != to {
                        cases.push((from.as_str(), to.as_str(), proto, port));
                    }
                }
            }
        }
        let outcomes: Vec<bool> = thread::scope(|scope| {
            let handles: Vec<_> = cases
                .iter()
                .map(|(from, to, proto, port)| {
                    let (from, to) = (&self.pods[*from], &self.pods[*to]);
                    scope.spawn(move || connects(&from.netns, &to.ip, *proto, *port))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .collect()
        });
        cases
            .iter()
            .zip(outcomes)
            .filter(|((from, to, proto, port), got)| (step.expect)(from, to, *proto, *port) != *got)
            .map(|((from, to, proto, port), got)| {
                let want = if got { "denied" } else { "allowed" };
                format!("{from} -> {to} {}/{port}: should be {want}", proto.name())
            })
            .collect()
    }

    fn apply(&self, object: &Value) {
        let all_pods = "10.244.0.0/16";
        let resolved = netpol::resolve(object, &|key| self.pods[key].ip.clone(), all_pods);
        self.cluster.apply(&resolved.to_string());
    }

    fn relabel(&self, change: &Relabel, set: bool) {
        let (kind, target, namespace, key, value) = match change {
            Relabel::Pod(pod, k, v) => ("pod", netpol::pod(pod), Some(netpol::ns(pod)), *k, *v),
            Relabel::Namespace(ns, k, v) => ("namespace", *ns, None, *k, *v),
        };
        let label = if set {
            format!("{key}={value}")
        } else {
            format!("{key}-")
        };
        let mut args = vec!["label", "--overwrite", kind, target, label.as_str()];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        self.cluster.kubectl(&args);
    }
}

/// Probes until the table matches or `patience` runs out: a label change has no
/// programmed-set digest to wait for, so its step is given a few seconds to land.
fn settle(model: &Model<'_>, scenario: &Scenario, step: &Step, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let wrong = model.mismatches(scenario, step);
        if wrong.is_empty() || Instant::now() >= deadline {
            return wrong;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_upstream_model_holds_on_real_connections() {
    let bins = Binaries::beside(Path::new(env!("CARGO_BIN_EXE_strait-agent")));
    let (cluster, _images) = Cluster::start_with_busybox(&bins, 2);
    let mut i = 0;
    for ns in NAMESPACES {
        cluster.apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
                .to_string(),
        );
        for pod in PODS {
            let ports: Vec<Value> = PORTS
                .iter()
                .flat_map(|p| {
                    [
                        json!({"name": format!("serve-{p}-tcp"), "containerPort": p, "protocol": "TCP"}),
                        json!({"name": format!("serve-{p}-udp"), "containerPort": p, "protocol": "UDP"}),
                    ]
                })
                .collect();
            cluster.apply(
                &json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
                    "spec": {"nodeName": format!("node-{}", i % 2), "terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                             "command": ["sleep", "100000"], "ports": ports}]}})
                .to_string(),
            );
            i += 1;
        }
    }
    for ns in NAMESPACES {
        cluster.kubectl(&[
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            "pod",
            "--all",
            "--timeout=90s",
        ]);
    }
    let mut pods = BTreeMap::new();
    for key in netpol::pod_keys() {
        let (ns, name) = (netpol::ns(&key), netpol::pod(&key));
        let fields = cluster.kubectl(&[
            "get",
            "pod",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.metadata.uid} {.spec.nodeName} {.status.podIP}",
        ]);
        let [uid, node, ip] = fields.split(' ').collect::<Vec<_>>()[..] else {
            panic!("pod {key}: {fields}");
        };
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.name == node)
            .expect("the pod's node");
        let netns = node.state_dir.join("pods").join(uid).join("netns");
        assert!(netns.exists(), "{} is missing", netns.display());
        pods.insert(
            key,
            Pod {
                ip: ip.to_owned(),
                netns,
            },
        );
    }
    let _servers: Vec<Servers> = pods.values().map(|p| Servers::start(&p.netns)).collect();
    let model = Model {
        cluster: &cluster,
        pods,
    };
    let everyone = Step {
        apply: Vec::new(),
        delete: Vec::new(),
        relabel: Vec::new(),
        expect: |_, _, _, _| true,
    };
    let baseline = Scenario {
        name: "no policy",
        also: Vec::new(),
        steps: Vec::new(),
    };
    let mut digest = cluster.wait_policies_programmed("");
    let wrong = settle(&model, &baseline, &everyone, Duration::from_secs(10));
    assert!(wrong.is_empty(), "without policies: {wrong:?}");

    let mut failures = Vec::new();
    let scenarios = netpol::scenarios();
    for scenario in &scenarios {
        for (index, step) in scenario.steps.iter().enumerate() {
            for object in &step.apply {
                model.apply(object);
            }
            for gone in &step.delete {
                let (ns, name) = gone.split_once('/').expect("namespace/name");
                cluster.kubectl(&["delete", "networkpolicy", "-n", ns, name]);
            }
            for change in &step.relabel {
                model.relabel(change, true);
            }
            if !step.apply.is_empty() || !step.delete.is_empty() {
                digest = cluster.wait_policies_programmed(&digest);
            }
            let patience = if step.relabel.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_secs(5)
            };
            let wrong = settle(&model, scenario, step, patience);
            if !wrong.is_empty() {
                failures.push(format!("{} (step {index}): {wrong:?}", scenario.name));
            }
        }
        // Back to the baseline: no policies, original labels.
        for step in &scenario.steps {
            for change in &step.relabel {
                model.relabel(change, false);
            }
        }
        let present = cluster.kubectl(&["get", "networkpolicy", "-A", "-o", "name"]);
        if !present.is_empty() {
            cluster.kubectl(&["delete", "networkpolicy", "--all", "-A"]);
            digest = cluster.wait_policies_programmed(&digest);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}
