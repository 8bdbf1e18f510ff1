//! An etcd of a test's own: Debian's `/usr/bin/etcd` on loopback ports nobody else uses, with a
//! temporary data directory, killed when dropped (also when the test panics) and, should the test
//! process itself be killed, by the kernel (parent-death signal).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

use std::{
    fs::File,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;
use tokio::time::Instant;

const ETCD: &str = "/usr/bin/etcd";

/// How long etcd may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd.
pub(crate) struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts an etcd and waits until it serves requests. Retries with other ports if another
    /// process took the ones picked.
    pub(crate) async fn start() -> Self {
        let mut last_failure = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("a temporary directory for etcd");
            let (client_port, peer_port) = free_ports();
            let mut etcd = Self {
                child: None,
                dir,
                client_port,
                peer_port,
            };
            match etcd.launch().await {
                Ok(()) => return etcd,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("etcd did not start: {last_failure}");
    }

    /// The client URL.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client URLs, as `EtcdStore::connect` takes them.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// Kills etcd with SIGKILL (no shutdown of any kind) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already gone is fine: it is killed either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports, and waits until it serves.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.launch().await {
            panic!("etcd did not restart: {failure}");
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn launch(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("etcd log {}: {e}", self.log_path().display()))?;
        let log_err = log.try_clone().map_err(|e| format!("etcd log: {e}"))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(ETCD);
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=warn")
            .arg("--logger=zap")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                // Kill etcd if the test process dies without dropping this guard.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("spawn of {ETCD}: {e}"))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("etcd exited with {status}: {}", self.log_tail()));
            }
            if self.answers().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd did not answer within {READY_TIMEOUT:?}: {}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        let Ok(mut client) = etcd_client::Client::connect([self.endpoint()], Some(options)).await
        else {
            return false;
        };
        client.get("/", None).await.is_ok()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two loopback ports free right now (the kernel picks them).
fn free_ports() -> (u16, u16) {
    let first = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let second = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    (
        first.local_addr().expect("a bound address").port(),
        second.local_addr().expect("a bound address").port(),
    )
}
