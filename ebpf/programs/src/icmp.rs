//! ICMP errors about translated flows.
//!
//! A backend (or a router on the way) that answers a translated packet with an ICMP error
//! (port unreachable, fragmentation needed, time exceeded) quotes the packet as it saw it: to
//! the backend, from the client or the node's SNAT address. Left alone, the client cannot match
//! the error to its socket, so path MTU discovery and fast failure break. The quoted tuple is a
//! conntrack REPLY key reversed; the entry gives the addresses the client knows, and both the
//! quoted headers and the outer header are rewritten, as Linux NAT does for its own flows.

use aya_ebpf::programs::TcContext;
use strait_ebpf_common::{
    ct::{CT_REPLY, Tuple4},
    drop::DropReason,
    service::{PROTO_TCP, PROTO_UDP},
};

use crate::{
    ct,
    packet::{ETH_HLEN, ETH_P_IP, IP_CSUM_OFF, IP_DADDR_OFF, IP_SADDR_OFF},
};

const PROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;

/// An ICMPv4 error quoting a TCP or UDP packet.
pub(crate) struct IcmpError4 {
    /// Outer source and destination (ports zero).
    pub(crate) outer: Tuple4,
    /// Offset of the ICMP header (its checksum is at +2).
    icmp: usize,
    /// Offset of the quoted IP header.
    inner_ip: usize,
    /// Offset of the quoted L4 header.
    inner_l4: usize,
    /// The quoted packet's tuple and protocol.
    inner: Tuple4,
    inner_proto: u8,
}

/// Parses an ICMPv4 error quoting a TCP or UDP packet; `Ok(None)` for anything else.
#[inline(always)]
pub(crate) fn parse_error4(ctx: &TcContext) -> Result<Option<IcmpError4>, DropReason> {
    let malformed = |_| DropReason::Malformed;
    let eth_proto: u16 = ctx.load(12).map_err(malformed)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Ok(None);
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).map_err(malformed)?;
    let proto: u8 = ctx.load(ETH_HLEN + 9).map_err(malformed)?;
    if proto != PROTO_ICMP {
        return Ok(None);
    }
    let icmp = ETH_HLEN + usize::from(version_ihl & 0x0f) * 4;
    let icmp_type: u8 = ctx.load(icmp).map_err(malformed)?;
    if icmp_type != ICMP_DEST_UNREACH
        && icmp_type != ICMP_TIME_EXCEEDED
        && icmp_type != ICMP_PARAMETERPROB
    {
        return Ok(None);
    }
    let inner_ip = icmp + 8;
    let inner_version_ihl: u8 = ctx.load(inner_ip).map_err(malformed)?;
    let inner_ihl = usize::from(inner_version_ihl & 0x0f) * 4;
    if inner_version_ihl >> 4 != 4 || inner_ihl < 20 {
        return Err(DropReason::Malformed);
    }
    let inner_proto: u8 = ctx.load(inner_ip + 9).map_err(malformed)?;
    if inner_proto != PROTO_TCP && inner_proto != PROTO_UDP {
        return Ok(None);
    }
    let inner_l4 = inner_ip + inner_ihl;
    let ports: [u16; 2] = ctx.load(inner_l4).map_err(malformed)?;
    Ok(Some(IcmpError4 {
        outer: Tuple4 {
            saddr: ctx.load(IP_SADDR_OFF).map_err(malformed)?,
            daddr: ctx.load(IP_DADDR_OFF).map_err(malformed)?,
            sport: 0,
            dport: 0,
        },
        icmp,
        inner_ip,
        inner_l4,
        inner: Tuple4 {
            saddr: ctx.load(inner_ip + 12).map_err(malformed)?,
            daddr: ctx.load(inner_ip + 16).map_err(malformed)?,
            sport: ports[0],
            dport: ports[1],
        },
        inner_proto,
    }))
}

/// Rewrites an ICMP error about a translated flow so the client recognises it. Returns the new
/// outer tuple, or `None` when the quoted packet belongs to no tracked flow.
#[inline(always)]
pub(crate) fn translate4(
    ctx: &TcContext,
    error: &IcmpError4,
) -> Result<Option<Tuple4>, DropReason> {
    // The quoted packet went client → backend as translated: its reverse is a REPLY key.
    let Some((restore, _rev_nat)) =
        ct::peek::<u32>(error.inner.reversed(), error.inner_proto, CT_REPLY)
    else {
        return Ok(None);
    };
    // `restore` is frontend → client; the client sent client → frontend.
    let quoted = restore.reversed();
    let fail = |_| DropReason::RewriteFailed;
    let icmp_csum = error.icmp + 2;
    let inner_csum = error.inner_ip + 10;

    let inner = error.inner;
    for (offset, from, to) in [
        (error.inner_ip + 12, inner.saddr, quoted.saddr),
        (error.inner_ip + 16, inner.daddr, quoted.daddr),
    ] {
        if from == to {
            continue;
        }
        // The quoted IP checksum changes with the address, and the ICMP checksum covers both.
        let old_sum: u16 = ctx.load(inner_csum).map_err(fail)?;
        ctx.l3_csum_replace(inner_csum, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        let new_sum: u16 = ctx.load(inner_csum).map_err(fail)?;
        ctx.l4_csum_replace(icmp_csum, u64::from(old_sum), u64::from(new_sum), 2)
            .map_err(fail)?;
        ctx.l4_csum_replace(icmp_csum, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        ctx.store(offset, &to, 0).map_err(fail)?;
    }
    for (offset, from, to) in [
        (error.inner_l4, inner.sport, quoted.sport),
        (error.inner_l4 + 2, inner.dport, quoted.dport),
    ] {
        if from == to {
            continue;
        }
        ctx.l4_csum_replace(icmp_csum, u64::from(from), u64::from(to), 2)
            .map_err(fail)?;
        ctx.store(offset, &to, 0).map_err(fail)?;
    }

    // Outer: to the client; from the frontend when the backend itself sent the error (a
    // router's own address is left alone). ICMP has no pseudo header: only the IP checksum.
    let outer_to = Tuple4 {
        saddr: if error.outer.saddr == inner.daddr {
            restore.saddr
        } else {
            error.outer.saddr
        },
        daddr: restore.daddr,
        sport: 0,
        dport: 0,
    };
    for (offset, from, to) in [
        (IP_SADDR_OFF, error.outer.saddr, outer_to.saddr),
        (IP_DADDR_OFF, error.outer.daddr, outer_to.daddr),
    ] {
        if from == to {
            continue;
        }
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        ctx.store(offset, &to, 0).map_err(fail)?;
    }
    Ok(Some(outer_to))
}
