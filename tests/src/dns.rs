//! A `strait-dns` process in a network namespace, and `dig` run beside it, for the DNS tests
//! (`dns/tests/`) and the cluster tier (one per node, in the node's namespace).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::Netns;

/// A running `strait-dns`, killed on drop.
#[derive(Debug)]
pub struct DnsServer {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
    /// `ADDRESS:PORT` it answers on.
    pub listen: String,
}

impl DnsServer {
    /// Starts `binary` inside `netns` answering on `listen`, watching the API through
    /// `kubeconfig`, and waits until it serves (its caches may still be listing: cluster
    /// names get SERVFAIL until they have).
    pub fn start(
        binary: &Path,
        netns: &Netns,
        listen: &str,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Self {
        let log = tempfile::Builder::new()
            .prefix("strait-dns-test-")
            .suffix(".log")
            .tempfile()
            .expect("create a log file");
        let mut child = netns
            .command(&[binary.to_str().expect("a UTF-8 path")])
            .arg("--listen")
            .arg(listen)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .env("RUST_LOG", "info,strait_dns=debug,hickory_server=warn")
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("reopen the log"))
            .spawn()
            .expect("start strait-dns");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("strait-dns: serving") {
                    let _ = tx.send(());
                }
            }
        });
        let server = Self {
            child: Some(child),
            log,
            listen: listen.to_owned(),
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!(
                "strait-dns did not start within 30 s; its log:\n{}",
                server.log()
            );
        }
        server
    }

    /// The address part of [`Self::listen`].
    pub fn ip(&self) -> &str {
        self.listen
            .rsplit_once(':')
            .map_or(self.listen.as_str(), |(ip, _)| ip)
    }

    /// The port part of [`Self::listen`].
    pub fn port(&self) -> &str {
        self.listen.rsplit_once(':').map_or("53", |(_, port)| port)
    }

    /// The process id, while it runs (to read its memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.log.path().to_owned()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().ok()
    }

    /// `dig` against this server from inside `netns` (one try, `timeout` seconds); the full
    /// output, whatever its status.
    pub fn dig(&self, netns: &Netns, args: &[&str]) -> String {
        dig(netns, &self.listen, args)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `dig @server` (`ADDRESS:PORT`) from inside `netns`, one try of at most 4 s; its output.
pub fn dig(netns: &Netns, server: &str, args: &[&str]) -> String {
    let (ip, port) = server.rsplit_once(':').unwrap_or((server, "53"));
    let at = format!("@{ip}");
    let mut argv = vec!["dig", at.as_str(), "-p", port, "+tries=1", "+time=4"];
    argv.extend_from_slice(args);
    let out = netns.exec(&argv);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `status:` of a dig output (`NOERROR`, `NXDOMAIN` …), or `""` when there was no answer.
pub fn status(dig_output: &str) -> &str {
    dig_output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("")
}
