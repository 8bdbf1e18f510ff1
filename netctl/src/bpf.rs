//! `netctl bpf …`: reads the node's pinned maps.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use strait_agent::dataplane::{DropCount, PinnedMaps, ServiceDump};

pub(crate) fn dump(pin_dir: &Path) -> anyhow::Result<()> {
    let maps = PinnedMaps::open(pin_dir)
        .with_context(|| format!("no Strait dataplane is pinned under {}", pin_dir.display()))?;
    print!("{}", render_services(&maps.services()?));
    println!();
    print!("{}", render_drops(&maps.drops()?));
    Ok(())
}

/// The service table in the shape `cilium bpf lb list` users know: one line per slot, the
/// master first with its backend count.
fn render_services(services: &[ServiceDump]) -> String {
    let mut out = format!(
        "{:<24} {}\n",
        "SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"
    );
    for service in services {
        let frontend = service.frontend.to_string();
        let _infallible = writeln!(
            out,
            "{frontend:<24} 0.0.0.0:0 ({}) (0) [{} backends]",
            service.rev_nat, service.count
        );
        for slot in &service.slots {
            let backend = slot
                .backend
                .map_or_else(|| "<missing>".to_owned(), |b| b.to_string());
            let _infallible = writeln!(
                out,
                "{:<24} {backend} ({}) ({})",
                "", service.rev_nat, slot.slot
            );
        }
    }
    out
}

fn render_drops(drops: &[DropCount]) -> String {
    let mut out = format!("{:<28} {}\n", "DROP REASON", "PACKETS");
    for drop in drops {
        let _infallible = writeln!(out, "{:<28} {}", drop.reason.name(), drop.packets);
    }
    out
}
