//! A whole cluster in namespaces, for the cluster tier: a `strait-control` and `N` nodes, each
//! running a real `strait-agent`, joined over an underlay bridge.
//!
//! ```text
//!             underlay netns: bridge br0 (10.77.0.0/24)
//!        ┌────────────────┬──────────────────┬──────────────────┐
//!   control netns     node-0 netns        node-1 netns        …
//!   10.77.0.2:6443    eth 10.77.0.10      eth 10.77.0.11
//!   strait-control    strait-agent        strait-agent
//!                     pods 10.244.0.0/24  pods 10.244.1.0/24
//! ```
//!
//! Each agent runs in its node's namespace through `nsenter --net` (not `ip netns exec`,
//! which remounts /sys and would hide bpffs), with its own state directory, pin directory and
//! cgroup2 subtree. On drop the agents are killed and everything they made is removed: runc
//! containers, mounts under their state directories, pod cgroups in every hierarchy.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{Cgroup, ControlPlane, Netns, PinDir, VethPair, plug_into_bridge};

/// The underlay's /24.
pub const UNDERLAY: &str = "10.77.0";
/// The image reference [`Cluster::start_with_busybox`] imports on every node.
pub const BUSYBOX: &str = "strait.test/busybox:1";
/// The control plane's address on the underlay.
pub const CONTROL_IP: &str = "10.77.0.2";

/// One node: its namespace, agent and directories.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub ip: String,
    pub netns: Arc<Netns>,
    pub state_dir: PathBuf,
    pub cgroup: Cgroup,
    pub pins: PinDir,
    pub uplink: String,
    agent: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    _link: VethPair,
}

impl Node {
    /// The agent's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent's process id while it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Kills the agent with SIGKILL, leaving its pods, maps and state behind.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again, without the join token (it rejoins with its kubeconfig).
    pub fn restart_agent(&mut self) {
        self.kill_agent();
        let args: Vec<String> = self
            .args
            .iter()
            .filter(|a| !a.starts_with("--token="))
            .cloned()
            .collect();
        self.agent = Some(spawn_agent(&self.netns, &args, &self.log));
    }

    /// Runs `argv` inside the node's namespace.
    pub fn exec(&self, argv: &[&str]) -> std::process::Output {
        self.netns.exec(argv)
    }
}

/// A control plane and its nodes.
#[derive(Debug)]
pub struct Cluster {
    // Dropped first (see Drop): agents before the control plane and the namespaces.
    pub nodes: Vec<Node>,
    pub control: ControlPlane,
    _control_link: VethPair,
    pub underlay: Arc<Netns>,
}

/// Where the workspace's binaries are: next to the test's own agent binary.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub control: PathBuf,
    pub agent: PathBuf,
    pub cni_dir: PathBuf,
}

impl Binaries {
    /// `strait-control` and `strait-cni` beside `agent` (cargo builds every binary of the
    /// workspace into one directory; `cargo build` first when testing one package).
    pub fn beside(agent: &Path) -> Self {
        let dir = agent.parent().expect("a binary directory").to_owned();
        for name in ["strait-control", "strait-cni"] {
            assert!(
                dir.join(name).exists(),
                "{} is missing: run `cargo build` (the cluster tier needs every binary)",
                dir.join(name).display()
            );
        }
        Self {
            control: dir.join("strait-control"),
            agent: agent.to_owned(),
            cni_dir: dir,
        }
    }
}

impl Cluster {
    /// Starts a control plane and `nodes` agents, and waits until every Node is Ready.
    pub fn start(bins: &Binaries, nodes: usize, agent_extra: &[&str]) -> Self {
        let underlay = Arc::new(Netns::new("stu"));
        underlay.add_bridge("br0");
        let control_ns = Arc::new(Netns::new("stc"));
        let control_link =
            plug_into_bridge(&control_ns, &format!("{CONTROL_IP}/24"), &underlay, "br0");
        let control = ControlPlane::start_listening(
            &bins.control,
            control_ns,
            &format!("{CONTROL_IP}:6443"),
            &[],
        );
        let token = control.node_token();
        let mut cluster = Self {
            nodes: Vec::new(),
            control,
            _control_link: control_link,
            underlay,
        };
        for i in 0..nodes {
            let netns = Arc::new(Netns::new("stn"));
            let ip = format!("{UNDERLAY}.{}", 10 + i);
            let link = plug_into_bridge(&netns, &format!("{ip}/24"), &cluster.underlay, "br0");
            netns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let name = format!("node-{i}");
            let state_dir = tempfile::Builder::new()
                .prefix("strait-agent-test-")
                .tempdir()
                .expect("a state directory")
                .keep();
            let cgroup = Cgroup::new("stn");
            let pins = PinDir::new("stn");
            let log = state_dir.join("agent.log");
            let mut args = vec![
                format!("--server=https://{CONTROL_IP}:6443"),
                format!("--token={token}"),
                format!("--node-name={name}"),
                format!("--node-ip={ip}"),
                format!("--state-dir={}", state_dir.display()),
                format!("--pin-dir={}", pins.path().display()),
                format!("--cgroup={}", cgroup.path().display()),
                format!("--uplink={}", link.a.ifname),
                format!("--cni-bin-dir={}", bins.cni_dir.display()),
                format!("--image-dir={}", state_dir.join("images").display()),
            ];
            args.extend(agent_extra.iter().map(|s| (*s).to_owned()));
            let mut full = vec![bins.agent.display().to_string()];
            full.extend(args.iter().cloned());
            let agent = spawn_agent(&netns, &full, &log);
            cluster.nodes.push(Node {
                name,
                ip,
                netns,
                state_dir,
                cgroup,
                pins,
                uplink: link.a.ifname.clone(),
                agent: Some(agent),
                args: full,
                log,
                _link: link,
            });
        }
        cluster.wait_ready(Duration::from_secs(60));
        cluster
    }

