//! Rolling upgrade of a local cluster's agents to another binary, as a DaemonSet rolls its
//! pods: the desired version goes on the DaemonSet `kube-system/strait-agent` first (so
//! `kubectl get ds` counts the nodes up to date as they come), then the agents restart with
//! the new binary at most `max_unavailable` at a time, each batch waiting until its Nodes
//! are Ready again, report the new version, and their agents' endpoints answer. Restarting an agent keeps its node's pods and
//! established connections (the dataplane is pinned; the agent adopts it), so a rolling
//! upgrade does not disturb traffic.
//!
//! The binary is checked before anything changes: it must exist, be executable, and say it
//! is a `strait-agent` when asked for its version.

use std::{
    io,
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::{apps::v1::DaemonSet, core::v1::Node},
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt as _,
    api::{Patch, PatchParams},
};
use serde_json::json;
use strait_host::agent::{DAEMON_SET_NAME, DAEMON_SET_NAMESPACE, VERSION_ANNOTATION};

use crate::{Record, is_ready, is_running, restart, tail};

/// What an upgrade is asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The new agent binary.
    pub binary: PathBuf,
    /// How many agents may be restarting at once (at least 1).
    pub max_unavailable: usize,
    /// How long one batch may take to be Ready on the new version.
    pub timeout: Duration,
    /// How long an agent has to stop after SIGTERM before it is killed.
    pub grace: Duration,
}

/// Why a binary cannot be an agent upgrade.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("agent binary {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("agent binary {} is not a file", .0.display())]
    NotAFile(PathBuf),
    #[error("agent binary {} is not executable (chmod +x it)", .0.display())]
    NotExecutable(PathBuf),
    #[error("agent binary {} cannot be read", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not a strait-agent: `--version` {said}",
        path.display()
    )]
    NotAnAgent { path: PathBuf, said: String },
}

/// What happened, for the caller to show as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The DaemonSet now asks for `version`.
    Desired { version: String },
    /// The node runs the version already and is Ready: left alone.
    UpToDate { node: String },
    /// The node's agent is being restarted with the new binary.
    Restarting { node: String },
    /// The node is Ready on the new version, `after` its restart began.
    Upgraded { node: String, after: Duration },
}

/// What an upgrade did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub version: String,
    pub upgraded: usize,
    pub up_to_date: usize,
    pub took: Duration,
}

/// The version (`<release>+<build id>`) of the agent binary at `binary`, as the agent reports
/// it on its Node; fails, naming the file, when it is not an executable strait-agent.
pub fn binary_version(binary: &Path) -> Result<String, BinaryError> {
    let metadata = match binary.metadata() {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BinaryError::Missing(binary.to_owned()));
        }
        Err(source) => {
            return Err(BinaryError::Unreadable {
                path: binary.to_owned(),
                source,
            });
        }
    };
    if !metadata.is_file() {
        return Err(BinaryError::NotAFile(binary.to_owned()));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(BinaryError::NotExecutable(binary.to_owned()));
    }
    let release = run_version(binary)?;
    let build = strait_host::agent::build_id(binary).map_err(|source| BinaryError::Unreadable {
        path: binary.to_owned(),
        source,
    })?;
    Ok(strait_host::agent::version(&release, &build))
}

