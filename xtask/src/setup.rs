//! `cargo xtask setup`: install what is missing, skip what is present, name the failing step.

use std::process::Command;

use anyhow::Context as _;

use crate::exec::{exec, probe, require_root, stdout_of};

/// Debian packages Strait builds, tests or demonstrates with.
const PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "bpf-linker links BPF objects with LLVM 22, rustc's LLVM major",
    ),
    ("libclang-22-dev", "bpf-linker's build"),
    (
        "libpolly-22-dev",
        "bpf-linker's build (LLVM 22 links against Polly)",
    ),
    ("bpftool", "inspecting maps and programs"),
    ("iproute2", "network namespaces, veths, routes"),
    ("ethtool", "turning checksum offload off on test veths"),
    ("runc", "running pod containers"),
    (
        "busybox-static",
        "test and demo images, HTTP client in namespaces",
    ),
    ("umoci", "building OCI image layouts"),
    (
        "containernetworking-plugins",
        "the reference CNI plugins strait-cni's results are compared with",
    ),
    ("iptables", "kube-proxy iptables baseline in benchmarks"),
    ("nftables", "kube-proxy nftables baseline in benchmarks"),
    ("etcd-server", "the distributed store"),
    (
        "protobuf-compiler",
        "etcd-client's build compiles etcd's protobuf definitions",
    ),
    ("etcd-client", "etcdctl for store tests"),
    ("bind9-dnsutils", "dig, for cluster DNS tests"),
    ("dnsperf", "load for the cluster DNS benchmark"),
    (
        "unbound",
        "the cluster DNS benchmark's baseline (started by the benchmark, never as a service)",
    ),
    (
        "tzdata",
        "the zone database CronJob time zones are found in",
    ),
    (
        "python3",
        "socket-level clients in tests (getpeername, unconnected UDP)",
    ),
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// The Python Kubernetes client the API is proven with (shared/MACHINE.md).
const PYTHON_KUBERNETES: &str = "37.0.2";

pub(crate) fn run() -> anyhow::Result<()> {
    require_root("setup")?;
    step("Debian packages", debian_packages)?;
    step("rust-src component", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("Python kubernetes client", python_kubernetes)?;
    step("bpffs mount", || {
        strait_host::mounts::ensure_bpffs()?;
        println!("setup: bpffs is mounted at {}", strait_host::paths::BPFFS);
        Ok(())
    })?;
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    f().with_context(|| format!("setup step `{name}` failed"))
}

fn debian_packages() -> anyhow::Result<()> {
    let names: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).collect();
    let status = stdout_of(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
            .args(&names),
    )
    .unwrap_or_default();
    // dpkg-query exits non-zero when any package is not installed, so read what it printed.
    let installed: Vec<&str> = status
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, s)| s.starts_with("ii"))
        .map(|(p, _)| p)
        .collect();
    let missing: Vec<&(&str, &str)> = PACKAGES
        .iter()
        .filter(|(name, _)| !installed.contains(name))
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present ({})", names.len());
        return Ok(());
    }
    for (name, why) in &missing {
        println!("setup: installing {name} ({why})");
    }
    // Package lists are stale or empty on a fresh machine until an update.
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    exec(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q"])
            .args(missing.iter().map(|(name, _)| *name)),
    )
}

fn rust_src() -> anyhow::Result<()> {
    let installed = probe(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "stable",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: rust-src present");
        return Ok(());
    }
    println!("setup: installing rust-src (the BPF target builds core from source)");
    exec(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "stable"]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = probe(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    println!(
        "setup: installing bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM 22 (about a minute)"
    );
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    exec(Command::new("cargo").env("PATH", path).args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        "llvm-22",
    ]))
}

fn python_kubernetes() -> anyhow::Result<()> {
    let version = probe(
        Command::new("python3").args(["-c", "import kubernetes; print(kubernetes.__version__)"]),
    )
    .unwrap_or_default();
    if version.trim() == PYTHON_KUBERNETES {
        println!("setup: Python kubernetes {PYTHON_KUBERNETES} present");
        return Ok(());
    }
    println!(
        "setup: installing Python kubernetes {PYTHON_KUBERNETES} (API tests with a real client)"
    );
    exec(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        &format!("kubernetes=={PYTHON_KUBERNETES}"),
    ]))
}
