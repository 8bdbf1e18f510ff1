//! The side effects of a local cluster on this machine: namespaces, links, processes,
//! mounts, cgroups and pins. Every removal here is idempotent (gone already is fine), so
//! `down` can run on a cluster in any state.

use std::{
    ffi::OsStr,
    fs,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sys::signal, unistd::Pid};

/// Runs `argv`, failing with its standard error.
pub(crate) fn run(argv: &[&str]) -> anyhow::Result<()> {
    let (program, args) = argv.split_first().context("an empty command")?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `argv` and ignores a failure (removals of what may be gone already).
fn run_quietly(argv: &[&str]) {
    let _ignored = run(argv);
}

/// The namespace's bind mount, which `nsenter --net=` takes.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Whether namespace `name` exists.
pub(crate) fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Creates namespace `name` with its loopback up.
pub(crate) fn add_netns(name: &str) -> anyhow::Result<()> {
    run(&["ip", "netns", "add", name])?;
    run(&["ip", "-n", name, "link", "set", "lo", "up"])
}

/// Removes namespace `name` (its links go with it).
pub(crate) fn remove_netns(name: &str) {
    if netns_exists(name) {
        run_quietly(&["ip", "netns", "del", name]);
    }
}

/// Removes the host's link `name`, if it exists.
pub(crate) fn remove_host_link(name: &str) {
    if Path::new("/sys/class/net").join(name).exists() {
        run_quietly(&["ip", "link", "del", name]);
    }
}

/// Starts `argv` (inside namespace `netns` if given) in its own process group, detached from
/// the caller's terminal, with its output appended to `log`. Returns the pid: `nsenter`
/// execs the program, so the pid is the program's.
pub(crate) fn spawn(netns: Option<&str>, argv: &[String], log: &Path) -> anyhow::Result<u32> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let err = out.try_clone()?;
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", netns_path(netns).display()))
                .arg("--")
                .args(argv);
            command
        }
        None => {
            let (program, args) = argv.split_first().context("an empty command")?;
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    };
    let child = command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own group: an interrupt of `netctl cluster up` in a terminal does not reach it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {}", argv.join(" ")))?;
    Ok(child.id())
}

/// Whether `pid` is alive and runs `binary` (a pid may have been reused since it was
/// recorded). Just after it was spawned a process may still be `nsenter`, which execs the
/// binary once in the namespace, or have no command line yet (the kernel sets it late in
/// exec); both count as running it.
pub(crate) fn runs(pid: u32, binary: &Path) -> bool {
    // The third field of /proc/PID/stat is the state; a zombie has exited.
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline
        .split(|b| *b == 0)
        .next()
        .map(|argv0| Path::new(OsStr::from_bytes(argv0)))
        .and_then(Path::file_name);
    match argv0 {
        None => true,
        Some(name) => Some(name) == binary.file_name() || name == "nsenter",
    }
}

/// Stops `pid` if it still runs `binary`: SIGTERM, then SIGKILL after `grace`.
pub(crate) fn stop(pid: u32, binary: &Path, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if !runs(pid, binary) {
        return;
    }
    let _sent = signal::kill(Pid::from_raw(raw), signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while runs(pid, binary) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if runs(pid, binary) {
        let _sent = signal::kill(Pid::from_raw(raw), signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs(pid, binary) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Removes what a node's agent made under its state directory: runc containers, then the
/// mounts (rootfs overlays, volumes, namespace files), deepest first.
pub(crate) fn remove_node_state(state_dir: &Path) {
    let runc_root = state_dir.join("runc");
    if runc_root.exists() {
        let root = runc_root.display().to_string();
        if let Ok(out) = Command::new("runc")
            .args(["--root", &root, "list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                run_quietly(&["runc", "--root", &root, "delete", "--force", id]);
            }
        }
    }
    unmount_under(state_dir);
}

/// Unmounts everything mounted at or under `dir`, deepest first.
pub(crate) fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        run_quietly(&["umount", "-l", &mount]);
    }
}

/// Removes the cgroup `relative` (to each hierarchy's mount) in every hierarchy, leaves
/// first, killing what is left inside.
pub(crate) fn remove_cgroups(relative: &Path) {
    let mut roots: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        remove_cgroup_tree(&root.join(relative));
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.join("cgroup.procs").exists() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    for _attempt in 0..50 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _sent = signal::kill(Pid::from_raw(pid), signal::Signal::SIGKILL);
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Creates the cgroup2 directory `relative` (and its parents) under the cgroup2 mount.
pub(crate) fn create_cgroup(relative: &Path) -> anyhow::Result<PathBuf> {
    let root = strait_host::mounts::cgroup2_mount().context("find the cgroup2 mount")?;
    let path = root.join(relative);
    fs::create_dir_all(&path).with_context(|| format!("create cgroup {}", path.display()))?;
    Ok(path)
}

/// Removes a directory tree if it exists (bpffs pins included).
pub(crate) fn remove_tree(dir: &Path) {
    if dir.exists() {
        let _ignored = fs::remove_dir_all(dir);
    }
}

/// Whether `program` is on PATH.
pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Removes the parents of `dir` up to (not including) `stop` while they are empty.
pub(crate) fn remove_empty_parents(dir: &Path, stop: &Path) {
    let mut parent = dir.parent();
    while let Some(dir) = parent.filter(|d| d.starts_with(stop) && *d != stop) {
        // Fails, and so stops, at the first directory that is not empty.
        if fs::remove_dir(dir).is_err() {
            return;
        }
        parent = dir.parent();
    }
}
