//! A `strait-control` process in its own network namespace, for cluster-tier tests.
//!
//! The control plane listens on 127.0.0.1:6443 inside a fresh namespace, so tests never
//! compete for ports and every client (kubectl, the Python client, curl) runs inside the
//! namespace too, as MACHINE.md requires. The data directory is a temporary directory; the
//! process is killed and the directory removed on drop, also when the test panics.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, mpsc},
    time::Duration,
};

use crate::Netns;

/// Where the machine's kubectl builds are (the google-cloud-cli package).
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// A running `strait-control`.
#[derive(Debug)]
pub struct ControlPlane {
    binary: PathBuf,
    args: Vec<String>,
    data: tempfile::TempDir,
    /// `ADDRESS:PORT` it listens on inside its namespace.
    listen: String,
    child: Option<Child>,
    // Dropped last: the process must be gone before its namespace.
    netns: Arc<Netns>,
}

impl ControlPlane {
    /// Start `binary` (the test's `CARGO_BIN_EXE_strait-control`) with extra arguments and
    /// wait until it serves.
    pub fn start(binary: &Path, extra: &[&str]) -> Self {
        Self::start_in(binary, Arc::new(Netns::new("stc")), 6443, extra)
    }

    /// Start in a namespace shared with other processes (an etcd, another control plane),
    /// on 127.0.0.1:`port`.
    pub fn start_in(binary: &Path, netns: Arc<Netns>, port: u16, extra: &[&str]) -> Self {
        Self::start_listening(binary, netns, &format!("127.0.0.1:{port}"), extra)
    }

    /// Start in `netns` listening on `listen` (`ADDRESS:PORT`), e.g. an address other
    /// namespaces reach over a bridge.
    pub fn start_listening(binary: &Path, netns: Arc<Netns>, listen: &str, extra: &[&str]) -> Self {
        let data = tempfile::Builder::new()
            .prefix("strait-control-test-")
            .tempdir()
            .expect("create a data directory");
        let mut plane = Self {
            binary: binary.to_owned(),
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            data,
            listen: listen.to_owned(),
            child: None,
            netns,
        };
        plane.spawn();
        plane
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the control plane's log");
        let mut child = self
            .netns
            .command(&[self.binary.to_str().expect("a UTF-8 path")])
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(self.data.path())
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start strait-control");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("strait-control: serving") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            panic!("strait-control did not start within 60 s; its log:\n{log}");
        }
    }

    /// The namespace the control plane and its clients run in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The API's URL (reachable from inside [`Self::netns`]).
    pub fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The join token agents are given.
    pub fn node_token(&self) -> String {
        std::fs::read_to_string(self.data.path().join("node-token"))
            .expect("read the node-token file")
            .trim()
            .to_owned()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("admin.kubeconfig")
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("control.log")
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A kubectl command of one version ("1.33", "1.27") against this control plane.
    pub fn kubectl_command(&self, version: &str, args: &[&str]) -> Command {
        let kubectl = format!("{KUBECTL_DIR}/kubectl.{version}");
        let mut command = self.netns.command(&[&kubectl]);
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            // kubectl caches discovery under $HOME; a per-test home keeps tests apart.
            .env("HOME", self.data.path())
            .env("KUBECACHEDIR", self.data.path().join("kube-cache"));
        command
    }

    /// Run kubectl and return its output, whatever its status.
    pub fn kubectl(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_command(version, args)
            .output()
            .expect("start kubectl")
    }

    /// Run kubectl; panic with its stderr unless it succeeds; return stdout.
    pub fn kubectl_ok(&self, version: &str, args: &[&str]) -> String {
        let out = self.kubectl(version, args);
        assert!(
            out.status.success(),
            "kubectl {version} {} failed: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The process id (to read its memory), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the process with SIGKILL (no chance to flush anything) and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop (SIGKILL) and start again on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill9();
    }
}
