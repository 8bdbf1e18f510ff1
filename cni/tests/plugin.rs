//! The real `strait-cni` binary against real namespaces, veths and a real IPAM server.
//!
//! ```text
//!   pod A netns          node netns (ip_forward=1)            pod B netns
//!   eth0 10.x.0.a/32 ── lxc<hash A>        lxc<hash B> ── eth0 10.x.0.b/32
//!                       routes: 10.x.0.a/32 dev lxcA, 10.x.0.b/32 dev lxcB
//!   IPAM server: a thread of this test process on a temporary unix socket
//! ```
//!
//! The plugin runs as a child process under `nsenter --net=<node>`, as a runtime on the node
//! would run it. Every test has its own namespaces, socket and pod CIDR, so they run in
//! parallel.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use strait_cni::ipam::{Ipam, serve};
use strait_tests::Netns;

const PLUGIN: &str = env!("CARGO_BIN_EXE_strait-cni");

/// A node: its namespace and its IPAM, served on a temporary socket.
struct Node {
    ns: Netns,
    ipam: Arc<Mutex<Ipam>>,
    socket: PathBuf,
    cidr: String,
    _dir: tempfile::TempDir,
}

/// A distinct pod CIDR per node, so a leak from one test never looks like another's pod.
fn next_cidr() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("10.{}.{}.0/24", 200 + (std::process::id() % 50), n % 250)
}

impl Node {
    fn new() -> Self {
        let ns = Netns::new("cnn");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = dir.path().join("ipam.sock");
        let cidr = next_cidr();
        let ipam = Ipam::open(
            cidr.parse().expect("a pod CIDR"),
            dir.path().join("ipam.json"),
        )
        .expect("open the IPAM");
        let ipam = Arc::new(Mutex::new(ipam));
        let listener = UnixListener::bind(&socket).expect("bind the IPAM socket");
        let served = Arc::clone(&ipam);
        // The thread ends with the process; its listener outlives the test harmlessly.
        std::thread::spawn(move || serve(listener, served));
        Self {
            ns,
            ipam,
            socket,
            cidr,
            _dir: dir,
        }
    }

    fn conf(&self, version: &str) -> String {
        json!({
            "cniVersion": version,
            "name": "strait",
            "type": "strait-cni",
            "ipam": {"socket": self.socket, "timeoutMs": 2000},
        })
        .to_string()
    }

    fn allocations(&self) -> Vec<strait_cni::ipam::Allocation> {
        self.ipam.lock().expect("the IPAM lock").list()
    }

    /// Runs the plugin in the node's namespace; returns (success, parsed stdout or Null).
    fn plugin(&self, command: &str, id: &str, netns: &Path, stdin: &str) -> (bool, Value) {
        run_plugin(
            PLUGIN,
            &self.ns,
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", netns.to_str().expect("UTF-8")),
                ("CNI_IFNAME", "eth0"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u",
                ),
                ("CNI_PATH", "/usr/lib/cni"),
            ],
            stdin,
        )
    }

    fn links(&self) -> String {
        let out = self.ns.exec_ok(&["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn run_plugin(binary: &str, ns: &Netns, env: &[(&str, &str)], stdin: &str) -> (bool, Value) {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg(binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the plugin");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write the configuration");
    let out = child.wait_with_output().expect("wait for the plugin");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{binary} printed non-JSON ({e}): {stdout}"))
    };
    (out.status.success(), value)
}

fn pod_address(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().expect("an address");
    cidr.split('/').next().expect("ADDRESS/LEN").to_owned()
}

