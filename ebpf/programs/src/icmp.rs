//! ICMP errors about translated flows, ICMPv4 and ICMPv6.
//!
//! A backend (or a router on the way) that answers a translated packet with an ICMP error
//! (port unreachable, fragmentation needed / packet too big, time exceeded) quotes the packet
//! as it saw it: to the backend, from the client or the node's SNAT address. Left alone, the
//! client cannot match the error to its socket, so path MTU discovery and fast failure break.
//! The quoted tuple is a conntrack REPLY key reversed; the entry gives the addresses the client
//! knows, and both the quoted headers and the outer header are rewritten, as Linux NAT does for
//! its own flows. The quoted L4 checksum is left as quoted (receivers do not check it), which
//! keeps the ICMP checksum consistent with the bytes.

use aya_ebpf::programs::TcContext;
use strait_ebpf_common::{
    ct::{CT_REPLY, Tuple},
    drop::DropReason,
    service::{PROTO_TCP, PROTO_UDP},
};

use crate::{
    ct,
    family::Addr,
    packet::{ETH_HLEN, IP_DADDR_OFF, IP_SADDR_OFF},
};

const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
/// ICMPv4 destination unreachable, time exceeded, parameter problem.
const ICMP_ERRORS: [u8; 3] = [3, 11, 12];
/// ICMPv6 destination unreachable, packet too big, time exceeded, parameter problem.
const ICMPV6_ERRORS: [u8; 4] = [1, 2, 3, 4];

/// An ICMP error quoting a TCP or UDP packet; `A` is the address type.
pub(crate) struct IcmpError<A> {
    /// Outer source and destination (ports zero).
    pub(crate) outer: Tuple<A>,
    /// Offset of the ICMP header (its checksum is at +2).
    icmp: usize,
    /// Offset of the quoted IP header.
    inner_ip: usize,
    /// Offset of the quoted L4 header.
    inner_l4: usize,
    /// The quoted packet's tuple and protocol.
    inner: Tuple<A>,
    inner_proto: u8,
}

/// An ICMP error of either family.
pub(crate) enum Parsed {
    V4(IcmpError<u32>),
    V6(IcmpError<[u32; 4]>),
    None,
}

/// Parses an ICMPv4 or ICMPv6 error quoting a TCP or UDP packet of the same family.
#[inline(always)]
pub(crate) fn parse_error(ctx: &TcContext) -> Result<Parsed, DropReason> {
    let malformed = |_| DropReason::Malformed;
    let eth_proto: u16 = ctx.load(12).map_err(malformed)?;
    match u16::from_be(eth_proto) {
        0x0800 => {
            let version_ihl: u8 = ctx.load(ETH_HLEN).map_err(malformed)?;
            let proto: u8 = ctx.load(ETH_HLEN + 9).map_err(malformed)?;
            if proto != PROTO_ICMP {
                return Ok(Parsed::None);
            }
            let icmp = ETH_HLEN + usize::from(version_ihl & 0x0f) * 4;
            if !ICMP_ERRORS.contains(&ctx.load::<u8>(icmp).map_err(malformed)?) {
                return Ok(Parsed::None);
            }
            let inner_ip = icmp + 8;
            let inner_version_ihl: u8 = ctx.load(inner_ip).map_err(malformed)?;
            let inner_ihl = usize::from(inner_version_ihl & 0x0f) * 4;
            if inner_version_ihl >> 4 != 4 || inner_ihl < 20 {
                return Err(DropReason::Malformed);
            }
            let outer = (
                ctx.load(IP_SADDR_OFF).map_err(malformed)?,
                ctx.load(IP_DADDR_OFF).map_err(malformed)?,
            );
            let inner = (
                ctx.load(inner_ip + 12).map_err(malformed)?,
                ctx.load(inner_ip + 16).map_err(malformed)?,
            );
            let inner_proto = ctx.load(inner_ip + 9).map_err(malformed)?;
            Ok(error(
                ctx,
                outer,
                icmp,
                inner_ip,
                inner_ip + inner_ihl,
                inner,
                inner_proto,
            )?
            .map_or(Parsed::None, Parsed::V4))
        }
        0x86dd => {
            if ctx.load::<u8>(ETH_HLEN + 6).map_err(malformed)? != PROTO_ICMPV6 {
                return Ok(Parsed::None);
            }
            let icmp = ETH_HLEN + 40;
            if !ICMPV6_ERRORS.contains(&ctx.load::<u8>(icmp).map_err(malformed)?) {
                return Ok(Parsed::None);
            }
            let inner_ip = icmp + 8;
            if ctx.load::<u8>(inner_ip).map_err(malformed)? >> 4 != 6 {
                return Err(DropReason::Malformed);
            }
            let outer = (
                ctx.load(ETH_HLEN + 8).map_err(malformed)?,
                ctx.load(ETH_HLEN + 24).map_err(malformed)?,
            );
            let inner = (
                ctx.load(inner_ip + 8).map_err(malformed)?,
                ctx.load(inner_ip + 24).map_err(malformed)?,
            );
            let inner_proto = ctx.load(inner_ip + 6).map_err(malformed)?;
            Ok(error(
                ctx,
                outer,
                icmp,
                inner_ip,
                inner_ip + 40,
                inner,
                inner_proto,
            )?
            .map_or(Parsed::None, Parsed::V6))
        }
        _ => Ok(Parsed::None),
    }
}

