//! The node agents as a DaemonSet-like service, as a user sees them: `kubectl get ds -n
//! kube-system strait-agent` and `netctl get agents` count the agents of a real local
//! cluster; `netctl node upgrade` rolls them to a rebuilt binary node by node while one
//! established TCP connection through a ClusterIP Service keeps flowing; `netctl node
//! install --root` joins one more node as a supervised service and `uninstall` stops it.
//!
//! ```text
//!   node-0: pod ticker (sends 1, 2, 3, … every 100 ms on :8080)  ◄── Service ticker:8080
//!   node-1: pod reader (`nc <ClusterIP> 8080`, one connection)  ──┘
//!   edge  : a third namespace on the underlay, its agent installed by `netctl node install`
//! ```
//!
//! Each test names its cluster uniquely and removes it on drop, also when it panics.

use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

mod common;

use common::{NETCTL, Up, netctl, text, unique, wait_until};

/// The DaemonSet's status counts, in `kubectl get ds` column order (DESIRED CURRENT READY
/// UP-TO-DATE AVAILABLE).
fn counts(up: &Up) -> [i64; 5] {
    let status = &up.json(&["get", "ds", "-n", "kube-system", "strait-agent"])["status"];
    [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
    ]
    .map(|k| status[k].as_i64().unwrap_or(-1))
}

/// The numbers the reader pod received, in order; an error while it is not running yet.
fn received(up: &Up) -> Result<Vec<u64>, String> {
    let out = up.kubectl_output(&["logs", "reader"], None);
    if !out.status.success() {
        return Err(text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Received numbers are 1, 2, 3, … without a gap or a restart: one connection all along.
fn assert_one_stream(numbers: &[u64]) {
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected.as_slice(), "one unbroken stream");
}

fn sha256_prefix(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..12].to_owned()
}

fn pod(name: &str, node: &str, labels: Value, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "strait.local/busybox:1",
                            "command": ["sh", "-c", script]}],
        },
    })
}

