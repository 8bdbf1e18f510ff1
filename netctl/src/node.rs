//! `netctl node`: this machine's node agent as a service, and rolling upgrades of a local
//! cluster's agents.
//!
//! - `upgrade`: a local cluster's agents to another binary, node by node
//!   ([`strait_cluster::upgrade`]).
//! - `install` / `uninstall`: the agent as a service of this machine, as k3s installs its
//!   agent: a config file the agent reads (`/etc/strait/agent.env`, the `STRAIT_*`
//!   variables of `strait-agent`'s flags) and a systemd unit when systemd is PID 1, or else
//!   a supervising `netctl node supervise` that restarts the agent when it exits.
//! - `supervise`: that supervisor (not for users to run).
//!
//! `--root DIR` installs under DIR instead of `/` (so tests can install into a temporary
//! directory): the config, pid files and the agent's state go under DIR, and its pins and
//! cgroup into a subtree named after DIR, so an installed agent never shares them with
//! another. With `--root` the service is always the supervisor (a systemd unit under DIR
//! would not be seen by systemd).

use std::{
    fmt::Write as _,
    fs,
    io::Write as _,
    net::Ipv4Addr,
    os::unix::{fs::OpenOptionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use nix::{sys::signal, unistd::Pid};
use strait_cluster::upgrade::{self, Event};

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Upgrade a local cluster's agents to another binary, at most --max-unavailable at a
    /// time, each node Ready on the new version before the next; pods and connections stay.
    Upgrade {
        /// The new strait-agent binary.
        #[arg(long)]
        binary: PathBuf,
        /// How many agents may restart at once.
        #[arg(long, default_value_t = 1)]
        max_unavailable: usize,
        /// The local cluster.
        #[arg(long, default_value = "strait")]
        name: String,
        /// Seconds one node may take to be Ready on the new version.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Install the agent as a service of this machine, joined to the cluster at --server.
    Install {
        /// The API server, `https://HOST:PORT`.
        #[arg(long, env = "STRAIT_SERVER")]
        server: String,
        /// The join token (strait-control's `node-token` file); from the environment, it
        /// stays out of the process list.
        #[arg(long, env = "STRAIT_TOKEN", hide_env_values = true)]
        token: String,
        /// The Node's name (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// The Node's InternalIP (default: the address this machine reaches the server from).
        #[arg(long)]
        node_ip: Option<Ipv4Addr>,
        /// The agent binary (default: strait-agent beside netctl).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Install under this directory instead of `/`.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Run the agent in this network namespace (under /run/netns).
        #[arg(long)]
        netns: Option<String>,
        /// The node's uplink device (NodePort and outside traffic are translated there).
        #[arg(long)]
        uplink: Option<String>,
    },
    /// Stop and remove the agent service `install` made (the agent's state stays).
    Uninstall {
        /// What `install` was given.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Run the agent described by a config file, restarting it when it exits.
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        config: PathBuf,
    },
}

pub(crate) fn run(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Upgrade {
            binary,
            max_unavailable,
            name,
            timeout,
        } => upgrade(&name, binary, max_unavailable, Duration::from_secs(timeout)),
        NodeCommand::Install {
            server,
            token,
            node_name,
            node_ip,
            binary,
            root,
            netns,
            uplink,
        } => install(Install {
            server,
            token,
            node_name,
            node_ip,
            binary,
            root,
            netns,
            uplink,
        }),
        NodeCommand::Uninstall { root } => uninstall(root.as_deref()),
        NodeCommand::Supervise { config } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(supervise(&config)),
    }
}

fn upgrade(
    name: &str,
    binary: PathBuf,
    max_unavailable: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut record = strait_cluster::Record::load(name)?
        .with_context(|| format!("there is no cluster {name:?} (see `netctl cluster status`)"))?;
    let options = upgrade::Options {
        binary,
        max_unavailable,
        timeout,
        grace: Duration::from_secs(10),
    };
    let summary = upgrade::upgrade(&mut record, &options, &mut |event| match event {
        Event::Desired { version } => println!(
            "daemonset kube-system/strait-agent: desired version {version} (max unavailable {max_unavailable})"
        ),
        Event::UpToDate { node } => println!("node {node}: up to date"),
        Event::Restarting { node } => println!("node {node}: restarting the agent"),
        Event::Upgraded { node, after } => println!(
            "node {node}: Ready on the new version after {:.1} s",
            after.as_secs_f64()
        ),
    })?;
    println!(
        "cluster {name}: {} agent(s) upgraded, {} up to date already, to {} in {:.1} s",
        summary.upgraded,
        summary.up_to_date,
        summary.version,
        summary.took.as_secs_f64()
    );
    Ok(())
}

/// What `install` is asked for.
#[derive(Clone, Debug)]
struct Install {
    server: String,
    token: String,
    node_name: Option<String>,
    node_ip: Option<Ipv4Addr>,
    binary: Option<PathBuf>,
    root: Option<PathBuf>,
    netns: Option<String>,
    uplink: Option<String>,
}

/// Where an install keeps its files, under its root.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    root: PathBuf,
    config: PathBuf,
    unit: PathBuf,
    run_dir: PathBuf,
    log: PathBuf,
    /// The agent's state, pins and cgroup (relative to the cgroup2 mount) when installed
    /// under a root; none: the agent's defaults.
    derived: Option<Derived>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Derived {
    state_dir: PathBuf,
    image_dir: PathBuf,
    pin_dir: PathBuf,
    cgroup: PathBuf,
}

impl Layout {
    /// The layout under `root` (`None`: `/`). Pure.
    fn new(root: Option<&Path>) -> Self {
        let base = root.unwrap_or(Path::new("/"));
        let derived = root.map(|root| {
            // One name per root, readable: `/tmp/x/.node` → `tmp-x-_node`. bpffs refuses
            // names holding a dot (kernel/bpf/inode.c keeps them for its own files), so
            // every character but letters, digits, `-` and `_` becomes `_`.
            let key = root
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(part) => Some(
                        part.to_string_lossy()
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("-");
            Derived {
                state_dir: root.join("var/lib/strait/agent"),
                image_dir: root.join("var/lib/strait/images"),
                pin_dir: Path::new(strait_host::paths::PIN_DIR)
                    .join("roots")
                    .join(&key),
                cgroup: Path::new("strait/roots").join(&key),
            }
        });
        Self {
            root: base.to_owned(),
            config: base.join("etc/strait/agent.env"),
            unit: base.join("etc/systemd/system/strait-agent.service"),
            run_dir: base.join("run/strait"),
            log: base.join("var/log/strait/agent.log"),
            derived,
        }
    }

    fn supervisor_pid(&self) -> PathBuf {
        self.run_dir.join("supervisor.pid")
    }

    fn agent_pid(&self) -> PathBuf {
        self.run_dir.join("agent.pid")
    }
}

/// Variables of the config file that are the supervisor's, not the agent's flags (the agent
/// ignores them).
const BINARY_VAR: &str = "STRAIT_AGENT_BINARY";
const NETNS_VAR: &str = "STRAIT_NETNS";
const RUN_DIR_VAR: &str = "STRAIT_RUN_DIR";
const LOG_VAR: &str = "STRAIT_AGENT_LOG";

/// The config file's variables, in order. Values are written bare (systemd's
/// `EnvironmentFile` and the supervisor read them the same way), so they may not hold
/// whitespace, quotes or backslashes. Pure.
fn config_vars(
    install: &Install,
    node_name: &str,
    node_ip: Ipv4Addr,
    binary: &Path,
    cgroup2: Option<&Path>,
    layout: &Layout,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut vars = vec![
        ("STRAIT_SERVER", install.server.clone()),
        ("STRAIT_TOKEN", install.token.clone()),
        ("STRAIT_NODE_NAME", node_name.to_owned()),
        ("STRAIT_NODE_IP", node_ip.to_string()),
        // strait-cni is installed beside the agent.
        (
            "STRAIT_CNI_BIN_DIR",
            binary
                .parent()
                .unwrap_or(Path::new("/"))
                .display()
                .to_string(),
        ),
    ];
    if let Some(uplink) = &install.uplink {
        vars.push(("STRAIT_UPLINK", uplink.clone()));
    }
    if let Some(derived) = &layout.derived {
        vars.push(("STRAIT_STATE_DIR", derived.state_dir.display().to_string()));
        vars.push(("STRAIT_IMAGE_DIR", derived.image_dir.display().to_string()));
        vars.push(("STRAIT_PIN_DIR", derived.pin_dir.display().to_string()));
        if let Some(mount) = cgroup2 {
            vars.push((
                "STRAIT_CGROUP",
                mount.join(&derived.cgroup).display().to_string(),
            ));
        }
    }
    vars.push((BINARY_VAR, binary.display().to_string()));
    if let Some(netns) = &install.netns {
        vars.push((NETNS_VAR, netns.clone()));
    }
    vars.push((RUN_DIR_VAR, layout.run_dir.display().to_string()));
    vars.push((LOG_VAR, layout.log.display().to_string()));
    for (key, value) in &vars {
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
        {
            bail!(
                "{key} {value:?} cannot be written to the agent's config: it is empty or holds whitespace, quotes or backslashes"
            );
        }
    }
    Ok(vars)
}

fn render_config(vars: &[(&str, String)]) -> String {
    let mut out =
        String::from("# strait-agent's configuration, written by `netctl node install`.\n");
    for (key, value) in vars {
        let _ = writeln!(out, "{key}={value}");
    }
    out
}

/// The variables of a config file: `KEY=VALUE` lines; blank lines and `#` comments are
/// skipped. Pure.
fn parse_config(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The systemd unit running the agent with the config file. Pure.
fn render_unit(config: &Path, binary: &Path, netns: Option<&str>) -> String {
    let exec = match netns {
        Some(netns) => format!(
            "/usr/bin/nsenter --net=/run/netns/{netns} -- {}",
            binary.display()
        ),
        None => binary.display().to_string(),
    };
    format!(
        "[Unit]\n\
         Description=Strait node agent\n\
         Documentation=https://github.com/strait/strait\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         EnvironmentFile={config}\n\
         ExecStart={exec}\n\
         Restart=always\n\
         RestartSec=5s\n\
         # Only the agent: the containers it started keep running across its restarts and\n\
         # upgrades, as k3s's and the kubelet's units do.\n\
         KillMode=process\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        config = config.display()
    )
}

/// Whether systemd manages this machine (PID 1 is systemd).
fn systemd_is_init() -> bool {
    fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

fn install(install: Install) -> anyhow::Result<()> {
    let binary = match &install.binary {
        Some(binary) => std::path::absolute(binary)?,
        None => std::env::current_exe()
            .context("find netctl's own directory")?
            .with_file_name("strait-agent"),
    };
    // Before anything is written: a wrong binary is refused with nothing to undo.
    let version = upgrade::binary_version(&binary)?;
    let root = install
        .root
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let layout = Layout::new(root.as_deref());
    if layout.config.exists() {
        bail!(
            "an agent is installed already ({} exists); remove it with `netctl node uninstall{}`",
            layout.config.display(),
            root.as_deref()
                .map(|r| format!(" --root {}", r.display()))
                .unwrap_or_default()
        );
    }
    if let Some(netns) = &install.netns
        && !Path::new("/run/netns").join(netns).exists()
    {
        bail!("network namespace {netns:?} does not exist (see `ip netns list`)");
    }
    let node_name = match &install.node_name {
        Some(name) => name.clone(),
        None => fs::read_to_string("/proc/sys/kernel/hostname")
            .context("read the host name (or pass --node-name)")?
            .trim()
            .to_owned(),
    };
    let node_ip = match install.node_ip {
        Some(ip) => ip,
        None => source_address(&install.server, install.netns.as_deref())?,
    };
    let cgroup2 = strait_host::mounts::cgroup2_mount().ok();
    let vars = config_vars(
        &install,
        &node_name,
        node_ip,
        &binary,
        cgroup2.as_deref(),
        &layout,
    )?;
    for dir in [
        layout.config.parent(),
        Some(layout.run_dir.as_path()),
        layout.log.parent(),
    ]
    .into_iter()
    .flatten()
    {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if let (Some(derived), Some(mount)) = (&layout.derived, &cgroup2) {
        let cgroup = mount.join(&derived.cgroup);
        fs::create_dir_all(&cgroup)
            .with_context(|| format!("create cgroup {}", cgroup.display()))?;
    }
    // Readable by root only: it holds the join token.
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&layout.config)
        .and_then(|mut f| f.write_all(render_config(&vars).as_bytes()))
        .with_context(|| format!("write {}", layout.config.display()))?;

    let systemd = root.is_none() && systemd_is_init();
    let service = match start_service(&layout, &binary, install.netns.as_deref(), systemd) {
        Ok(service) => service,
        Err(error) => {
            // Nothing half-installed: a second try must not be refused as "installed already".
            let _ = fs::remove_file(&layout.config);
            if systemd {
                let _ = fs::remove_file(&layout.unit);
            }
            return Err(error.context("the agent was not installed"));
        }
    };
    println!(
        "strait-agent {version} installed under {} (node {node_name}, {node_ip}, server {}): {service}",
        layout.root.display(),
        install.server,
    );
    Ok(())
}

/// Starts the agent's service: the systemd unit, or the supervisor. Returns how it runs.
fn start_service(
    layout: &Layout,
    binary: &Path,
    netns: Option<&str>,
    systemd: bool,
) -> anyhow::Result<String> {
    if systemd {
        fs::write(&layout.unit, render_unit(&layout.config, binary, netns))
            .with_context(|| format!("write {}", layout.unit.display()))?;
        run_command(&["systemctl", "daemon-reload"])?;
        run_command(&["systemctl", "enable", "--now", "strait-agent.service"])?;
        return Ok(format!("systemd unit {}", layout.unit.display()));
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.log)
        .with_context(|| format!("open {}", layout.log.display()))?;
    let netctl = std::env::current_exe().context("find netctl itself")?;
    let child = Command::new(&netctl)
        .args(["node", "supervise", "--config"])
        .arg(&layout.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own group: an interrupt of the installing shell does not reach it.
        .process_group(0)
        .spawn()
        .context("start the supervisor")?;
    fs::write(layout.supervisor_pid(), format!("{}\n", child.id()))
        .with_context(|| format!("write {}", layout.supervisor_pid().display()))?;
    Ok(format!(
        "supervised by `netctl node supervise` (pid {}), log {}",
        child.id(),
        layout.log.display()
    ))
}

/// The address this machine (or namespace) reaches the server's host from.
fn source_address(server: &str, netns: Option<&str>) -> anyhow::Result<Ipv4Addr> {
    let host = server
        .split("://")
        .nth(1)
        .unwrap_or(server)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let ip: Ipv4Addr = host.parse().with_context(|| {
        format!("the server's host {host:?} is not an IPv4 address: pass --node-ip")
    })?;
    let mut argv = vec!["ip"];
    if let Some(netns) = netns {
        argv.extend(["-n", netns]);
    }
    let target = ip.to_string();
    argv.extend(["-o", "route", "get", &target]);
    let out = Command::new(argv[0]).args(&argv[1..]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no route to {ip} shows a source address: pass --node-ip"))
}

fn run_command(argv: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("run {}", argv[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn uninstall(root: Option<&Path>) -> anyhow::Result<()> {
    let root = root.map(std::path::absolute).transpose()?;
    let layout = Layout::new(root.as_deref());
    let installed =
        layout.config.exists() || layout.unit.exists() || layout.supervisor_pid().exists();
    if !installed {
        bail!("no agent is installed under {}", layout.root.display());
    }
    if layout.unit.exists() && root.is_none() {
        // The unit may be gone from systemd already; removing the file is what matters.
        let _ = run_command(&["systemctl", "disable", "--now", "strait-agent.service"]);
        fs::remove_file(&layout.unit)?;
        let _ = run_command(&["systemctl", "daemon-reload"]);
    }
    // The supervisor stops its agent when told to; whatever survives is killed.
    let supervisor = read_pid(&layout.supervisor_pid());
    if let Some(pid) = supervisor.filter(|pid| runs(*pid, "supervise")) {
        stop(pid, "supervise", Duration::from_secs(20));
    }
    if let Some(pid) = read_pid(&layout.agent_pid()).filter(|pid| runs(*pid, "strait-agent")) {
        stop(pid, "strait-agent", Duration::from_secs(10));
    }
    for file in [
        layout.supervisor_pid(),
        layout.agent_pid(),
        layout.config.clone(),
    ] {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("remove {}", file.display()));
            }
            _ => {}
        }
    }
    if let Some(derived) = &layout.derived {
        // Pins and cgroup are this install's alone (named after its root); their parents
        // go too once empty, as `netctl cluster down` leaves them.
        if derived.pin_dir.exists() {
            fs::remove_dir_all(&derived.pin_dir)
                .with_context(|| format!("remove {}", derived.pin_dir.display()))?;
        }
        remove_empty_parents(&derived.pin_dir, Path::new(strait_host::paths::BPFFS));
        if let Ok(mount) = strait_host::mounts::cgroup2_mount() {
            let cgroup = mount.join(&derived.cgroup);
            let _ = fs::remove_dir(&cgroup);
            remove_empty_parents(&cgroup, &mount);
        }
    }
    println!("strait-agent uninstalled from {}", layout.root.display());
    Ok(())
}

/// Removes the parents of `dir` below `stop` while they are empty.
fn remove_empty_parents(dir: &Path, stop: &Path) {
    let mut parent = dir.parent();
    while let Some(dir) = parent.filter(|d| d.starts_with(stop) && *d != stop) {
        // Fails, and so stops, at the first directory that is not empty.
        if fs::remove_dir(dir).is_err() {
            return;
        }
        parent = dir.parent();
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is alive and its command line holds `word` (pids are reused).
fn runs(pid: u32, word: &str) -> bool {
    let alive = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z" | "X") | None
        )
    });
    alive
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(word))
}

/// SIGTERM, then SIGKILL after `grace`.
fn stop(pid: u32, word: &str, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let _ = signal::kill(Pid::from_raw(raw), signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while runs(pid, word) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if runs(pid, word) {
        let _ = signal::kill(Pid::from_raw(raw), signal::Signal::SIGKILL);
    }
}

/// The restart delay after a run of `ran`: doubling from 1 s to 30 s while the agent keeps
/// failing fast, back to 1 s after a run of a minute (as systemd's and kubelet's back-off).
fn next_backoff(previous: Duration, ran: Duration) -> Duration {
    if ran >= Duration::from_secs(60) {
        Duration::from_secs(1)
    } else {
        (previous * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// Runs the agent the config file describes until SIGTERM, restarting it with back-off when
/// it exits; SIGTERM stops the agent (its pods keep running) and then the supervisor.
async fn supervise(config: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let vars = parse_config(
        &fs::read_to_string(config).with_context(|| format!("read {}", config.display()))?,
    );
    let var = |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let binary =
        var(BINARY_VAR).with_context(|| format!("{} has no {BINARY_VAR}", config.display()))?;
    let run_dir =
        PathBuf::from(var(RUN_DIR_VAR).unwrap_or_else(|| strait_host::paths::RUN_DIR.to_owned()));
    let netns = var(NETNS_VAR);
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut backoff = Duration::ZERO;
    loop {
        let mut command = match &netns {
            Some(netns) => {
                let mut c = tokio::process::Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{netns}"))
                    .arg("--")
                    .arg(&binary);
                c
            }
            None => tokio::process::Command::new(&binary),
        };
        command
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("start {binary}"))?;
        let pid = child.id().unwrap_or_default();
        fs::write(run_dir.join("agent.pid"), format!("{pid}\n"))?;
        eprintln!("supervisor: strait-agent started (pid {pid})");
        let stop_requested = tokio::select! {
            status = child.wait() => {
                let status = status?;
                backoff = next_backoff(backoff, started.elapsed());
                eprintln!("supervisor: strait-agent exited ({status}); restarting in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => false,
                    _ = term.recv() => true,
                    _ = interrupt.recv() => true,
                }
            }
            _ = term.recv() => { stop_child(&mut child).await; true }
            _ = interrupt.recv() => { stop_child(&mut child).await; true }
        };
        if stop_requested {
            let _ = fs::remove_file(run_dir.join("agent.pid"));
            eprintln!("supervisor: stopped");
            return Ok(());
        }
    }
}

/// SIGTERM to the agent, SIGKILL after 10 s.
async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(root: Option<&str>) -> Install {
        Install {
            server: "https://172.30.0.1:6443".into(),
            token: "K10abc::node:secret".into(),
            node_name: None,
            node_ip: None,
            binary: None,
            root: root.map(PathBuf::from),
            netns: Some("ns1".into()),
            uplink: Some("eth0".into()),
        }
    }

    #[test]
    fn a_root_moves_every_file_and_derives_pins_and_cgroup() {
        let system = Layout::new(None);
        assert_eq!(system.config, Path::new("/etc/strait/agent.env"));
        assert_eq!(
            system.unit,
            Path::new("/etc/systemd/system/strait-agent.service")
        );
        assert_eq!(system.derived, None);
        let layout = Layout::new(Some(Path::new("/tmp/x/node")));
        assert_eq!(layout.config, Path::new("/tmp/x/node/etc/strait/agent.env"));
        assert_eq!(
            layout.supervisor_pid(),
            Path::new("/tmp/x/node/run/strait/supervisor.pid")
        );
        let derived = layout.derived.clone().unwrap();
        assert_eq!(
            derived.state_dir,
            Path::new("/tmp/x/node/var/lib/strait/agent")
        );
        assert_eq!(
            derived.pin_dir,
            Path::new("/sys/fs/bpf/strait/roots/tmp-x-node")
        );
        assert_eq!(derived.cgroup, Path::new("strait/roots/tmp-x-node"));
        let dotted = Layout::new(Some(Path::new("/tmp/.tmpAb1/n.1")))
            .derived
            .unwrap();
        assert_eq!(
            dotted.pin_dir,
            Path::new("/sys/fs/bpf/strait/roots/tmp-_tmpAb1-n_1")
        );

        let vars = config_vars(
            &request(Some("/tmp/x/node")),
            "edge-1",
            Ipv4Addr::new(172, 30, 0, 20),
            Path::new("/opt/strait/strait-agent"),
            Some(Path::new("/sys/fs/cgroup/unified")),
            &layout,
        )
        .unwrap();
        let text = render_config(&vars);
        for line in [
            "STRAIT_SERVER=https://172.30.0.1:6443",
            "STRAIT_NODE_NAME=edge-1",
            "STRAIT_NODE_IP=172.30.0.20",
            "STRAIT_CNI_BIN_DIR=/opt/strait",
            "STRAIT_UPLINK=eth0",
            "STRAIT_PIN_DIR=/sys/fs/bpf/strait/roots/tmp-x-node",
            "STRAIT_CGROUP=/sys/fs/cgroup/unified/strait/roots/tmp-x-node",
            "STRAIT_NETNS=ns1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // What is written is what is read back.
        let parsed = parse_config(&text);
        assert_eq!(parsed.len(), vars.len());
        assert!(
            parsed
                .iter()
                .zip(&vars)
                .all(|(p, v)| p.0 == v.0 && p.1 == v.1)
        );
    }

    #[test]
    fn values_that_would_not_read_back_are_refused() {
        let mut bad = request(None);
        bad.token = "two words".into();
        let error = config_vars(
            &bad,
            "n",
            Ipv4Addr::LOCALHOST,
            Path::new("/a/strait-agent"),
            None,
            &Layout::new(None),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("STRAIT_TOKEN"), "{error}");
    }

    #[test]
    fn the_unit_runs_the_agent_in_its_namespace_and_keeps_pods() {
        let unit = render_unit(
            Path::new("/etc/strait/agent.env"),
            Path::new("/usr/local/bin/strait-agent"),
            Some("ns1"),
        );
        assert!(unit.contains("EnvironmentFile=/etc/strait/agent.env\n"));
        assert!(unit.contains(
            "ExecStart=/usr/bin/nsenter --net=/run/netns/ns1 -- /usr/local/bin/strait-agent\n"
        ));
        assert!(unit.contains("KillMode=process\n"));
        assert!(unit.contains("Restart=always\n"));
    }

    #[test]
    fn back_off_doubles_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        assert_eq!(next_backoff(Duration::ZERO, short), Duration::from_secs(1));
        assert_eq!(
            next_backoff(Duration::from_secs(1), short),
            Duration::from_secs(2)
        );
        assert_eq!(
            next_backoff(Duration::from_secs(16), short),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_backoff(Duration::from_secs(30), short),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_backoff(Duration::from_secs(30), Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }
}
