//! Local Strait clusters on one machine, as kind and k3d make Kubernetes ones: each node a
//! network namespace on an underlay bridge, running a real `strait-agent` (and the cluster
//! DNS), with `strait-control` on the host's end of the underlay. `netctl cluster` is the
//! user's door to it; tests and the demo use it too.
//!
//! - [`plan`]: names and addresses, pure.
//! - [`state`]: the record on disk `down` and `status` work from.
//! - `host` (private): namespaces, links, processes, mounts, cgroups, pins.

pub mod plan;
pub mod state;
pub mod upgrade;

mod dns;
mod host;

use std::{
    collections::BTreeSet,
    fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::{core::v1::Node, discovery::v1::EndpointSlice};
use kube::{
    Api, Client,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};

pub use plan::{Plan, PlanError, Store};
pub use state::{Process, Record};

/// Where the binaries a cluster runs are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub control: PathBuf,
    pub agent: PathBuf,
    /// The directory holding `strait-cni` (the agent's `--cni-bin-dir`).
    pub cni_dir: PathBuf,
    pub dns: PathBuf,
}

impl Binaries {
    /// The binaries in `dir` (cargo builds every binary of the workspace into one).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            control: dir.join("strait-control"),
            agent: dir.join("strait-agent"),
            cni_dir: dir.to_owned(),
            dns: dir.join("strait-dns"),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        for binary in [
            &self.control,
            &self.agent,
            &self.cni_dir.join("strait-cni"),
            &self.dns,
        ] {
            if !binary.is_file() {
                bail!(
                    "{} is missing: build the workspace first (`cargo build`), or pass \
                     --bin-dir with the directory holding Strait's binaries",
                    binary.display()
                );
            }
        }
        Ok(())
    }
}

/// What `up` is asked for.
#[derive(Clone, Debug)]
pub struct Request {
    pub name: String,
    pub nodes: usize,
    pub store: Store,
    pub binaries: Binaries,
    /// How long to wait for every node to be Ready.
    pub timeout: Duration,
}

/// What `up` measured.
#[derive(Clone, Debug)]
pub struct Started {
    pub record: Record,
    /// From the start of `up` to every node Ready.
    pub ready_after: Duration,
}

/// Commands a cluster needs on the host, with the Debian package that has each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("runc", "runc"),
    ("umount", "mount"),
];

/// Brings a cluster up and waits until every node is Ready. On any failure, what was made
/// is removed again and the error says what failed.
pub fn up(request: &Request) -> anyhow::Result<Started> {
    let began = Instant::now();
    check_prerequisites(request)?;
    // Held while the name and range are chosen and recorded: two `up`s at once must not
    // take the same range.
    let lock = state::lock()?;
    if let Some(existing) = Record::load(&request.name)? {
        bail!(
            "cluster {:?} already exists (created {}); remove it with `netctl cluster down --name {}`",
            request.name,
            existing.created,
            request.name
        );
    }
    let taken: Vec<u8> = state::list()?.iter().map(|r| r.plan.index).collect();
    let plan = Plan::new(&request.name, request.nodes, request.store, &taken)?;
    let mut record = Record {
        plan,
        created: jiff::Timestamp::now().to_string(),
        processes: Vec::new(),
    };
    // Recorded before anything is made, so a failure from here on can be undone.
    record.save().context("write the cluster record")?;
    drop(lock);
    match make(&mut record, request) {
        Ok(()) => Ok(Started {
            record,
            ready_after: began.elapsed(),
        }),
        Err(error) => {
            let logs = record.plan.log_dir();
            down_record(&record);
            Err(error.context(format!(
                "cluster {:?} did not come up and was removed (logs were in {})",
                request.name,
                logs.display()
            )))
        }
    }
}