/// Runs `binary --version` (clap's: `strait-agent 0.1.0`) and returns the release; a program
/// that is something else, fails, or hangs is not an agent.
fn run_version(binary: &Path) -> Result<String, BinaryError> {
    let not_an_agent = |said: String| BinaryError::NotAnAgent {
        path: binary.to_owned(),
        said,
    };
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| not_an_agent(format!("could not run: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _killed = child.kill();
                let _reaped = child.wait();
                return Err(not_an_agent("did not answer within 10 s".to_owned()));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| not_an_agent(format!("could not be read: {e}")))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    match release_of(&printed) {
        Some(release) if out.status.success() => Ok(release.to_owned()),
        _ => Err(not_an_agent(format!("printed {:?}", printed.trim()))),
    }
}

/// The release in clap's `--version` line of the agent, `strait-agent 0.1.0`. Pure.
fn release_of(printed: &str) -> Option<&str> {
    let release = printed.trim().strip_prefix("strait-agent ")?.trim();
    let numeric = release
        .split(['+', '-'])
        .next()
        .is_some_and(|r| !r.is_empty() && r.split('.').all(|p| p.parse::<u64>().is_ok()));
    numeric.then_some(release)
}

/// Upgrades every agent of the cluster in `record` to `options.binary`, reporting each step
/// to `on_event`. Nothing is changed if the binary is not an agent. Nodes that run the new
/// version already are left alone, so an interrupted upgrade can be run again.
pub fn upgrade(
    record: &mut Record,
    options: &Options,
    on_event: &mut dyn FnMut(Event),
) -> anyhow::Result<Summary> {
    let began = Instant::now();
    if options.max_unavailable == 0 {
        bail!("--max-unavailable must be at least 1");
    }
    // Absolute: the record keeps it to restart the agent again later, from anywhere.
    let binary = std::path::absolute(&options.binary)
        .with_context(|| format!("resolve {}", options.binary.display()))?;
    let version = binary_version(&binary)?;
    let agents: Vec<(usize, String)> = record
        .processes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.role == "agent")
        .filter_map(|(i, p)| p.node.clone().map(|node| (i, node)))
        .collect();
    if agents.is_empty() {
        bail!("cluster {} has no agents to upgrade", record.plan.name);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(crate::client(&record.plan))?;
    let nodes: Api<Node> = Api::all(client.clone());
    runtime.block_on(set_desired(&client, &version))?;
    on_event(Event::Desired {
        version: version.clone(),
    });

    let mut pending = Vec::new();
    let mut up_to_date = 0;
    for (index, node) in agents {
        let current = runtime
            .block_on(nodes.get_opt(&node))
            .with_context(|| format!("read Node {node}"))?;
        let runs_it = current.as_ref().is_some_and(|n| {
            is_ready(n)
                && n.annotations().get(VERSION_ANNOTATION) == Some(&version)
                && is_running(&record.processes[index])
        });
        if runs_it {
            up_to_date += 1;
            on_event(Event::UpToDate { node });
        } else {
            let ready = current.as_ref().is_some_and(is_ready);
            pending.push((ready, index, node));
        }
    }
    // Nodes that are down already first, as the DaemonSet controller replaces unavailable
    // pods first: restarting them costs no availability. The sort is stable, so the rest
    // keep the cluster's node order.
    pending.sort_by_key(|(ready, _, _)| *ready);

    let upgraded = pending.len();
    for batch in pending.chunks(options.max_unavailable) {
        let mut restarted = Vec::new();
        for (_, index, node) in batch {
            on_event(Event::Restarting { node: node.clone() });
            // To the second: the Node's heartbeat times are.
            let since = Timestamp::from_second(Timestamp::now().as_second())?;
            restart(record, *index, Some(&binary), options.grace)
                .with_context(|| format!("restart the agent of node {node}"))?;
            restarted.push((*index, node.clone(), since, Instant::now()));
        }
        let deadline = Instant::now() + options.timeout;
        for (index, node, since, at) in restarted {
            loop {
                // An API hiccup is a "not yet": the deadline bounds the wait.
                let current = runtime.block_on(nodes.get_opt(&node)).ok().flatten();
                // Ready is posted when the agent registers, before it serves: its endpoint
                // (logs, exec) answering too is what "up" means to a user of the node.
                if current.as_ref().is_some_and(|n| {
                    upgraded_since(n, &version, since) && kubelet_endpoint(n).is_some_and(answers)
                }) {
                    on_event(Event::Upgraded {
                        node,
                        after: at.elapsed(),
                    });
                    break;
                }
                let process = &record.processes[index];
                if !is_running(process) {
                    bail!(
                        "the new agent of node {node} exited; the upgrade stopped (nodes not \
                         yet restarted keep their version). Its log:\n{}",
                        tail(&process.log, 20)
                    );
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {node} was not Ready on {version} within {:?}; the upgrade \
                         stopped. The agent's log:\n{}",
                        options.timeout,
                        tail(&process.log, 20)
                    );
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(Summary {
        version,
        upgraded,
        up_to_date,
        took: began.elapsed(),
    })
}

/// Writes `version` as the agents' desired version on their DaemonSet. The control plane
/// makes the DaemonSet when it starts; a little patience covers a cluster just brought up.
async fn set_desired(client: &kube::Client, version: &str) -> anyhow::Result<()> {
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), DAEMON_SET_NAMESPACE);
    let patch = json!({"metadata": {"annotations": {VERSION_ANNOTATION: version}}});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sets
            .patch(
                DAEMON_SET_NAME,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "set the desired version on DaemonSet {DAEMON_SET_NAMESPACE}/{DAEMON_SET_NAME}"
                    )
                });
            }
        }
    }
}

