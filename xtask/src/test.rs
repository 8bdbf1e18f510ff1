//! `cargo xtask test`: setup, then every test of the workspace in one cargo invocation over the default members (one
//! build, one target directory).

use crate::exec::{cargo, exec, require_root};

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    require_root("test")?;
    crate::setup::run()?;
    let mut command = cargo();
    command.args(["test", "--no-fail-fast"]);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    exec(&mut command)
}