#[test]
fn add_check_del_round_trip() {
    let node = Node::new();
    let pod = Netns::new("cnp");
    let conf = node.conf("1.0.0");

    let (ok, result) = node.plugin("ADD", "ctr-a", &pod.path(), &conf);
    assert!(ok, "ADD failed: {result}");
    let address = pod_address(&result);
    let host_if = strait_cni::host_veth_name("lxc", "ctr-a", "eth0");

    // The result's shape.
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][0]["name"], host_if.as_str());
    assert!(
        result["interfaces"][0]["mac"]
            .as_str()
            .is_some_and(|m| m.len() == 17),
        "{result}"
    );
    assert!(result["interfaces"][0].get("sandbox").is_none(), "{result}");
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().to_str().unwrap()
    );
    assert_eq!(result["ips"][0]["address"], format!("{address}/32"));
    assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(result["ips"][0]["interface"], 1);
    assert!(
        result["ips"][0].get("version").is_none(),
        "1.0.0 has no ip version: {result}"
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
    );
    assert_eq!(result["dns"], json!({}));

    // The kernel's state.
    let pod_addr = String::from_utf8_lossy(
        &pod.exec_ok(&["ip", "-o", "addr", "show", "dev", "eth0"])
            .stdout,
    )
    .into_owned();
    assert!(
        pod_addr.contains(&format!("inet {address}/32")),
        "{pod_addr}"
    );
    let pod_routes =
        String::from_utf8_lossy(&pod.exec_ok(&["ip", "route", "show"]).stdout).into_owned();
    let has_route = |routes: &str, start: &str, words: &[&str]| {
        routes
            .lines()
            .any(|l| l.starts_with(start) && words.iter().all(|w| l.contains(w)))
    };
    assert!(
        has_route(&pod_routes, "default via 169.254.1.1 dev eth0", &["onlink"]),
        "{pod_routes}"
    );
    assert!(
        has_route(&pod_routes, "169.254.1.1 dev eth0", &["scope link"]),
        "{pod_routes}"
    );
    let node_routes =
        String::from_utf8_lossy(&node.ns.exec_ok(&["ip", "route", "show"]).stdout).into_owned();
    assert!(
        has_route(
            &node_routes,
            &format!("{address} dev {host_if}"),
            &["scope link"]
        ),
        "{node_routes}"
    );
    let proxy_arp = node.ns.exec_ok(&[
        "cat",
        &format!("/proc/sys/net/ipv4/conf/{host_if}/proxy_arp"),
    ]);
    assert_eq!(String::from_utf8_lossy(&proxy_arp.stdout).trim(), "1");
    assert_eq!(node.allocations().len(), 1);
    assert_eq!(node.allocations()[0].address.to_string(), address);
    let cidr: strait_cni::ipam::PodCidr = node.cidr.parse().unwrap();
    assert!(
        cidr.is_pod_address(address.parse().unwrap()),
        "{address} in {cidr}"
    );

    // CHECK with the result as prevResult.
    let mut check_conf: Value = serde_json::from_str(&conf).unwrap();
    check_conf["prevResult"] = result.clone();
    let (ok, out) = node.plugin("CHECK", "ctr-a", &pod.path(), &check_conf.to_string());
    assert!(ok, "CHECK failed: {out}");

    // DEL, twice.
    let (ok, out) = node.plugin("DEL", "ctr-a", &pod.path(), &conf);
    assert!(ok, "DEL failed: {out}");
    assert!(!node.links().contains(&host_if), "{}", node.links());
    assert!(node.allocations().is_empty());
    let (ok, out) = node.plugin("DEL", "ctr-a", &pod.path(), &conf);
    assert!(ok, "second DEL failed: {out}");

    // CHECK now fails, naming what is missing.
    let (ok, out) = node.plugin("CHECK", "ctr-a", &pod.path(), &check_conf.to_string());
    assert!(!ok);
    assert_eq!(out["code"], 102, "{out}");
    assert!(out["msg"].as_str().unwrap().contains("eth0"), "{out}");
}

