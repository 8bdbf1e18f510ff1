//! `cargo xtask demo`: what works today, on real traffic.
//!
//! Topology (two network namespaces joined by a veth pair):
//!
//! ```text
//!  client netns (in the demo's cgroup)          backend netns
//!  10.0.1.1 ─────────── veth ───────────────── 10.0.1.2:8080  "backend-a"  ready
//!                                              10.0.1.3:8080  "backend-b"  ready
//!                                              10.0.1.4:8080  "backend-c"  not ready
//!  connect(10.96.0.10:80) ──[cgroup connect4: service map]──▶ a ready backend
//! ```
//!
//! `strait-control` runs on its embedded store and kubectl applies the app (a Service and
//! its EndpointSlice); what the API then holds is handed to the agent as a file, until the
//! agent watches the API itself (issue 10).
//! The agent compiles a Service and its EndpointSlice (kube-proxy's semantics: ready
//! endpoints only, named target port), programs the maps and attaches to the demo's cgroup.
//! A busybox `nc` client in the client namespace fetches the service address. The agent then
//! stops: pinned programs and maps keep serving. A new agent adopts them. Finally the pins are
//! removed and the same request fails, because nothing routes 10.96.0.10 without the program.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use strait_tests::{Cgroup, ControlPlane, HttpServer, Netns, PinDir, VethPair, http_get};

use crate::exec::{cargo_build, exec, render, require_root, target_dir};

const VIP: &str = "10.96.0.10:80";

/// The demo app, as `kubectl apply -f` takes it.
const APP: &str = r#"{
  "apiVersion": "v1", "kind": "List",
  "items": [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "web", "namespace": "shop"},
     "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
              "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "web-x7k2p", "namespace": "shop",
                  "labels": {"kubernetes.io/service-name": "web"}},
     "addressType": "IPv4",
     "ports": [{"name": "http", "port": 8080}],
     "endpoints": [
       {"addresses": ["10.0.1.2"], "conditions": {"ready": true}},
       {"addresses": ["10.0.1.3"], "conditions": {"ready": true}},
       {"addresses": ["10.0.1.4"], "conditions": {"ready": false}}]}
  ]}"#;

