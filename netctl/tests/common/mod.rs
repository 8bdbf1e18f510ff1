//! What the local-cluster tests share: running netctl and kubectl, unique cluster names, and
//! a cluster guard that brings its cluster down on drop, also when the test panics.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub(crate) const NETCTL: &str = env!("CARGO_BIN_EXE_netctl");
pub(crate) const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub(crate) fn netctl(args: &[&str]) -> Output {
    Command::new(NETCTL)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run netctl")
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A cluster name no other test (or run) uses, within the 12-character limit.
pub(crate) fn unique(tag: char) -> String {
    format!("t{}{tag}", std::process::id() % 1_000_000)
}

/// A cluster brought up by `netctl cluster up`, brought down on drop.
pub(crate) struct Up {
    pub(crate) name: String,
}

impl Up {
    pub(crate) fn start(name: &str, nodes: usize) -> Self {
        let up = Self {
            name: name.to_owned(),
        };
        let out = netctl(&[
            "cluster",
            "up",
            "--name",
            name,
            "--nodes",
            &nodes.to_string(),
        ]);
        assert!(out.status.success(), "cluster up {name}: {}", text(&out));
        up
    }

    pub(crate) fn dir(&self) -> PathBuf {
        Path::new("/var/lib/strait/clusters").join(&self.name)
    }

    pub(crate) fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let kubeconfig = self.dir().join("control/admin.kubeconfig");
        let mut child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut input = child.stdin.take().expect("kubectl's stdin");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("write to kubectl");
        drop(input);
        child.wait_with_output().expect("kubectl's output")
    }

    pub(crate) fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} on {}: {}",
            self.name,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn apply(&self, object: &Value) {
        let out = self.kubectl_output(&["apply", "-f", "-"], Some(&object.to_string()));
        assert!(out.status.success(), "apply {object}: {}", text(&out));
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut argv = args.to_vec();
        argv.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&argv)).expect("kubectl's JSON")
    }

    /// The record `netctl cluster up` wrote.
    pub(crate) fn record(&self) -> Value {
        serde_json::from_slice(&fs::read(self.dir().join("cluster.json")).expect("the record"))
            .expect("a record")
    }

    /// Each agent's (node, pid, binary), from the record.
    pub(crate) fn agents(&self) -> Vec<(String, u64, String)> {
        self.record()["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter(|p| p["role"] == "agent")
            .map(|p| {
                (
                    p["node"].as_str().unwrap_or_default().to_owned(),
                    p["pid"].as_u64().unwrap_or_default(),
                    p["binary"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = netctl(&["cluster", "down", "--name", &self.name]);
    }
}

pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => thread::sleep(Duration::from_millis(250)),
        }
    }
}