#[test]
fn two_pods_on_one_node_talk_tcp() {
    let node = Node::new();
    let (pod_a, pod_b) = (Netns::new("cnp"), Netns::new("cnp"));
    let conf = node.conf("1.0.0");
    let (ok, a) = node.plugin("ADD", "ctr-a", &pod_a.path(), &conf);
    assert!(ok, "ADD a: {a}");
    let (ok, b) = node.plugin("ADD", "ctr-b", &pod_b.path(), &conf);
    assert!(ok, "ADD b: {b}");
    let (addr_a, addr_b) = (pod_address(&a), pod_address(&b));
    assert_ne!(addr_a, addr_b);

    // A listener in pod B (the socket stays in B's namespace), an echo thread serving it.
    let listener =
        pod_b.run(|| TcpListener::bind(format!("{addr_b}:7070")).expect("bind in pod B"));
    let echo = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf).expect("write");
        peer.ip().to_string()
    });
    let reply = pod_a.run(|| {
        let mut stream = TcpStream::connect_timeout(
            &format!("{addr_b}:7070").parse().unwrap(),
            Duration::from_secs(5),
        )
        .expect("connect from pod A to pod B");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).expect("read the echo");
        buf
    });
    assert_eq!(&reply, b"hello");
    assert_eq!(
        echo.join().unwrap(),
        addr_a,
        "pod B sees pod A's own address (no NAT)"
    );

    for (id, pod) in [("ctr-a", &pod_a), ("ctr-b", &pod_b)] {
        let (ok, out) = node.plugin("DEL", id, &pod.path(), &conf);
        assert!(ok, "DEL {id}: {out}");
    }
    assert!(node.allocations().is_empty());
}

#[test]
fn add_with_a_missing_netns_fails_and_leaves_nothing() {
    let node = Node::new();
    let missing = PathBuf::from(format!("/run/netns/strait-missing-{}", std::process::id()));
    let (ok, out) = node.plugin("ADD", "ctr-x", &missing, &node.conf("1.0.0"));
    assert!(!ok);
    assert_eq!(out["code"], 3, "{out}");
    assert!(
        out["msg"]
            .as_str()
            .unwrap()
            .contains(missing.to_str().unwrap()),
        "{out}"
    );
    assert_eq!(node.links().lines().count(), 1, "only lo: {}", node.links());
    assert!(node.allocations().is_empty());
    // DEL of the unknown container with its missing netns is success.
    let (ok, out) = node.plugin("DEL", "ctr-x", &missing, &node.conf("1.0.0"));
    assert!(ok, "{out}");
}

#[test]
fn a_failure_after_allocation_is_undone() {
    let node = Node::new();
    let pod = Netns::new("cnp");
    // An eth0 already in the pod makes the veth creation fail after the address is taken.
    pod.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let (ok, out) = node.plugin("ADD", "ctr-y", &pod.path(), &node.conf("1.0.0"));
    assert!(!ok);
    assert_eq!(out["code"], 101, "{out}");
    assert!(out["msg"].as_str().unwrap().contains("eth0"), "{out}");
    assert_eq!(node.links().lines().count(), 1, "only lo: {}", node.links());
    assert!(node.allocations().is_empty(), "the address was released");
}

#[test]
fn add_twice_is_refused_and_keeps_the_first() {
    let node = Node::new();
    let pod = Netns::new("cnp");
    let conf = node.conf("1.0.0");
    let (ok, first) = node.plugin("ADD", "ctr-z", &pod.path(), &conf);
    assert!(ok, "{first}");
    let (ok, out) = node.plugin("ADD", "ctr-z", &pod.path(), &conf);
    assert!(!ok);
    assert_eq!(out["code"], 103, "{out}");
    assert_eq!(node.allocations().len(), 1);
    assert_eq!(
        node.allocations()[0].address.to_string(),
        pod_address(&first)
    );
    assert!(
        node.links()
            .contains(&strait_cni::host_veth_name("lxc", "ctr-z", "eth0"))
    );
    let (ok, out) = node.plugin("DEL", "ctr-z", &pod.path(), &conf);
    assert!(ok, "{out}");
}

#[test]
fn check_reports_a_missing_route() {
    let node = Node::new();
    let pod = Netns::new("cnp");
    let conf = node.conf("0.4.0");
    let (ok, result) = node.plugin("ADD", "ctr-c", &pod.path(), &conf);
    assert!(ok, "{result}");
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_eq!(
        result["ips"][0]["version"], "4",
        "0.4.0 results carry ip versions"
    );
    pod.exec_ok(&["ip", "route", "del", "default"]);
    let mut check_conf: Value = serde_json::from_str(&conf).unwrap();
    check_conf["prevResult"] = result;
    let (ok, out) = node.plugin("CHECK", "ctr-c", &pod.path(), &check_conf.to_string());
    assert!(!ok);
    assert_eq!(out["code"], 102, "{out}");
    assert_eq!(out["cniVersion"], "0.4.0");
    assert!(out["msg"].as_str().unwrap().contains("0.0.0.0/0"), "{out}");
    let (ok, out) = node.plugin("DEL", "ctr-c", &pod.path(), &conf);
    assert!(ok, "{out}");
}

