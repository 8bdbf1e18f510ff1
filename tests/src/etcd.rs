//! An etcd server on loopback inside a network namespace, killed on drop.
//!
//! Debian's etcd 3.4 (`/usr/bin/etcd`); its package service is refused on this machine, so
//! tests start their own, with a temporary data directory. Inside a namespace of its own the
//! standard ports (2379 clients, 2380 peers) never collide with another test's.

use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::Netns;

/// A running etcd.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    data: tempfile::TempDir,
}

impl Etcd {
    /// The client URL, reachable from inside the namespace.
    pub const URL: &'static str = "http://127.0.0.1:2379";

    /// Start etcd in `netns` and wait until it is healthy.
    pub fn start(netns: &Netns) -> Self {
        let data = tempfile::Builder::new()
            .prefix("strait-etcd-test-")
            .tempdir()
            .expect("create etcd's data directory");
        let child = netns
            .command(&["etcd", "--data-dir"])
            .arg(data.path())
            .args([
                "--listen-client-urls",
                Self::URL,
                "--advertise-client-urls",
                Self::URL,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "default=http://127.0.0.1:2380",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = Self { child, data };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let health = netns.exec(&["etcdctl", "--endpoints", Self::URL, "endpoint", "health"]);
            if health.status.success() {
                return etcd;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd did not become healthy within 30 s");
    }

    /// The process id (to read its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