fn check_prerequisites(request: &Request) -> anyhow::Result<()> {
    plan::validate_name(&request.name)?;
    let etcd: &[(&str, &str)] = match request.store {
        Store::Etcd => &[("etcd", "etcd-server"), ("etcdctl", "etcd-client")],
        Store::Redb => &[],
    };
    for (program, package) in PREREQUISITES.iter().chain(etcd) {
        if !host::on_path(program) {
            bail!("`{program}` is missing: apt-get install {package}");
        }
    }
    request.binaries.check()?;
    strait_host::mounts::ensure_bpffs().context("mount bpffs")?;
    strait_image::build::busybox_binary().context("the demo image needs busybox")?;
    Ok(())
}

fn make(record: &mut Record, request: &Request) -> anyhow::Result<()> {
    let plan = record.plan.clone();
    fs::create_dir_all(plan.log_dir())?;
    fs::create_dir_all(plan.control_dir())?;

    // The underlay: a bridge in its own namespace, the host plugged in.
    host::add_netns(&plan.underlay_netns)?;
    let underlay = plan.underlay_netns.as_str();
    host::run(&["ip", "-n", underlay, "link", "add", "br0", "type", "bridge"])?;
    host::run(&["ip", "-n", underlay, "link", "set", "br0", "up"])?;
    host::run(&[
        "ip",
        "link",
        "add",
        &plan.host_link,
        "type",
        "veth",
        "peer",
        "name",
        "host",
        "netns",
        underlay,
    ])?;
    host::run(&[
        "ip", "-n", underlay, "link", "set", "host", "master", "br0", "up",
    ])?;
    let host_cidr = format!("{}/{}", plan.host_ip, Plan::PREFIX);
    host::run(&["ip", "addr", "add", &host_cidr, "dev", &plan.host_link])?;
    host::run(&["ip", "link", "set", &plan.host_link, "up"])?;

    start_etcd(record)?;

    // The control plane, on the host's end of the underlay: one process, or two sharing etcd.
    let endpoints: Vec<String> = plan
        .etcd_members()
        .iter()
        .map(|m| format!("http://127.0.0.1:{}", m.client_port))
        .collect();
    for (index, ip) in plan.control_ips().into_iter().enumerate() {
        let dir = plan.control_dir_of(index);
        fs::create_dir_all(&dir)?;
        if index > 0 {
            host::run(&[
                "ip",
                "addr",
                "add",
                &format!("{ip}/32"),
                "dev",
                &plan.host_link,
            ])?;
            // One CA and one set of tokens for the whole control plane: a client or agent
            // trusts and is trusted by every process. Each issues its own serving certificate.
            fs::create_dir_all(dir.join("pki"))?;
            for file in ["pki/ca.crt", "pki/ca.key", "tokens"] {
                fs::copy(plan.control_dir().join(file), dir.join(file))
                    .with_context(|| format!("share {file} with control process {index}"))?;
            }
        }
        let log = plan.log_dir().join(match index {
            0 => "control.log".to_owned(),
            n => format!("control-{n}.log"),
        });
        let listen = SocketAddr::from((ip, plan::API_PORT));
        let mut args = vec![
            format!("--listen={listen}"),
            format!("--advertise-address={ip}"),
            format!("--data-dir={}", dir.display()),
        ];
        if plan.store == Store::Etcd {
            args.push("--store=etcd".to_owned());
            args.push(format!("--etcd-endpoints={}", endpoints.join(",")));
            args.push(format!("--etcd-prefix=/strait/{}", plan.name));
        }
        let pid = start(
            record,
            Process {
                role: "control".to_owned(),
                node: None,
                pid: 0,
                binary: request.binaries.control.clone(),
                args,
                netns: None,
                log: log.clone(),
            },
        )?;
        wait_serving(listen, pid, &request.binaries.control, &log)?;
    }
    let token = fs::read_to_string(plan.control_dir().join("node-token"))
        .context("read the control plane's node token")?;

    // The demo image, built once and imported by every node.
    let image = strait_image::build::busybox_archive(&plan.image_dir(), plan::DEMO_IMAGE, &[])
        .context("build the demo image")?;

    for node in &plan.nodes {
        host::add_netns(&node.netns)?;
        host::run(&[
            "ip",
            "-n",
            underlay,
            "link",
            "add",
            &node.port,
            "type",
            "veth",
            "peer",
            "name",
            &node.uplink,
            "netns",
            &node.netns,
        ])?;
        host::run(&[
            "ip", "-n", underlay, "link", "set", &node.port, "master", "br0", "up",
        ])?;
        let cidr = format!("{}/{}", node.ip, Plan::PREFIX);
        host::run(&[
            "ip",
            "-n",
            &node.netns,
            "addr",
            "add",
            &cidr,
            "dev",
            &node.uplink,
        ])?;
        host::run(&["ip", "-n", &node.netns, "link", "set", &node.uplink, "up"])?;
        host::run(&[
            "ip",
            "netns",
            "exec",
            &node.netns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        fs::create_dir_all(&node.state_dir)?;
        let cgroup = host::create_cgroup(&node.cgroup)?;
        let log = plan.log_dir().join(format!("agent-{}.log", node.name));
        let args = vec![
            format!("--server={}", plan.server()),
            format!("--token={}", token.trim()),
            format!("--node-name={}", node.name),
            format!("--node-ip={}", node.ip),
            format!("--state-dir={}", node.state_dir.display()),
            format!("--pin-dir={}", node.pin_dir.display()),
            format!("--cgroup={}", cgroup.display()),
            format!("--uplink={}", node.uplink),
            format!("--cni-bin-dir={}", request.binaries.cni_dir.display()),
            format!("--image-dir={}", node.state_dir.join("images").display()),
            format!("--import-image={}", image.display()),
        ];
        start(
            record,
            Process {
                role: "agent".to_owned(),
                node: Some(node.name.clone()),
                pid: 0,
                binary: request.binaries.agent.clone(),
                args,
                netns: Some(node.netns.clone()),
                log,
            },
        )?;
    }

    // The cluster DNS, node-local: each node's resolver answers its own pods (see the
    // `kube-system/kube-dns` Service, internalTrafficPolicy Local) and registers itself.
    for node in &plan.nodes {
        let args = vec![
            format!("--listen={}:53", node.ip),
            format!("--kubeconfig={}", plan.kubeconfig().display()),
            format!("--node-name={}", node.name),
            format!("--advertise-address={}", node.ip),
            format!("--metrics={}:9153", node.ip),
        ];
        start(
            record,
            Process {
                role: "dns".to_owned(),
                node: Some(node.name.clone()),
                pid: 0,
                binary: request.binaries.dns.clone(),
                args,
                netns: Some(node.netns.clone()),
                log: plan.log_dir().join(format!("dns-{}.log", node.name)),
            },
        )?;
    }

    wait_nodes_ready(record, request.timeout)?;
    wait_dns_answering(record, request.timeout)
}

/// Waits until every node's cluster DNS answers for the `kubernetes` Service and stands
/// behind `kube-system/kube-dns` for its node's pods (its EndpointSlice ready: with the
/// Service's Local traffic policy a pod only ever asks its own node's).
fn wait_dns_answering(record: &Record, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    wait_dns_registered(record, deadline, timeout)?;
    for node in &record.plan.nodes {
        let server = SocketAddr::from((node.ip, 53));
        loop {
            let answer = dns::a_records(server, KUBERNETES_SERVICE, Duration::from_millis(300));
            match answer {
                Ok(addresses) if !addresses.is_empty() => break,
                _ if Instant::now() > deadline => {
                    let log = record.plan.log_dir().join(format!("dns-{}.log", node.name));
                    bail!(
                        "the cluster DNS of {} did not answer for {KUBERNETES_SERVICE} within \
                         {timeout:?} ({answer:?}); its log:\n{}",
                        node.name,
                        tail(&log, 20)
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

fn wait_dns_registered(
    record: &Record,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plan = &record.plan;
    runtime.block_on(async {
        let slices: Api<EndpointSlice> = Api::namespaced(client(plan).await?, "kube-system");
        let params = ListParams::default().labels("kubernetes.io/service-name=kube-dns");
        loop {
            let serving: BTreeSet<String> = match slices.list(&params).await {
                Ok(list) => list
                    .items
                    .iter()
                    .flat_map(|slice| &slice.endpoints)
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .filter_map(|e| e.node_name.clone())
                    .collect(),
                Err(_) => BTreeSet::new(),
            };
            let missing: Vec<&str> = plan
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .filter(|n| !serving.contains(*n))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster DNS of {} is not behind kube-system/kube-dns after {timeout:?}",
                    missing.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// The name `up` asks every node's DNS for before it calls the cluster up.
const KUBERNETES_SERVICE: &str = "kubernetes.default.svc.cluster.local.";

/// Starts the etcd members of a cluster on etcd and waits until they form a cluster.
fn start_etcd(record: &mut Record) -> anyhow::Result<()> {
    let members = record.plan.etcd_members();
    if members.is_empty() {
        return Ok(());
    }
    let peers: Vec<String> = members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
        .collect();
    for member in &members {
        for port in [member.client_port, member.peer_port] {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!(
                    "port {port} on 127.0.0.1, which {} needs, is in use",
                    member.name
                );
            }
        }
        fs::create_dir_all(&member.data_dir)?;
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let args = vec![
            format!("--name={}", member.name),
            format!("--data-dir={}", member.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", peers.join(",")),
            format!("--initial-cluster-token=strait-{}", record.plan.name),
            "--initial-cluster-state=new".to_owned(),
        ];
        start(
            record,
            Process {
                role: "etcd".to_owned(),
                node: None,
                pid: 0,
                binary: PathBuf::from(which("etcd")?),
                args,
                netns: None,
                log: record.plan.log_dir().join(format!("{}.log", member.name)),
            },
        )?;
    }
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| format!("http://127.0.0.1:{}", m.client_port))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = std::process::Command::new("etcdctl")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["endpoint", "health"])
            .env("ETCDCTL_API", "3")
            .output()
            .is_ok_and(|out| out.status.success());
        if healthy {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = record.plan.log_dir().join("etcd-0.log");
            bail!(
                "the etcd members did not become healthy; etcd-0's log:\n{}",
                tail(&log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The full path of `program` on PATH (recorded, so a pid is checked against it).
fn which(program: &str) -> anyhow::Result<String> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|path| path.is_file())
        })
        .map(|path| path.display().to_string())
        .with_context(|| format!("`{program}` is not on PATH"))
}

/// Starts `process` (its pid is filled in) and adds it to the record.
fn start(record: &mut Record, mut process: Process) -> anyhow::Result<u32> {
    process.pid = spawn(&process)?;
    let pid = process.pid;
    record.processes.push(process);
    record.save()?;
    Ok(pid)
}

fn spawn(process: &Process) -> anyhow::Result<u32> {
    let mut argv = vec![process.binary.display().to_string()];
    argv.extend(process.args.iter().cloned());
    // Each binary's own default log level (`RUST_LOG` from the caller is not passed on:
    // hickory's per-query lines would cost the DNS half its rate).
    host::spawn(process.netns.as_deref(), &argv, &process.log)
}

/// Restarts the `index`th process of a running cluster, with `binary` instead of the one it
/// ran if given (an upgrade), and records its new pid. The process gets SIGTERM first and
/// SIGKILL after `grace`.
pub fn restart(
    record: &mut Record,
    index: usize,
    binary: Option<&Path>,
    grace: Duration,
) -> anyhow::Result<u32> {
    let process = record
        .processes
        .get_mut(index)
        .with_context(|| format!("cluster {} has no process {index}", record.plan.name))?;
    host::stop(process.pid, &process.binary, grace);
    if let Some(binary) = binary {
        process.binary = binary.to_owned();
    }
    process.pid = spawn(process)?;
    let pid = process.pid;
    record.save()?;
    Ok(pid)
}

/// Whether `process` is alive and runs its binary.
pub fn is_running(process: &Process) -> bool {
    host::runs(process.pid, &process.binary)
}

/// Waits until the control plane accepts connections, or fails with its log.
fn wait_serving(listen: SocketAddr, pid: u32, binary: &Path, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok()
            && log_says_serving(log)
        {
            return Ok(());
        }
        let running = host::runs(pid, binary);
        if !running || Instant::now() > deadline {
            bail!(
                "strait-control (pid {pid}, {}) did not start serving on {listen}; its log:\n{}",
                if running { "still running" } else { "exited" },
                tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_says_serving(log: &Path) -> bool {
    fs::read_to_string(log).is_ok_and(|text| text.contains("strait-control: serving"))
}

/// The last `lines` lines of a log.
fn tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A kube client with the cluster's admin kubeconfig.
pub async fn client(plan: &Plan) -> anyhow::Result<Client> {
    let file = Kubeconfig::read_from(plan.kubeconfig())
        .with_context(|| format!("read {}", plan.kubeconfig().display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn wait_nodes_ready(record: &Record, timeout: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plan = &record.plan;
    let deadline = Instant::now() + timeout;
    runtime.block_on(async {
        let nodes: Api<Node> = Api::all(client(plan).await?);
        loop {
            let ready = match nodes.list(&Default::default()).await {
                Ok(list) => list.items.iter().filter(|n| is_ready(n)).count(),
                Err(_) => 0,
            };
            if ready == plan.nodes.len() {
                return Ok(());
            }
            for process in &record.processes {
                if !host::runs(process.pid, &process.binary) {
                    bail!(
                        "{} {} exited; its log:\n{}",
                        process.role,
                        process.node.as_deref().unwrap_or(""),
                        tail(&process.log, 20)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("{ready}/{} nodes Ready after {timeout:?}", plan.nodes.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Whether a Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Removes cluster `name` and everything it made. Fails only if there is no such cluster.
pub fn down(name: &str) -> anyhow::Result<Record> {
    let record = Record::load(name)?
        .with_context(|| format!("there is no cluster {name:?} (see `netctl cluster status`)"))?;
    down_record(&record);
    Ok(record)
}

/// Removes everything `record` names, in the reverse order of `up`; each step tolerates
/// what is gone already.
fn down_record(record: &Record) {
    let plan = &record.plan;
    // Agents first (they would recreate what is being removed), then the control plane.
    for process in record.processes.iter().rev() {
        host::stop(process.pid, &process.binary, Duration::from_secs(5));
    }
    for node in &plan.nodes {
        host::remove_node_state(&node.state_dir);
        host::remove_cgroups(&node.cgroup);
        host::remove_netns(&node.netns);
    }
    host::remove_cgroups(&plan.cgroup);
    host::remove_tree(&plan.pin_dir);
    host::remove_host_link(&plan.host_link);
    host::remove_netns(&plan.underlay_netns);
    host::unmount_under(&plan.dir);
    host::remove_tree(&plan.dir);
    // Under the lock: an `up` at the same time may be recording a cluster in them.
    let _lock = state::lock();
    // The parents every local cluster shares, once the last cluster is gone (a node
    // installed on this host keeps its own pins and state in them, so only empty ones go).
    for (dir, stop) in [
        (
            plan.dir.as_path(),
            Path::new(strait_host::paths::STATE_DIR).parent(),
        ),
        (
            plan.pin_dir.as_path(),
            Path::new(strait_host::paths::PIN_DIR).parent(),
        ),
    ] {
        host::remove_empty_parents(dir, stop.unwrap_or(Path::new("/")));
    }
    if let Ok(root) = strait_host::mounts::cgroup2_mount() {
        host::remove_empty_parents(&root.join(&plan.cgroup), &root);
    }
}

/// One process's state, for `status`.
#[derive(Clone, Debug)]
pub struct ProcessStatus {
    pub process: Process,
    pub running: bool,
}

/// A cluster's processes and whether each still runs.
pub fn processes(record: &Record) -> Vec<ProcessStatus> {
    record
        .processes
        .iter()
        .map(|p| ProcessStatus {
            running: host::runs(p.pid, &p.binary),
            process: p.clone(),
        })
        .collect()
}
