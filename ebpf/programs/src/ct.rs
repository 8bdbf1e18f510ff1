//! Connection tracking for the per-packet path (see `strait_ebpf_common::ct` for the model),
//! for both families through [`Addr`].

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
};
use strait_ebpf_common::{
    ct::{
        CT_F_CLOSING, CT_FORWARD, CT_LIFETIME_CLOSING, CT_LIFETIME_TCP, CT_LIFETIME_UDP, CT_REPLY,
        CtEntry, CtKey, Tuple,
    },
    drop::DropReason,
    service::PROTO_TCP,
};

use crate::{family::Addr, packet::Packet};

/// TCP flags that end a connection.
pub(crate) const TCP_FIN_RST: u8 = 0x01 | 0x04;
/// TCP SYN and ACK flags.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Whether `packet` opens a TCP connection: SYN without ACK (nor FIN or RST). Meeting the entry
/// of a connection that is closing, it is a new connection on a reused tuple (a client reusing
/// its port once the server closed first), not a late packet of the old one: Cilium's
/// CT_REOPENED.
#[inline(always)]
pub(crate) fn opens<A>(packet: &Packet<A>) -> bool {
    packet.proto == PROTO_TCP && packet.tcp_flags & (TCP_SYN | TCP_ACK | TCP_FIN_RST) == TCP_SYN
}

/// Whether `packet` is a TCP handshake's SYN or SYN-ACK (without FIN or RST).
#[inline(always)]
fn handshake<A>(packet: &Packet<A>) -> bool {
    packet.proto == PROTO_TCP && packet.tcp_flags & (TCP_SYN | TCP_FIN_RST) == TCP_SYN
}

#[inline(always)]
pub(crate) fn now_secs() -> u32 {
    // SAFETY: a plain helper call.
    (unsafe { bpf_ktime_get_ns() } / 1_000_000_000) as u32
}

#[inline(always)]
pub(crate) fn lifetime(proto: u8, closing: bool) -> u32 {
    if proto != PROTO_TCP {
        CT_LIFETIME_UDP
    } else if closing {
        CT_LIFETIME_CLOSING
    } else {
        CT_LIFETIME_TCP
    }
}

/// Finds the live entry for `packet` in direction `dir`, accounts the packet on it, and returns
/// the tuple to rewrite the packet to and the service's reverse-NAT index.
///
/// A handshake packet (the client's SYN in the FORWARD entry, the backend's SYN-ACK in the
/// REPLY entry) that meets a closing entry reopens it, as Cilium does: the new connection on
/// the reused tuple keeps the backend, and its entries live as an open connection's again
/// rather than expiring [`CT_LIFETIME_CLOSING`] seconds after its last packet.
#[inline(always)]
pub(crate) fn lookup<A: Addr>(packet: &Packet<A>, dir: u8) -> Option<(Tuple<A>, u16)> {
    let entry = A::ct_get_mut(CtKey::new(packet.tuple, packet.proto, dir))?;
    let now = now_secs();
    // SAFETY: the pointer is to a live map value; concurrent writers on other CPUs may update
    // the same counters, which costs at most a lost increment.
    let entry = unsafe { &mut *entry };
    if entry.expires < now {
        return None;
    }
    if handshake(packet) {
        entry.flags &= !CT_F_CLOSING;
    }
    let closing = entry.flags & CT_F_CLOSING != 0 || packet.tcp_flags & TCP_FIN_RST != 0;
    if closing {
        entry.flags |= CT_F_CLOSING;
    }
    entry.expires = now + lifetime(packet.proto, closing);
    entry.packets += 1;
    entry.bytes += u64::from(packet.len);
    Some((entry.nat, entry.rev_nat))
}

/// The rewrite recorded for `tuple` in direction `dir`, if live, without accounting a packet
/// (for ICMP errors that quote a tracked flow).
#[inline(always)]
pub(crate) fn peek<A: Addr>(tuple: Tuple<A>, proto: u8, dir: u8) -> Option<(Tuple<A>, u16)> {
    let entry = A::ct_get(CtKey::new(tuple, proto, dir))?;
    (entry.expires >= now_secs()).then_some((entry.nat, entry.rev_nat))
}

/// Tracks a new flow: `packet` (as the client sent it) is rewritten to `nat`. Writes the REPLY
/// entry first, then the FORWARD entry. With `exclusive` (source NAT, where the reply tuple is
/// the port reservation) a live REPLY entry for the same tuple makes it fail, so two flows never
/// claim one reply tuple; an expired one is replaced.
#[inline(always)]
pub(crate) fn create<A: Addr>(
    packet: &Packet<A>,
    nat: Tuple<A>,
    rev_nat: u16,
    flags: u8,
    exclusive: bool,
) -> Result<(), DropReason> {
    let now = now_secs();
    let reply = CtEntry {
        nat: packet.tuple.reversed(),
        rev_nat,
        flags,
        pad: 0,
        expires: now + lifetime(packet.proto, false),
        pad2: 0,
        packets: 0,
        bytes: 0,
    };
    let reply_key = CtKey::new(nat.reversed(), packet.proto, CT_REPLY);
    if exclusive
        && A::ct_insert(reply_key, reply, u64::from(BPF_NOEXIST)).is_err()
        && A::ct_get(reply_key).is_some_and(|e| e.expires >= now)
    {
        return Err(DropReason::CtWriteFailed);
    }
    A::ct_insert(reply_key, reply, 0).map_err(|_| DropReason::CtWriteFailed)?;
    let forward = CtEntry {
        nat,
        packets: 1,
        bytes: u64::from(packet.len),
        ..reply
    };
    A::ct_insert(
        CtKey::new(packet.tuple, packet.proto, CT_FORWARD),
        forward,
        0,
    )
    .map_err(|_| DropReason::CtWriteFailed)
}

/// Picks a source port for a flow source-NATed to `node` towards `backend`, and tracks it.
/// The client's own port is tried first (it is usually free), then random ports in the range;
/// a REPLY entry already holding the tuple makes the insert fail, so the next port is tried.
#[inline(always)]
pub(crate) fn create_snat<A: Addr>(
    packet: &Packet<A>,
    node: A,
    backend: (A, u16),
    port_range: (u16, u16),
    rev_nat: u16,
    flags: u8,
) -> Result<Tuple<A>, DropReason> {
    let (min, max) = port_range;
    let span = u32::from(max.saturating_sub(min)) + 1;
    let mut port = u16::from_be(packet.tuple.sport);
    for _attempt in 0..8 {
        if port >= min && port <= max {
            let nat = Tuple {
                saddr: node,
                daddr: backend.0,
                sport: port.to_be(),
                dport: backend.1,
            };
            if create(packet, nat, rev_nat, flags, true).is_ok() {
                return Ok(nat);
            }
        }
        // SAFETY: a plain helper call.
        let random = unsafe { bpf_get_prandom_u32() };
        port = min + (random % span) as u16;
    }
    Err(DropReason::NoSnatPort)
}