#[test]
fn an_ipam_that_does_not_answer_means_try_again_later() {
    let node = Node::new();
    let pod = Netns::new("cnp");
    let dir = tempfile::tempdir().unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "strait", "type": "strait-cni",
        "ipam": {"socket": dir.path().join("nobody.sock"), "timeoutMs": 300},
    })
    .to_string();
    let (ok, out) = node.plugin("ADD", "ctr-t", &pod.path(), &conf);
    assert!(!ok);
    assert_eq!(out["code"], 11, "{out}");
    assert!(
        out["msg"].as_str().unwrap().contains("nobody.sock"),
        "{out}"
    );
    assert_eq!(node.links().lines().count(), 1, "only lo: {}", node.links());
}

/// The reference `bridge` + `host-local` plugins (Debian's containernetworking-plugins) on
/// the same kind of input: the same top-level fields; see `strait_cni::result` for the
/// documented differences inside them.
#[test]
fn result_has_the_reference_bridge_plugins_top_level_fields() {
    let bridge = Path::new("/usr/lib/cni/bridge");
    assert!(
        bridge.exists(),
        "{} is missing: install Debian's containernetworking-plugins",
        bridge.display()
    );
    let node = Node::new();
    let (pod_ref, pod_ours) = (Netns::new("cnp"), Netns::new("cnp"));
    let state = tempfile::tempdir().unwrap();
    let ref_conf = json!({
        "cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cnibr0",
        "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.199.0.0/24", "dataDir": state.path(),
                 "routes": [{"dst": "0.0.0.0/0"}]},
    })
    .to_string();
    let env = |cmd: &'static str, ns: &Netns| {
        vec![
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", "ref-1".to_owned()),
            ("CNI_NETNS", ns.path().display().to_string()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", "/usr/lib/cni".to_owned()),
        ]
    };
    let as_refs =
        |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let add_env = as_refs(&env("ADD", &pod_ref));
    let add_env: Vec<(&str, &str)> = add_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, reference) = run_plugin(bridge.to_str().unwrap(), &node.ns, &add_env, &ref_conf);
    assert!(ok, "reference bridge ADD failed: {reference}");

    let (ok, ours) = node.plugin("ADD", "ours-1", &pod_ours.path(), &node.conf("1.0.0"));
    assert!(ok, "{ours}");

    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&ours),
        keys(&reference),
        "ours: {ours}\nreference: {reference}"
    );
    // Inside: both give the pod interface a sandbox and point ips at it by index.
    let sandbox_index = |v: &Value| {
        v["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .position(|i| i.get("sandbox").is_some())
    };
    assert_eq!(
        ours["ips"][0]["interface"].as_u64(),
        sandbox_index(&ours).map(|i| i as u64)
    );
    assert_eq!(
        reference["ips"][0]["interface"].as_u64(),
        sandbox_index(&reference).map(|i| i as u64)
    );
    for v in [&ours, &reference] {
        let ip = v["ips"][0].as_object().unwrap();
        assert!(
            ip.contains_key("address") && ip.contains_key("gateway"),
            "{v}"
        );
    }

    let del_env = as_refs(&env("DEL", &pod_ref));
    let del_env: Vec<(&str, &str)> = del_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out) = run_plugin(bridge.to_str().unwrap(), &node.ns, &del_env, &ref_conf);
    assert!(ok, "reference bridge DEL failed: {out}");
    let (ok, out) = node.plugin("DEL", "ours-1", &pod_ours.path(), &node.conf("1.0.0"));
    assert!(ok, "{out}");
}
