//! Network namespace and veth pair guards.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
};

use nix::sched::{CloneFlags, setns};

use crate::{
    cleanup::{Resource, track, untrack},
    cmd,
    names::{unique_ifname, unique_name},
};

/// A named network namespace (`ip netns add`), with loopback up and IPv4 forwarding on,
/// deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    tracked: u64,
}

impl Netns {
    /// Creates a namespace named `prefix` + a unique suffix.
    pub fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        // A leftover of this name can only come from a dead process with our pid.
        let _stale = cmd::output(&["ip", "netns", "del", &name]);
        cmd::run(&["ip", "netns", "add", &name]);
        let tracked = track(Resource::Netns(name.clone()));
        let ns = Self { name, tracked };
        cmd::run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind-mounted handle, /run/netns/NAME.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// A command that runs `argv` inside the namespace (`ip netns exec`).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(argv);
        command
    }

    /// Runs `argv` inside the namespace and returns its output whatever its status.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv).output().unwrap_or_else(|e| {
            panic!("failed to start `{}` in {}: {e}", argv.join(" "), self.name)
        })
    }

    /// Runs `argv` inside the namespace; panics with its stderr if it fails.
    pub fn exec_ok(&self, argv: &[&str]) -> Output {
        let output = self.exec(argv);
        assert!(
            output.status.success(),
            "`{}` in {} failed ({}): {}",
            argv.join(" "),
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        output
    }

    /// Runs `argv` inside the namespace from inside `cgroup` (a cgroup2 directory), so cgroup
    /// programs attached there apply to it. The shell moves itself into the cgroup before it
    /// execs `ip netns exec`, which remounts /sys and would hide the cgroup2 mount.
    pub fn exec_in_cgroup(&self, cgroup: &Path, argv: &[&str]) -> Output {
        self.command_in_cgroup(cgroup, argv)
            .output()
            .unwrap_or_else(|e| {
                panic!("failed to start `{}` in {}: {e}", argv.join(" "), self.name)
            })
    }

    /// The command [`Self::exec_in_cgroup`] runs, for callers that spawn it and talk to it.
    pub fn command_in_cgroup(&self, cgroup: &Path, argv: &[&str]) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@""#)
            .arg(cgroup)
            .arg(&self.name)
            .args(argv);
        command
    }

    /// Creates a bridge named `name` inside the namespace, up.
    pub fn add_bridge(&self, name: &str) {
        cmd::run(&[
            "ip", "-n", &self.name, "link", "add", name, "type", "bridge",
        ]);
        cmd::run(&["ip", "-n", &self.name, "link", "set", name, "up"]);
    }

    /// Adds a route inside the namespace, e.g. `route(&["10.244.2.0/24", "via", "192.168.77.3"])`.
    pub fn route(&self, spec: &[&str]) {
        let mut argv = vec!["ip", "-n", self.name.as_str(), "route", "add"];
        argv.extend_from_slice(spec);
        cmd::run(&argv);
    }

    /// Runs `f` on a fresh thread that has entered the namespace; sockets it creates stay in
    /// the namespace whichever thread uses them afterwards.
    pub fn run<T, F>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in(&self.path(), f)
    }
}

/// [`Netns::run`] for a namespace this harness did not make, by its file (a pod's, which its
/// agent keeps under its state directory).
pub fn run_in<T, F>(path: &Path, f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    thread::scope(|scope| {
        scope
            .spawn(move || {
                let handle =
                    File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                setns(handle, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns into {}: {e}", path.display()));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        untrack(self.tracked);
        remove(&self.name);
    }
}

/// Deletes a namespace, and with it the interfaces inside it.
pub(crate) fn remove(name: &str) {
    let out = cmd::output(&["ip", "netns", "del", name]);
    if !out.status.success() && !thread::panicking() {
        eprintln!(
            "warning: failed to delete netns {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// One end of a veth pair: its namespace, interface name and address.
#[derive(Debug, Clone)]
pub struct VethEnd {
    pub netns: String,
    pub ifname: String,
    /// Address with prefix length, e.g. `10.0.1.1/24`.
    pub cidr: String,
}

impl VethEnd {
    /// The address without its prefix length.
    pub fn ip(&self) -> &str {
        // An unaddressed end has no address to give.
        debug_assert!(!self.cidr.is_empty(), "{} has no address", self.ifname);
        self.cidr.split('/').next().unwrap_or(&self.cidr)
    }
}

/// A veth pair between two namespaces, addressed, up, with checksum offloads off on both ends
/// (veth packets are CHECKSUM_PARTIAL otherwise, and a wrong L4 checksum rewrite would pass).
#[derive(Debug)]
pub struct VethPair {
    pub a: VethEnd,
    pub b: VethEnd,
}

impl VethPair {
    /// Creates the pair with end `a` in `ns_a` (address `cidr_a`) and end `b` in `ns_b`. An
    /// empty address leaves that end unaddressed (a bridge port).
    pub fn new(ns_a: &Netns, cidr_a: &str, ns_b: &Netns, cidr_b: &str) -> Self {
        let a = VethEnd {
            netns: ns_a.name().to_owned(),
            ifname: unique_ifname("va"),
            cidr: cidr_a.to_owned(),
        };
        let b = VethEnd {
            netns: ns_b.name().to_owned(),
            ifname: unique_ifname("vb"),
            cidr: cidr_b.to_owned(),
        };
        cmd::run(&[
            "ip", "link", "add", &a.ifname, "netns", &a.netns, "type", "veth", "peer", "name",
            &b.ifname, "netns", &b.netns,
        ]);
        let pair = Self { a, b };
        for (end, ns) in [(&pair.a, ns_a), (&pair.b, ns_b)] {
            if !end.cidr.is_empty() {
                let mut argv = vec!["ip", "-n", &end.netns, "addr", "add", &end.cidr];
                argv.extend(["dev", &end.ifname]);
                // IPv6 addresses are usable at once instead of after duplicate detection.
                if end.cidr.contains(':') {
                    argv.push("nodad");
                }
                cmd::run(&argv);
            }
            cmd::run(&["ip", "-n", &end.netns, "link", "set", &end.ifname, "up"]);
            ns.exec_ok(&["ethtool", "-K", &end.ifname, "tx", "off", "rx", "off"]);
        }
        pair
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Gone already if its namespace was deleted first; either way nothing is left.
        let _gone = cmd::output(&["ip", "-n", &self.a.netns, "link", "del", &self.a.ifname]);
    }
}

/// Plugs `ns` into `bridge` (inside `bridge_ns`) with a veth pair; `cidr` addresses the end in
/// `ns`. Returns the pair (end `a` in `ns`).
pub fn plug_into_bridge(ns: &Netns, cidr: &str, bridge_ns: &Netns, bridge: &str) -> VethPair {
    let pair = VethPair::new(ns, cidr, bridge_ns, "");
    cmd::run(&[
        "ip",
        "-n",
        bridge_ns.name(),
        "link",
        "set",
        &pair.b.ifname,
        "master",
        bridge,
    ]);
    pair
}