#[inline(always)]
fn error<A: Copy>(
    ctx: &TcContext,
    outer: (A, A),
    icmp: usize,
    inner_ip: usize,
    inner_l4: usize,
    inner: (A, A),
    inner_proto: u8,
) -> Result<Option<IcmpError<A>>, DropReason> {
    if inner_proto != PROTO_TCP && inner_proto != PROTO_UDP {
        return Ok(None);
    }
    let ports: [u16; 2] = ctx.load(inner_l4).map_err(|_| DropReason::Malformed)?;
    Ok(Some(IcmpError {
        outer: Tuple {
            saddr: outer.0,
            daddr: outer.1,
            sport: 0,
            dport: 0,
        },
        icmp,
        inner_ip,
        inner_l4,
        inner: Tuple {
            saddr: inner.0,
            daddr: inner.1,
            sport: ports[0],
            dport: ports[1],
        },
        inner_proto,
    }))
}

/// Rewrites an ICMP error about a translated flow so the client recognises it. Returns the new
/// outer tuple, or `None` when the quoted packet belongs to no tracked flow.
#[inline(always)]
pub(crate) fn translate<A: Addr>(
    ctx: &TcContext,
    error: &IcmpError<A>,
) -> Result<Option<Tuple<A>>, DropReason> {
    // The quoted packet went client → backend as translated: its reverse is a REPLY key.
    let Some((restore, _rev_nat)) =
        ct::peek::<A>(error.inner.reversed(), error.inner_proto, CT_REPLY)
    else {
        return Ok(None);
    };
    // `restore` is frontend → client; the client sent client → frontend.
    let quoted = restore.reversed();
    let fail = |_| DropReason::RewriteFailed;
    let icmp_csum = error.icmp + 2;

    let inner = error.inner;
    if inner.saddr != quoted.saddr {
        A::icmp_quoted_addr(
            ctx,
            icmp_csum,
            error.inner_ip,
            true,
            inner.saddr,
            quoted.saddr,
        )?;
    }
    if inner.daddr != quoted.daddr {
        A::icmp_quoted_addr(
            ctx,
            icmp_csum,
            error.inner_ip,
            false,
            inner.daddr,
            quoted.daddr,
        )?;
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
    // router's own address is left alone).
    let outer_to = Tuple {
        saddr: if error.outer.saddr == inner.daddr {
            restore.saddr
        } else {
            error.outer.saddr
        },
        daddr: restore.daddr,
        sport: 0,
        dport: 0,
    };
    if error.outer.saddr != outer_to.saddr {
        A::icmp_outer_addr(ctx, icmp_csum, true, error.outer.saddr, outer_to.saddr)?;
    }
    if error.outer.daddr != outer_to.daddr {
        A::icmp_outer_addr(ctx, icmp_csum, false, error.outer.daddr, outer_to.daddr)?;
    }
    Ok(Some(outer_to))
}
