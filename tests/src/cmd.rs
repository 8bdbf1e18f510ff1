//! Running host tools (ip, ethtool) with errors that show the command and its output.

use std::process::{Command, Output};

/// Runs `argv` and panics with the command line and its stderr if it fails: harness setup
/// that fails is a broken test machine, not a test result.
pub fn run(argv: &[&str]) -> Output {
    let output = output(argv);
    assert!(
        output.status.success(),
        "`{}` failed ({}): {}",
        argv.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    output
}

/// Runs `argv` and returns its output whatever its status.
pub fn output(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("failed to start `{}`: {e}", argv.join(" ")))
}
