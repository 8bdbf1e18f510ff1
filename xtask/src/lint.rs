//! `cargo xtask lint`: formatting and clippy, for host crates and, per package, the BPF crate.

use crate::exec::{cargo, exec};

pub(crate) fn run() -> anyhow::Result<()> {
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    exec(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The BPF crate is outside default-members and only builds for the BPF target.
    exec(cargo().env("RUSTC_BOOTSTRAP", "1").args([
        "clippy",
        "--package",
        "strait-ebpf",
        "--bins",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))
}
