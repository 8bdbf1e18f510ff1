//! `cargo xtask bench`: runs the benchmarks; they print figures and never fail on time.

use crate::exec::{cargo, exec, require_root};

pub(crate) fn run() -> anyhow::Result<()> {
    require_root("bench")?;
    crate::setup::run()?;
    exec(cargo().args([
        "bench",
        "--package",
        "strait-agent",
        "--bench",
        "service_lookup",
    ]))
}
