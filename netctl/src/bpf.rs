//! `netctl bpf dump TABLE`: reads the node's pinned maps directly, so it works while the agent
//! is down. Tables are shaped like `cilium bpf lb list` / `cilium bpf ct list`; `--json` gives
//! the same rows as JSON.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use clap::ValueEnum;
use serde_json::{Value, json};
use strait_agent::dataplane::{
    AffinityClient, AffinityDump, BackendDump, CtDump, CtPressure, DropCount, PinnedMaps, Protocol,
    ServiceDump, ServiceStatsDump, policy::PolicyMaps,
};
use strait_ebpf_common::{
    ct::{CT_F_CLOSING, CT_F_SNAT, CT_REPLY},
    policy::{
        DIR_INGRESS, EP_F_ENFORCE_EGRESS, EP_F_ENFORCE_INGRESS, IDENTITY_ANY, IDENTITY_HOST,
        IDENTITY_WORLD, POLICY_PREFIX_PROTOCOL, PolicyKey,
    },
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
    /// NetworkPolicy entries of every endpoint (`cilium bpf policy get`).
    Policy,
    /// Address → identity (`cilium bpf ipcache list`).
    Ipcache,
    /// Pod endpoints: veth ifindex, identity, which directions are enforced.
    Endpoints,
    /// What each identity stands for (`cilium identity list`), as the agent last wrote it.
    Identities,
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
        Table::Policy | Table::Ipcache | Table::Endpoints | Table::Identities => {
            policy_table(&maps.policy()?, table)
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

/// `netctl bpf dump identities`: the file the agent rewrites after every compilation (the
/// maps hold numbers only).
pub(crate) fn identities(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let path = state_dir.join("policy-identities.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no identities at {} (is an agent running here?)",
            path.display()
        )
    })?;
    let rows: Vec<Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the agent's identity list", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<10} LABELS", "IDENTITY");
    for row in rows {
        let labels = |v: &Value, prefix: &str| -> Vec<String> {
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{prefix}{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        };
        let text = match row["cidr"].as_str() {
            Some(cidr) => format!("cidr:{cidr}"),
            None => {
                let mut parts = vec![format!(
                    "namespace={}",
                    row["namespace"].as_str().unwrap_or_default()
                )];
                parts.extend(labels(&row["labels"], ""));
                parts.extend(labels(&row["namespaceLabels"], "ns:"));
                if let Some(block) = row["block"].as_str() {
                    parts.push(format!("ipblock:{block}"));
                }
                parts.join(" ")
            }
        };
        println!("{:<10} {text}", row["identity"]);
    }
    Ok(())
}

fn identity_name(id: u32) -> String {
    match id {
        IDENTITY_ANY => "any".to_owned(),
        IDENTITY_HOST => "host".to_owned(),
        IDENTITY_WORLD => "world".to_owned(),
        id => id.to_string(),
    }
}

/// What a policy trie entry covers: every protocol, every port of one, or a block of ports.
fn policy_scope(prefix: u32, key: &PolicyKey) -> (String, String) {
    if prefix < POLICY_PREFIX_PROTOCOL {
        return ("any".to_owned(), "any".to_owned());
    }
    let proto = proto_name(key.protocol);
    let bits = prefix - POLICY_PREFIX_PROTOCOL;
    if bits == 0 {
        return (proto, "any".to_owned());
    }
    let start = u16::from_be(key.dport);
    let end = u32::from(start) + (1u32 << (16 - bits)) - 1;
    let ports = if end == u32::from(start) {
        start.to_string()
    } else {
        format!("{start}-{end}")
    };
    (proto, ports)
}

fn policy_table(maps: &PolicyMaps, table: Table) -> (String, Value) {
    let mut rows = Vec::new();
    let mut out = String::new();
    match table {
        Table::Ipcache => {
            let _ = writeln!(out, "{:<20} IDENTITY", "PREFIX");
            for ((prefix, addr), id) in &maps.ipcache {
                let net = format!("{}/{prefix}", Ipv4Addr::from(addr.to_ne_bytes()));
                let _ = writeln!(out, "{net:<20} {}", identity_name(*id));
                rows.push(json!({"prefix": net, "identity": id}));
            }
        }
        Table::Endpoints => {
            let _ = writeln!(
                out,
                "{:<10} {:<10} {:<8} EGRESS",
                "IFINDEX", "IDENTITY", "INGRESS"
            );
            for (ifindex, ep) in &maps.endpoints {
                let enforced = |flag| {
                    if ep.flags & flag != 0 {
                        "enforced"
                    } else {
                        "open"
                    }
                };
                let (ingress, egress) = (
                    enforced(EP_F_ENFORCE_INGRESS),
                    enforced(EP_F_ENFORCE_EGRESS),
                );
                let _ = writeln!(
                    out,
                    "{ifindex:<10} {:<10} {ingress:<8} {egress}",
                    ep.identity
                );
                rows.push(json!({"ifindex": ifindex, "identity": ep.identity, "ingress": ingress, "egress": egress}));
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "{:<10} {:<10} {:<10} {:<6} {:<12} RULE",
                "ENDPOINT", "DIRECTION", "IDENTITY", "PROTO", "PORTS"
            );
            for ((prefix, key), rule) in &maps.policy {
                let direction = if key.direction == DIR_INGRESS {
                    "ingress"
                } else {
                    "egress"
                };
                let (proto, ports) = policy_scope(*prefix, key);
                let identity = identity_name(key.identity);
                let _ = writeln!(
                    out,
                    "{:<10} {direction:<10} {identity:<10} {proto:<6} {ports:<12} {rule}",
                    key.endpoint
                );
                rows.push(json!({"endpoint": key.endpoint, "direction": direction, "identity": key.identity,
                                 "protocol": proto, "ports": ports, "rule": rule}));
            }
        }
    }
    (out, Value::Array(rows))
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn trie_prefixes_read_back_as_protocols_and_port_ranges() {
        let key = |protocol, port: u16| PolicyKey {
            endpoint: 7,
            identity: 300,
            direction: DIR_INGRESS,
            protocol,
            dport: port.to_be(),
        };
        assert_eq!(
            policy_scope(POLICY_PREFIX_PROTOCOL - 8, &key(0, 0)),
            ("any".into(), "any".into())
        );
        assert_eq!(
            policy_scope(POLICY_PREFIX_PROTOCOL, &key(17, 0)),
            ("UDP".into(), "any".into())
        );
        assert_eq!(
            policy_scope(POLICY_PREFIX_PROTOCOL + 16, &key(6, 80)),
            ("TCP".into(), "80".into())
        );
        assert_eq!(
            policy_scope(POLICY_PREFIX_PROTOCOL + 6, &key(6, 1024)),
            ("TCP".into(), "1024-2047".into())
        );
    }
}