pub(crate) fn run() -> anyhow::Result<()> {
    require_root("demo")?;
    crate::setup::run()?;
    cargo_build()?;
    let bin = target_dir().join("debug");

    println!("\n== Strait demo: a Kubernetes Service routed by eBPF at connect() ==\n");
    let client = Netns::new("dmc");
    let backends = Netns::new("dmb");
    let link = VethPair::new(&client, "10.0.1.1/24", &backends, "10.0.1.2/24");
    for extra in ["10.0.1.3/24", "10.0.1.4/24"] {
        backends.exec_ok(&["ip", "addr", "add", extra, "dev", &link.b.ifname]);
    }
    let _servers = [
        HttpServer::start(&backends, addr("10.0.1.2:8080"), "hello from backend-a\n"),
        HttpServer::start(&backends, addr("10.0.1.3:8080"), "hello from backend-b\n"),
        HttpServer::start(
            &backends,
            addr("10.0.1.4:8080"),
            "backend-c is not ready!\n",
        ),
    ];
    let cgroup = Cgroup::new("strait-demo-");
    let pins = PinDir::new("strait-demo-");
    let manifest = std::env::temp_dir().join(format!("strait-demo-{}.json", std::process::id()));
    let _manifest = RemoveOnDrop(&manifest);

    println!("\n-- strait-control on the embedded store (a redb file); kubectl applies the app --");
    let plane = ControlPlane::start(&bin.join("strait-control"), &[]);
    let app = plane.data_dir().join("app.json");
    fs::write(&app, APP).context("write the demo app")?;
    let app = app.to_str().context("a UTF-8 path")?;
    print!("{}", plane.kubectl_ok("1.33", &["apply", "-f", app]));
    print!(
        "{}",
        plane.kubectl_ok("1.33", &["get", "services,endpointslices", "-n", "shop"])
    );
    // Until the agent watches the API (issue 10), it reads what the API holds from a file.
    let listed = plane.kubectl_ok(
        "1.33",
        &["get", "services,endpointslices", "-n", "shop", "-o", "json"],
    );
    fs::write(&manifest, listed).context("write the agent's manifest")?;
    println!(
        "   (kubectl get … -o json → the agent's --manifest, until the agent watches the API)"
    );
    println!(
        "client netns {}, backend netns {}, cgroup {}, maps pinned in {}",
        client.name(),
        backends.name(),
        cgroup.path().display(),
        pins.path().display()
    );
    println!(
        "Service shop/web 10.96.0.10:80 → targetPort `http`; EndpointSlice: a, b ready, c not ready"
    );

    let agent = |bin: &Path| {
        let mut command = Command::new(bin.join("strait-agent"));
        command
            .arg("--pin-dir")
            .arg(pins.path())
            .arg("--cgroup")
            .arg(cgroup.path())
            .arg("--manifest")
            .arg(&manifest);
        command
    };
    let mut first = Agent::start(&mut agent(&bin))?;

    println!("\n-- eight requests from the client namespace to http://{VIP}/ --");
    for _ in 0..8 {
        print!("   {}", fetch(&client, &cgroup)?);
    }

    println!("\n-- netctl bpf dump services --");
    exec(
        Command::new(bin.join("netctl"))
            .args(["bpf", "dump", "services", "--pin-dir"])
            .arg(pins.path()),
    )?;

    println!("\n-- the agent stops; its programs and maps stay pinned and keep serving --");
    first.stop();
    print!("   {}", fetch(&client, &cgroup)?);

    println!("\n-- a new agent adopts the pinned maps --");
    let mut second = Agent::start(&mut agent(&bin))?;
    print!("   {}", fetch(&client, &cgroup)?);
    second.stop();

    println!("\n-- the pins are removed (what uninstalling does); the same request again --");
    fs::remove_dir_all(pins.path().join("links")).context("unpin the demo's links")?;
    match fetch(&client, &cgroup) {
        Ok(body) => bail!("the request still reached a backend without the program: {body}"),
        Err(e) => println!("   fails as it should: {e:#}"),
    }

    println!(
        "\nWorking today: the eBPF object built and embedded; Services and EndpointSlices \
         compiled with kube-proxy's semantics; socket-level translation for IPv4 and IPv6 \
         (connect, sendmsg, recvmsg, getpeername) with random choice and ClientIP affinity; the \
         per-packet path on a node's uplink for IPv4 and IPv6 (NodePort, SNAT to remote \
         backends, conntrack, reverse NAT, Maglev, ICMP errors); pinned maps and programs \
         adopted across agent restarts; `netctl bpf dump`; the Kubernetes API server on redb or \
         etcd that kubectl and client libraries use unchanged; `netctl bench services` against \
         kube-proxy.\n\
         Not built yet: the agent running pods with runc and strait-cni and watching the API \
         (issue 10), controllers and scheduler (issue 6), NetworkPolicy (issue 7), cluster DNS \
         (issue 8), `netctl cluster up` (issue 9)."
    );
    Ok(())
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a literal socket address")
}

/// One HTTP GET of the service address from inside the client namespace and the demo cgroup.
fn fetch(client: &Netns, cgroup: &Cgroup) -> anyhow::Result<String> {
    http_get(client, Some(cgroup.path()), VIP)
        .map_err(|e| anyhow::anyhow!("GET http://{VIP}/: {e}"))
}

/// Removes a file when dropped.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// The agent process, stopped with SIGTERM on drop.
struct Agent {
    child: Child,
}

impl Agent {
    /// Starts the agent and waits for it to log that its dataplane is ready.
    fn start(command: &mut Command) -> anyhow::Result<Self> {
        println!("$ {}", render(command));
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .context("failed to start strait-agent")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("   agent | {line}");
                if line.contains("dataplane ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut agent = Self { child };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            agent.stop();
            bail!("strait-agent did not report `dataplane ready` within 10 s");
        }
        Ok(agent)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