    /// Waits until every node is Ready, or panics with the agents' logs.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.control.kubectl(
                "1.33",
                &[
                    "get",
                    "nodes",
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let ready = text.lines().filter(|l| l.ends_with("=True")).count();
            if ready == self.nodes.len() {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {} ---\n{}", n.name, n.log()))
                    .collect();
                panic!(
                    "{ready}/{} nodes Ready after {timeout:?}: {text}\n{}",
                    self.nodes.len(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A cluster whose agents import a busybox image as [`BUSYBOX`] (kept in the returned
    /// directory, which must outlive the cluster).
    pub fn start_with_busybox(bins: &Binaries, nodes: usize) -> (Self, tempfile::TempDir) {
        let images = tempfile::tempdir().expect("an image directory");
        let archive = crate::image::busybox_archive(images.path(), BUSYBOX, &[]);
        let import = format!("--import-image={}", archive.display());
        (Self::start(bins, nodes, &[&import]), images)
    }

    /// `kubectl apply` of a manifest (JSON or YAML); panics unless it succeeds.
    pub fn apply(&self, manifest: &str) -> String {
        let file = tempfile::NamedTempFile::new().expect("a manifest file");
        fs::write(file.path(), manifest).expect("write the manifest");
        self.kubectl(&["apply", "-f", file.path().to_str().expect("a UTF-8 path")])
    }

    /// Waits until every node's maps hold the same NetworkPolicy set, and a different one
    /// from `before` (a digest this returned earlier; empty at first), as each agent reports
    /// in its Node's `policy.strait.dev/programmed` annotation. Returns the digest.
    pub fn wait_policies_programmed(&self, before: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.kubectl(&["get", "nodes", "-o", "json"]);
            let nodes: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let digests: std::collections::BTreeSet<String> = nodes["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    n["metadata"]["annotations"]["policy.strait.dev/programmed"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            if let [digest] = digests.into_iter().collect::<Vec<_>>().as_slice()
                && !digest.is_empty()
                && digest != before
            {
                return digest.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nodes never agreed on the programmed policies\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kubectl (1.33) against the cluster; panics unless it succeeds.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.control.kubectl_ok("1.33", args)
    }

    /// All agents' logs, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn spawn_agent(netns: &Netns, argv: &[String], log: &Path) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the agent log");
    let err = out.try_clone().expect("clone the log handle");
    Command::new("nsenter")
        .arg(format!("--net={}", netns.path().display()))
        .arg("--")
        .args(argv)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start strait-agent")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill_agent();
            clean_node(node);
        }
    }
}

/// Removes what a node's agent made: containers, mounts, pod cgroups, state.
fn clean_node(node: &Node) {
    let runc_root = node.state_dir.join("runc");
    if runc_root.exists() {
        let root = runc_root.display().to_string();
        let listed = crate::cmd::output(&["runc", "--root", &root, "list", "-q"]);
        for id in String::from_utf8_lossy(&listed.stdout).lines() {
            let _ = crate::cmd::output(&["runc", "--root", &root, "delete", "--force", id]);
        }
    }
    // Mounts under the state directory, deepest first (rootfs overlays, volumes, netns files).
    let state = node.state_dir.display().to_string();
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&state))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        let _ = crate::cmd::output(&["umount", "-l", &mount]);
    }
    // Pod cgroups in every hierarchy (v1 controllers here), leaves first; the node's own
    // cgroup2 directory goes with its guard.
    if let Some(relative) = node
        .cgroup
        .path()
        .strip_prefix(strait_host::mounts::cgroup2_mount().unwrap_or_default())
        .ok()
        .map(Path::to_path_buf)
    {
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = hierarchy.path().join(&relative);
            remove_cgroup_tree(&dir, dir != node.cgroup.path());
        }
    }
    let _ = fs::remove_dir_all(&node.state_dir);
}

fn remove_cgroup_tree(dir: &Path, including_self: bool) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path(), true);
            }
        }
    }
    if including_self {
        let _ = fs::remove_dir(dir);
    }
}
