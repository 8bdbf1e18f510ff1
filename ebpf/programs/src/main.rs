//! Strait's BPF object. One module per attach point, one per feature:
//!
//! - `sock`: cgroup sock_addr hooks, service translation once per connection;
//! - `netdev`: tc hooks on the node's uplink, the per-packet path;
//! - `policy`: tc hooks on each pod's host-side veth, NetworkPolicy and flow records;
//! - `lb`: the service and backend maps and backend selection, shared by both;
//! - `ct`: conntrack for the per-packet path;
//! - `family`: what differs between IPv4 and IPv6 there;
//! - `packet`: header parsing and rewriting with checksum updates;
//! - `fib`: routing and redirecting what the stack would take for martians;
//! - `icmp`: ICMP errors about translated flows;
//! - `config`: the node configuration the agent writes;
//! - `stats`: per-service counters;
//! - `drop`: the single exit that counts drops by reason.

#![no_std]
#![no_main]

mod config;
mod ct;
mod drop;
mod family;
mod fib;
mod icmp;
mod lb;
mod netdev;
mod packet;
mod policy;
mod sock;
mod stats;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path, so this is never entered.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