#[test]
fn agents_show_as_a_daemon_set_and_roll_to_a_new_binary_without_breaking_a_connection() {
    let name = unique('u');
    let up = Up::start(&name, 2);

    // The agents as a DaemonSet: two nodes, every agent current, ready and up to date.
    wait_until(
        "the agents' DaemonSet counts",
        Duration::from_secs(30),
        || {
            let counts = counts(&up);
            (counts == [2; 5])
                .then_some(())
                .ok_or(format!("{counts:?}"))
        },
    );
    let table = up.kubectl(&["get", "ds", "-n", "kube-system", "strait-agent"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0][..6],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE"
        ],
        "{table}"
    );
    assert_eq!(
        rows[1][..6],
        ["strait-agent", "2", "2", "2", "2", "2"],
        "{table}"
    );
    // No pods for it: the agents are host processes.
    let pods = up.kubectl(&["get", "pods", "-n", "kube-system", "-o", "name"]);
    assert!(!pods.contains("strait-agent"), "{pods}");

    let old_version = format!(
        "{}+{}",
        env!("CARGO_PKG_VERSION"),
        sha256_prefix(&Path::new(NETCTL).with_file_name("strait-agent"))
    );
    let listed = text(&netctl(&["get", "agents", "--name", &name]));
    for node in ["node-0", "node-1"] {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [node, "True", &old_version, "yes"]),
            "{node} in\n{listed}"
        );
    }
    assert!(
        listed.contains("2 agent(s): 2 ready, 2 up to date"),
        "{listed}"
    );

    // One connection through a ClusterIP Service, from node-1 to node-0.
    up.apply(&pod(
        "ticker",
        "node-0",
        json!({"app": "ticker"}),
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done | nc -l -p 8080",
    ));
    up.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ticker", "namespace": "default"},
        "spec": {"selector": {"app": "ticker"}, "ports": [{"port": 8080, "targetPort": 8080}]},
    }));
    let cluster_ip = up.kubectl(&["get", "svc", "ticker", "-o", "jsonpath={.spec.clusterIP}"]);
    wait_until("the ticker to run", Duration::from_secs(60), || {
        let phase = up.kubectl(&["get", "pod", "ticker", "-o", "jsonpath={.status.phase}"]);
        (phase == "Running").then_some(()).ok_or(phase)
    });
    wait_until("the Service's endpoint", Duration::from_secs(30), || {
        let ready = up.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=ticker",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ]);
        (!ready.trim().is_empty()).then_some(()).ok_or(ready)
    });
    // Standard input never ends: busybox nc would half-close the connection at its end.
    up.apply(&pod(
        "reader",
        "node-1",
        json!({"app": "reader"}),
        &format!("sleep 100000 | nc {cluster_ip} 8080"),
    ));
    wait_until("the reader to receive", Duration::from_secs(60), || {
        let numbers = received(&up)?;
        (numbers.len() >= 10)
            .then_some(())
            .ok_or(format!("{numbers:?}"))
    });

    // A missing binary: refused by name, nothing restarted, no desired version set.
    let before = up.agents();
    let out = netctl(&[
        "node",
        "upgrade",
        "--name",
        &name,
        "--binary",
        "/nonexistent/strait-agent",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("agent binary /nonexistent/strait-agent does not exist"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    assert_eq!(up.agents(), before, "nothing restarted");
    let annotations =
        &up.json(&["get", "ds", "-n", "kube-system", "strait-agent"])["metadata"]["annotations"];
    assert!(
        annotations.get("strait.dev/agent-version").is_none(),
        "{annotations}"
    );

    // A rebuilt agent: the same program with a byte appended (ELF ignores it), so another
    // build id.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let new_binary = dir.path().join("strait-agent");
    let mut bytes = fs::read(Path::new(NETCTL).with_file_name("strait-agent")).expect("the agent");
    bytes.push(0);
    fs::write(&new_binary, bytes).expect("write the new agent");
    fs::set_permissions(
        &new_binary,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make it executable");
    let new_version = format!(
        "{}+{}",
        env!("CARGO_PKG_VERSION"),
        sha256_prefix(&new_binary)
    );
    assert_ne!(new_version, old_version);

    let started = Instant::now();
    let out = netctl(&[
        "node",
        "upgrade",
        "--name",
        &name,
        "--binary",
        &new_binary.display().to_string(),
        "--max-unavailable",
        "1",
    ]);
    let took = started.elapsed();
    assert!(out.status.success(), "upgrade: {}", text(&out));
    let progress = text(&out);
    println!(
        "upgrade of 2 agents took {:.1} s:\n{progress}",
        took.as_secs_f64()
    );
    assert!(
        progress.contains(&format!("desired version {new_version}")),
        "{progress}"
    );
    for node in ["node-0", "node-1"] {
        assert!(
            progress.contains(&format!("node {node}: Ready on the new version")),
            "{progress}"
        );
    }
    // One node at a time: node-0 is Ready before node-1 restarts.
    let ready_0 = progress.find("node node-0: Ready").unwrap_or(usize::MAX);
    let restart_1 = progress.find("node node-1: restarting").unwrap_or(0);
    assert!(ready_0 < restart_1, "{progress}");

    // Every agent restarted with the new binary and reports the new version.
    let after = up.agents();
    for ((node, old_pid, _), (_, new_pid, binary)) in before.iter().zip(&after) {
        assert_ne!(old_pid, new_pid, "{node} restarted");
        assert_eq!(Path::new(binary), new_binary, "{node} runs the new binary");
    }
    for node in ["node-0", "node-1"] {
        let annotations = &up.json(&["get", "node", node])["metadata"]["annotations"];
        assert_eq!(
            annotations["strait.dev/agent-version"],
            new_version.as_str(),
            "{node}"
        );
    }
    wait_until("every agent up to date", Duration::from_secs(30), || {
        let counts = counts(&up);
        (counts == [2; 5])
            .then_some(())
            .ok_or(format!("{counts:?}"))
    });
    // kubectl's own reading of a finished DaemonSet rollout.
    let rollout = up.kubectl(&[
        "rollout",
        "status",
        "ds/strait-agent",
        "-n",
        "kube-system",
        "--timeout=10s",
    ]);
    assert!(rollout.contains("successfully rolled out"), "{rollout}");
    let listed = text(&netctl(&["get", "agents", "--name", &name]));
    assert!(
        listed.contains(&format!(
            "2 agent(s): 2 ready, 2 up to date with {new_version} (desired by DaemonSet kube-system/strait-agent)"
        )),
        "{listed}"
    );

    // The connection survived: the reader still runs, never restarted, and the same stream
    // keeps coming, without a gap.
    let during = received(&up).expect("the reader's log");
    assert_one_stream(&during);
    thread::sleep(Duration::from_secs(1));
    let later = received(&up).expect("the reader's log");
    assert_one_stream(&later);
    assert!(
        later.len() > during.len(),
        "the stream keeps flowing after the upgrade: {} then {} numbers",
        during.len(),
        later.len()
    );
    let reader = up.json(&["get", "pod", "reader"]);
    assert_eq!(reader["status"]["phase"], "Running", "{reader}");
    assert_eq!(reader["status"]["containerStatuses"][0]["restartCount"], 0);
    println!(
        "the reader received {} numbers over one connection, across the upgrade",
        later.len()
    );

    // Again: every node is up to date, nothing is restarted.
    let again = netctl(&[
        "node",
        "upgrade",
        "--name",
        &name,
        "--binary",
        &new_binary.display().to_string(),
    ]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("0 agent(s) upgraded, 2 up to date already"),
        "{}",
        text(&again)
    );
    assert_eq!(up.agents(), after);

    install_joins_one_more_node(&up);
}

/// A network namespace on the cluster's underlay, removed on drop with what was installed in
/// it.
struct Edge {
    netns: String,
    root: tempfile::TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        if self.root.path().join("etc/strait/agent.env").exists() {
            let _ = netctl(&[
                "node",
                "uninstall",
                "--root",
                &self.root.path().display().to_string(),
            ]);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
}

fn install_joins_one_more_node(up: &Up) {
    let record = up.record();
    let plan = &record["plan"];
    let underlay = plan["underlay_netns"].as_str().expect("the underlay");
    let server = format!(
        "https://{}:6443",
        plan["host_ip"].as_str().expect("the host address")
    );
    let index = plan["index"].as_u64().expect("the cluster's index");
    let token = fs::read_to_string(up.dir().join("control/node-token")).expect("the node token");
    let edge = Edge {
        netns: format!("strait-{}-edge", up.name),
        root: tempfile::tempdir().expect("a temporary root"),
    };
    ip(&["netns", "add", &edge.netns]);
    ip(&["-n", &edge.netns, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        underlay,
        "link",
        "add",
        "edge",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &edge.netns,
    ]);
    ip(&["-n", underlay, "link", "set", "edge", "master", "br0", "up"]);
    ip(&[
        "-n",
        &edge.netns,
        "addr",
        "add",
        &format!("172.30.{index}.100/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &edge.netns, "link", "set", "eth0", "up"]);
    let root = edge.root.path().display().to_string();

    let out = netctl(&[
        "node",
        "install",
        "--server",
        &server,
        "--token",
        token.trim(),
        "--node-name",
        "edge",
        "--root",
        &root,
        "--netns",
        &edge.netns,
        "--uplink",
        "eth0",
    ]);
    assert!(out.status.success(), "install: {}", text(&out));
    // The node IP was found from the route to the server.
    assert!(
        text(&out).contains(&format!("172.30.{index}.100")),
        "{}",
        text(&out)
    );
    let config =
        fs::read_to_string(edge.root.path().join("etc/strait/agent.env")).expect("the config");
    assert!(config.contains("STRAIT_NODE_NAME=edge\n"), "{config}");
    let mode = fs::metadata(edge.root.path().join("etc/strait/agent.env"))
        .expect("config")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "the token is root's"
    );

    wait_until(
        "the installed node to be Ready",
        Duration::from_secs(90),
        || {
            let status = up.kubectl_output(
                &[
                    "get",
                    "node",
                    "edge",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            );
            let log = fs::read_to_string(edge.root.path().join("var/log/strait/agent.log"))
                .unwrap_or_default();
            (String::from_utf8_lossy(&status.stdout) == "True")
                .then_some(())
                .ok_or(log)
        },
    );
    // It runs the binary the cluster was made with, not the desired one.
    let listed = text(&netctl(&["get", "agents", "--name", &up.name]));
    assert!(
        listed.contains("3 agent(s): 3 ready, 2 up to date"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("edge") && l.trim_end().ends_with("no")),
        "{listed}"
    );

    // The supervisor restarts an agent that dies.
    let agent_pid = |root: &Path| -> Option<i32> {
        fs::read_to_string(root.join("run/strait/agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let log = || {
        fs::read_to_string(edge.root.path().join("var/log/strait/agent.log")).unwrap_or_default()
    };
    let first = agent_pid(edge.root.path()).expect("the agent's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill agent {first}: {e}; the log:\n{}", log()));
    wait_until(
        "the supervisor to restart the agent",
        Duration::from_secs(30),
        || match agent_pid(edge.root.path()) {
            Some(pid) if pid != first && Path::new(&format!("/proc/{pid}")).exists() => Ok(()),
            other => Err(format!("{other:?}; the log:\n{}", log())),
        },
    );

    // Installing twice is refused; uninstall stops both processes and removes the files.
    let again = netctl(&[
        "node",
        "install",
        "--server",
        &server,
        "--token",
        token.trim(),
        "--root",
        &root,
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("installed already"),
        "{}",
        text(&again)
    );
    let supervisor: i32 = fs::read_to_string(edge.root.path().join("run/strait/supervisor.pid"))
        .expect("the supervisor's pid")
        .trim()
        .parse()
        .expect("a pid");
    let agent = agent_pid(edge.root.path()).expect("the agent's pid");
    let out = netctl(&["node", "uninstall", "--root", &root]);
    assert!(out.status.success(), "uninstall: {}", text(&out));
    for pid in [supervisor, agent] {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {pid} is gone: {stat}"
        );
    }
    for file in [
        "etc/strait/agent.env",
        "run/strait/supervisor.pid",
        "run/strait/agent.pid",
    ] {
        assert!(!edge.root.path().join(file).exists(), "{file} removed");
    }
    // The pins it had, named after its root, are gone.
    let key = root
        .trim_start_matches('/')
        .replace('/', "-")
        .replace('.', "_");
    let pins = Path::new("/sys/fs/bpf/strait/roots").join(key);
    assert!(!pins.exists(), "{} removed", pins.display());
    up.kubectl(&["delete", "node", "edge"]);
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let root = tempfile::tempdir().expect("a temporary root");
    let root_arg = root.path().display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "node",
                "upgrade",
                "--name",
                "nosuchcluster",
                "--binary",
                NETCTL,
            ],
            "there is no cluster \"nosuchcluster\"",
        ),
        (
            &[
                "node",
                "install",
                "--server",
                "https://127.0.0.1:6443",
                "--token",
                "t",
                "--binary",
                "/nonexistent/strait-agent",
                "--root",
                &root_arg,
            ],
            "agent binary /nonexistent/strait-agent does not exist",
        ),
        (
            // netctl is executable, but not an agent.
            &[
                "node",
                "install",
                "--server",
                "https://127.0.0.1:6443",
                "--token",
                "t",
                "--binary",
                NETCTL,
                "--root",
                &root_arg,
            ],
            "is not a strait-agent",
        ),
        (
            &["node", "uninstall", "--root", &root_arg],
            "no agent is installed under",
        ),
    ];
    for (argv, message) in cases {
        let out = netctl(argv);
        assert!(!out.status.success(), "{argv:?}");
        assert!(text(&out).contains(message), "{argv:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
        assert_eq!(
            fs::read_dir(root.path()).expect("the root").count(),
            0,
            "{argv:?} wrote nothing"
        );
    }
}
