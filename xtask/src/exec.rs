//! Running commands so that a failure names the command.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Runs `command`, echoing it first; fails naming the command and its exit status.
pub(crate) fn exec(command: &mut Command) -> anyhow::Result<()> {
    let line = render(command);
    println!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout, or `None` if it could not run or failed.
pub(crate) fn probe(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` quietly and returns its stdout whatever its exit status (`None` only if it
/// could not start), for tools that report partial results with a failing status.
pub(crate) fn stdout_of(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn render(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where cargo puts build output.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// A `cargo` command run from the workspace root.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

/// Builds every default member's binaries (the agent's build script builds the BPF object).
pub(crate) fn cargo_build() -> anyhow::Result<()> {
    exec(cargo().args(["build", "--bins"]))
}

/// Fails early with a clear message when not root: loading BPF programs, creating network
/// namespaces and installing packages all need it.
pub(crate) fn require_root(task: &str) -> anyhow::Result<()> {
    if !nix_is_root() {
        bail!("`cargo xtask {task}` needs root (BPF, network namespaces, package installs)");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    probe(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}