/// The address of the node's agent endpoint (InternalIP and the kubelet port). Pure.
pub fn kubelet_endpoint(node: &Node) -> Option<SocketAddr> {
    let status = node.status.as_ref()?;
    let port = status
        .daemon_endpoints
        .as_ref()?
        .kubelet_endpoint
        .as_ref()?
        .port;
    let ip: IpAddr = status
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

fn answers(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// Whether `node` reports `version` and a Ready heartbeat at or after `since` (so the Ready
/// it shows is the new agent's, not the old one's last word). Pure.
pub fn upgraded_since(node: &Node, version: &str, since: Timestamp) -> bool {
    node.annotations()
        .get(VERSION_ANNOTATION)
        .map(String::as_str)
        == Some(version)
        && node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.last_heartbeat_time.as_ref().is_some_and(|t| t.0 >= since)
                })
            })
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Write as _, os::unix::fs::OpenOptionsExt as _};

    use serde_json::Value;

    use super::*;

    #[test]
    fn the_release_is_read_from_the_version_line() {
        assert_eq!(release_of("strait-agent 0.1.0\n"), Some("0.1.0"));
        assert_eq!(release_of("strait-agent 1.2.3-rc.1"), Some("1.2.3-rc.1"));
        assert_eq!(release_of("netctl 0.1.0"), None);
        assert_eq!(release_of("strait-agent "), None);
        assert_eq!(release_of("strait-agent x.y"), None);
        assert_eq!(release_of(""), None);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strait-upgrade-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn script(dir: &Path, name: &str, mode: u32, body: &str) -> PathBuf {
        let path = dir.join(name);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .unwrap();
        file.write_all(body.as_bytes()).unwrap();
        path
    }

    #[test]
    fn a_binary_is_checked_before_it_is_used() {
        let dir = temp_dir("check");
        let missing = dir.join("missing");
        assert!(matches!(
            binary_version(&missing),
            Err(BinaryError::Missing(p)) if p == missing
        ));
        let error = binary_version(&missing).unwrap_err().to_string();
        assert!(
            error.contains("does not exist") && error.contains("missing"),
            "{error}"
        );
        assert!(matches!(
            binary_version(&dir),
            Err(BinaryError::NotAFile(_))
        ));
        let plain = script(&dir, "plain", 0o644, "#!/bin/sh\necho strait-agent 0.1.0\n");
        assert!(matches!(
            binary_version(&plain),
            Err(BinaryError::NotExecutable(_))
        ));
        let other = script(&dir, "other", 0o755, "#!/bin/sh\necho netctl 0.1.0\n");
        let error = binary_version(&other).unwrap_err().to_string();
        assert!(error.contains("is not a strait-agent"), "{error}");
        assert!(error.contains("netctl 0.1.0"), "{error}");
        let agent = script(&dir, "agent", 0o755, "#!/bin/sh\necho strait-agent 0.3.1\n");
        let version = binary_version(&agent).unwrap();
        assert_eq!(
            version,
            format!("0.3.1+{}", strait_host::agent::build_id(&agent).unwrap())
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn node(version: &str, ready: &str, heartbeat: &str) -> Node {
        let value: Value = json!({
            "metadata": {"name": "n", "annotations": {VERSION_ANNOTATION: version}},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastHeartbeatTime": heartbeat}],
                       "addresses": [{"type": "Hostname", "address": "n"},
                                     {"type": "InternalIP", "address": "172.30.0.10"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}},
        });
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_node_is_upgraded_when_the_new_agent_says_ready() {
        let since: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        assert!(upgraded_since(
            &node("v2", "True", "2026-01-01T00:00:10Z"),
            "v2",
            since
        ));
        // The old agent's version, or its last heartbeat before the restart, or not Ready.
        assert!(!upgraded_since(
            &node("v1", "True", "2026-01-01T00:00:11Z"),
            "v2",
            since
        ));
        assert!(!upgraded_since(
            &node("v2", "True", "2026-01-01T00:00:09Z"),
            "v2",
            since
        ));
        assert!(!upgraded_since(
            &node("v2", "False", "2026-01-01T00:00:11Z"),
            "v2",
            since
        ));
        assert_eq!(
            kubelet_endpoint(&node("v2", "True", "2026-01-01T00:00:11Z")),
            Some("172.30.0.10:10250".parse().unwrap())
        );
        assert_eq!(kubelet_endpoint(&Node::default()), None);
    }
}
