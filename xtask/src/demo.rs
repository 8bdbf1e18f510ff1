//! `cargo xtask demo`: what works today, on real traffic.
//!
//! Topology (two network namespaces joined by a veth pair):
//!
//! ```text
//!  client netns (in cgroup strait-demo…)        backend netns
//!  10.0.1.1 ─────────── veth ───────────────── 10.0.1.2:8080  "backend-a"
//!                                              10.0.1.3:8080  "backend-b"
//!  connect(10.96.0.10:80) ──[cgroup connect4: service map]──▶ one of the backends
//! ```
//!
//! The agent loads the dataplane, programs the service and attaches to the demo's cgroup; a
//! busybox `nc` client in the client namespace fetches the service address; then the agent stops
//! and the same request fails, because nothing routes 10.96.0.10 without the program.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use strait_tests::{Cgroup, HttpServer, Netns, PinDir, VethPair, http_get};

use crate::exec::{cargo_build, exec, require_root, target_dir};

const VIP: &str = "10.96.0.10:80";

pub(crate) fn run() -> anyhow::Result<()> {
    require_root("demo")?;
    crate::setup::run()?;
    cargo_build()?;
    let bin = target_dir().join("debug");

    println!("\n== Strait demo: a Service routed by eBPF at connect() ==\n");
    let client = Netns::new("dmc");
    let backends = Netns::new("dmb");
    let link = VethPair::new(&client, "10.0.1.1/24", &backends, "10.0.1.2/24");
    backends.exec_ok(&["ip", "addr", "add", "10.0.1.3/24", "dev", &link.b.ifname]);
    let _a = HttpServer::start(&backends, addr("10.0.1.2:8080"), "hello from backend-a\n");
    let _b = HttpServer::start(&backends, addr("10.0.1.3:8080"), "hello from backend-b\n");
    let cgroup = Cgroup::new("strait-demo-");
    let pins = PinDir::new("strait-demo-");
    println!(
        "client netns {}, backend netns {}, cgroup {}, maps pinned in {}",
        client.name(),
        backends.name(),
        cgroup.path().display(),
        pins.path().display()
    );

    let mut agent = Agent::start(
        Command::new(bin.join("strait-agent"))
            .arg("--pin-dir")
            .arg(pins.path())
            .arg("--cgroup")
            .arg(cgroup.path())
            .args(["--service", &format!("{VIP}=10.0.1.2:8080,10.0.1.3:8080")]),
    )?;

    println!("\n-- six requests from the client namespace to http://{VIP}/ --");
    for _ in 0..6 {
        let body = fetch(&client, &cgroup)?;
        print!("   {body}");
    }

    println!("\n-- netctl bpf dump --");
    exec(
        Command::new(bin.join("netctl"))
            .args(["bpf", "dump", "--pin-dir"])
            .arg(pins.path()),
    )?;

    println!("\n-- the agent stops (its programs detach); the same request again --");
    agent.stop();
    match fetch(&client, &cgroup) {
        Ok(body) => bail!("the request still reached a backend without the program: {body}"),
        Err(e) => println!("   fails as it should: {e:#}"),
    }

    println!(
        "\nWorking today: eBPF object built and embedded, maps pinned, cgroup connect4 service \
         translation with random backend choice, `netctl bpf dump`.\n\
         Not built yet: the API server and store (issue 5), the agent running pods with runc and \
         strait-cni (issue 10), the full service dataplane (NodePort, conntrack, reverse NAT: \
         issue 3), controllers (issue 6), NetworkPolicy (issue 7), cluster DNS (issue 8), \
         `netctl cluster up` (issue 9)."
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

/// The agent process, stopped with SIGTERM on drop.
struct Agent {
    child: Child,
}

impl Agent {
    /// Starts the agent and waits for it to log that its dataplane is ready.
    fn start(command: &mut Command) -> anyhow::Result<Self> {
        println!("$ {}", crate::exec::render(command));
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
