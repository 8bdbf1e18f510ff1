//! `netctl bpf dump TABLE`: reads the node's pinned maps directly, so it works while the agent
//! is down. Tables are shaped like `cilium bpf lb list` / `cilium bpf ct list`; `--json` gives
//! the same rows as JSON.

use std::{fmt::Write as _, net::SocketAddr, path::Path};

use anyhow::Context as _;
use clap::ValueEnum;
use serde_json::{Value, json};
use strait_agent::dataplane::{
    AffinityClient, AffinityDump, BackendDump, CtDump, CtPressure, DropCount, PinnedMaps, Protocol,
    ServiceDump, ServiceStatsDump,
};
use strait_ebpf_common::{
    ct::{CT_F_CLOSING, CT_F_SNAT, CT_REPLY},
    service::BACKEND_F_LOCAL,
};

/// The tables `netctl bpf dump` can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Table {
    /// Services in slot layout (`cilium bpf lb list`).
    Services,
    /// Backends by id.
    Backends,
    /// Conntrack of the per-packet path, both directions (`cilium bpf ct list`).
    Ct,
    /// Session-affinity entries.
    Affinity,
    /// Source-NATed flows.
    Nat,
    /// Drop counters by reason and conntrack pressure.
    Counters,
}

pub(crate) fn dump(pin_dir: &Path, table: Table, json: bool) -> anyhow::Result<()> {
    let maps = PinnedMaps::open(pin_dir)
        .with_context(|| format!("no Strait dataplane is pinned under {}", pin_dir.display()))?;
    let (text, value) = match table {
        Table::Services => {
            let services = maps.services()?;
            (render_services(&services), services_json(&services))
        }
        Table::Backends => {
            let backends = maps.backends()?;
            (render_backends(&backends), backends_json(&backends))
        }
        Table::Ct => {
            let ct = maps.ct()?;
            (
                render_ct(&ct),
                Value::Array(ct.iter().map(ct_json).collect()),
            )
        }
        Table::Nat => {
            let nat: Vec<CtDump> = maps
                .ct()?
                .into_iter()
                .filter(|e| e.flags & CT_F_SNAT != 0 && e.dir != CT_REPLY)
                .collect();
            (
                render_nat(&nat),
                Value::Array(nat.iter().map(ct_json).collect()),
            )
        }
        Table::Affinity => {
            let affinity = maps.affinity()?;
            (render_affinity(&affinity), affinity_json(&affinity))
        }
        Table::Counters => {
            let counters = Counters {
                services: maps.service_stats()?,
                drops: maps.drops()?,
                pressure: maps.ct_pressure()?,
            };
            (render_counters(&counters), counters_json(&counters))
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

fn proto_name(proto: u8) -> String {
    Protocol::from_number(proto).map_or_else(|| format!("proto-{proto}"), |p| p.to_string())
}

fn render_services(services: &[ServiceDump]) -> String {
    let mut out = format!(
        "{:<24} {}\n",
        "SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"
    );
    for service in services {
        let frontend = service.frontend.to_string();
        let _ = writeln!(
            out,
            "{frontend:<24} 0.0.0.0:0 ({}) (0) [{} backends]",
            service.rev_nat, service.count
        );
        for slot in &service.slots {
            let backend = slot
                .backend
                .map_or_else(|| "<missing>".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{:<24} {backend} ({}) ({})",
                "", service.rev_nat, slot.slot
            );
        }
    }
    out
}

fn services_json(services: &[ServiceDump]) -> Value {
    Value::Array(
        services
            .iter()
            .map(|s| {
                json!({
                    "frontend": s.frontend.to_string(),
                    "revNat": s.rev_nat,
                    "count": s.count,
                    "slots": s.slots.iter().map(|slot| json!({
                        "slot": slot.slot,
                        "backendId": slot.backend_id,
                        "backend": slot.backend.map(|b| b.to_string()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn render_backends(backends: &[BackendDump]) -> String {
    let mut out = format!("{:<8} {:<24} {:<6} {}\n", "ID", "ADDRESS", "PROTO", "FLAGS");
    for b in backends {
        let flags = if b.flags & BACKEND_F_LOCAL != 0 {
            "local"
        } else {
            "-"
        };
        let _ = writeln!(
            out,
            "{:<8} {:<24} {:<6} {flags}",
            b.id,
            b.address.to_string(),
            proto_name(b.proto)
        );
    }
    out
}

fn backends_json(backends: &[BackendDump]) -> Value {
    Value::Array(
        backends
            .iter()
            .map(|b| {
                json!({
                    "id": b.id,
                    "address": b.address.to_string(),
                    "protocol": proto_name(b.proto),
                    "local": b.flags & BACKEND_F_LOCAL != 0,
                })
            })
            .collect(),
    )
}

fn ct_flags(flags: u8) -> String {
    let mut names = Vec::new();
    if flags & CT_F_SNAT != 0 {
        names.push("snat");
    }
    if flags & CT_F_CLOSING != 0 {
        names.push("closing");
    }
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

fn tuple((from, to): (SocketAddr, SocketAddr)) -> String {
    format!("{from} -> {to}")
}

fn render_ct(entries: &[CtDump]) -> String {
    let mut out = String::new();
    for e in entries {
        // OUT: as the client sent it; IN: as the backend replies.
        let dir = if e.dir == CT_REPLY { "IN" } else { "OUT" };
        let _ = writeln!(
            out,
            "{} {dir} {} xlate={} expires={} Packets={} Bytes={} Flags={} RevNAT={}",
            proto_name(e.proto),
            tuple(e.tuple),
            tuple(e.nat),
            e.expires_in,
            e.packets,
            e.bytes,
            ct_flags(e.flags),
            e.rev_nat,
        );
    }
    out
}

fn ct_json(e: &CtDump) -> Value {
    json!({
        "protocol": proto_name(e.proto),
        "direction": if e.dir == CT_REPLY { "in" } else { "out" },
        "tuple": tuple(e.tuple),
        "xlate": tuple(e.nat),
        "expiresIn": e.expires_in,
        "packets": e.packets,
        "bytes": e.bytes,
        "flags": ct_flags(e.flags),
        "revNat": e.rev_nat,
    })
}

fn render_nat(entries: &[CtDump]) -> String {
    let mut out = format!(
        "{:<6} {:<40} {:<40} {}\n",
        "PROTO", "CLIENT", "BACKEND", "VIA"
    );
    for e in entries {
        let _ = writeln!(
            out,
            "{:<6} {:<40} {:<40} {}",
            proto_name(e.proto),
            e.tuple.0.to_string(),
            e.nat.1.to_string(),
            e.nat.0,
        );
    }
    out
}

fn affinity_client(client: AffinityClient) -> String {
    match client {
        AffinityClient::NetnsCookie(cookie) => format!("netns:{cookie}"),
        AffinityClient::Address(address) => address.to_string(),
    }
}

fn render_affinity(entries: &[AffinityDump]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:<8} {}\n",
        "CLIENT", "REVNAT", "BACKEND", "IDLE"
    );
    for e in entries {
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<8} {}s",
            affinity_client(e.client),
            e.rev_nat,
            e.backend_id,
            e.idle_secs
        );
    }
    out
}

fn affinity_json(entries: &[AffinityDump]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "client": affinity_client(e.client),
                    "revNat": e.rev_nat,
                    "backendId": e.backend_id,
                    "idleSeconds": e.idle_secs,
                })
            })
            .collect(),
    )
}

struct Counters {
    services: Vec<ServiceStatsDump>,
    drops: Vec<DropCount>,
    pressure: CtPressure,
}

fn render_counters(c: &Counters) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>12} {:>14}\n",
        "SERVICE", "FLOWS", "PACKETS", "BYTES"
    );
    for s in &c.services {
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>12} {:>14}",
            s.frontend.to_string(),
            s.stats.flows,
            s.stats.packets,
            s.stats.bytes
        );
    }
    let _ = writeln!(out, "\n{:<28} PACKETS", "DROP REASON");
    for drop in &c.drops {
        let _ = writeln!(out, "{:<28} {}", drop.reason.name(), drop.packets);
    }
    let _ = writeln!(
        out,
        "\nconntrack: {} of {} entries ({:.1} %)",
        c.pressure.entries,
        c.pressure.capacity,
        percent(c.pressure)
    );
    out
}

fn percent(pressure: CtPressure) -> f64 {
    if pressure.capacity == 0 {
        return 0.0;
    }
    f64::from(pressure.entries) * 100.0 / f64::from(pressure.capacity)
}

fn counters_json(c: &Counters) -> Value {
    json!({
        "services": c.services.iter().map(|s| json!({
            "frontend": s.frontend.to_string(),
            "revNat": s.rev_nat,
            "flows": s.stats.flows,
            "packets": s.stats.packets,
            "bytes": s.stats.bytes,
        })).collect::<Vec<_>>(),
        "drops": c.drops.iter().map(|d| json!({"reason": d.reason.name(), "packets": d.packets})).collect::<Vec<_>>(),
        "conntrack": {"entries": c.pressure.entries, "capacity": c.pressure.capacity},
    })
}
