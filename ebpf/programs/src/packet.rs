//! Reading and rewriting the IPv4/IPv6 and TCP/UDP headers of an skb.
//!
//! Loads and stores go through `bpf_skb_load_bytes`/`bpf_skb_store_bytes`, so no packet pointer
//! is held across the checksum helpers (which invalidate them).

use aya_ebpf::{bindings::BPF_F_MARK_MANGLED_0, programs::TcContext};
use strait_ebpf_common::{
    ct::Tuple,
    drop::DropReason,
    service::{PROTO_TCP, PROTO_UDP},
};

use crate::family::Addr;

pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub(crate) const IP_SADDR_OFF: usize = ETH_HLEN + 12;
pub(crate) const IP_DADDR_OFF: usize = ETH_HLEN + 16;
const IPV6_HLEN: usize = 40;
/// Fragment offset bits of the IPv4 `frag_off` field: non-zero on every fragment but the first.
const IP_OFFSET_MASK: u16 = 0x1fff;

/// The parts of a TCP or UDP packet the service path uses; `A` is the address type.
pub(crate) struct Packet<A> {
    /// Offset of the L4 header (IPv4 options are skipped by the header length).
    pub(crate) l4: usize,
    pub(crate) proto: u8,
    pub(crate) tuple: Tuple<A>,
    /// TCP flags (0 for UDP).
    pub(crate) tcp_flags: u8,
    /// Length of the whole packet, for byte counters.
    pub(crate) len: u32,
}

/// What a packet is, for the service path.
pub(crate) enum Parsed {
    V4(Packet<u32>),
    V6(Packet<[u32; 4]>),
    /// Not TCP or UDP over IPv4 or IPv6 (or a non-first fragment, or an IPv6 packet with
    /// extension headers): left to other handlers or the stack.
    Other,
}

/// Parses the packet.
#[inline(always)]
pub(crate) fn parse(ctx: &TcContext) -> Result<Parsed, DropReason> {
    let eth_proto: u16 = ctx.load(12).map_err(|_| DropReason::Malformed)?;
    match u16::from_be(eth_proto) {
        ETH_P_IP => parse4(ctx),
        ETH_P_IPV6 => parse6(ctx),
        _ => Ok(Parsed::Other),
    }
}

#[inline(always)]
fn parse4(ctx: &TcContext) -> Result<Parsed, DropReason> {
    let malformed = |_| DropReason::Malformed;
    let version_ihl: u8 = ctx.load(ETH_HLEN).map_err(malformed)?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return Err(DropReason::Malformed);
    }
    let frag_off: u16 = ctx.load(ETH_HLEN + 6).map_err(malformed)?;
    if u16::from_be(frag_off) & IP_OFFSET_MASK != 0 {
        return Ok(Parsed::Other);
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).map_err(malformed)?;
    let saddr = ctx.load(IP_SADDR_OFF).map_err(malformed)?;
    let daddr = ctx.load(IP_DADDR_OFF).map_err(malformed)?;
    match l4(ctx, ETH_HLEN + ihl, proto, saddr, daddr)? {
        Some(packet) => Ok(Parsed::V4(packet)),
        None => Ok(Parsed::Other),
    }
}

#[inline(always)]
fn parse6(ctx: &TcContext) -> Result<Parsed, DropReason> {
    let malformed = |_| DropReason::Malformed;
    let version: u8 = ctx.load(ETH_HLEN).map_err(malformed)?;
    if version >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    // Only TCP or UDP right after the fixed header; extension headers go to the stack.
    let next_header: u8 = ctx.load(ETH_HLEN + 6).map_err(malformed)?;
    let saddr = ctx.load(ETH_HLEN + 8).map_err(malformed)?;
    let daddr = ctx.load(ETH_HLEN + 24).map_err(malformed)?;
    match l4(ctx, ETH_HLEN + IPV6_HLEN, next_header, saddr, daddr)? {
        Some(packet) => Ok(Parsed::V6(packet)),
        None => Ok(Parsed::Other),
    }
}

#[inline(always)]
fn l4<A: Copy>(
    ctx: &TcContext,
    l4: usize,
    proto: u8,
    saddr: A,
    daddr: A,
) -> Result<Option<Packet<A>>, DropReason> {
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Ok(None);
    }
    let ports: [u16; 2] = ctx.load(l4).map_err(|_| DropReason::Malformed)?;
    let tcp_flags = if proto == PROTO_TCP {
        ctx.load::<u8>(l4 + 13).map_err(|_| DropReason::Malformed)?
    } else {
        0
    };
    Ok(Some(Packet {
        l4,
        proto,
        tuple: Tuple {
            saddr,
            daddr,
            sport: ports[0],
            dport: ports[1],
        },
        tcp_flags,
        len: ctx.len(),
    }))
}

/// Rewrites the packet's addresses and ports from `packet.tuple` to `to`, keeping the IPv4
/// header checksum and the L4 checksum (which covers the addresses through the pseudo header)
/// right.
#[inline(always)]
pub(crate) fn rewrite<A: Addr>(
    ctx: &TcContext,
    packet: &Packet<A>,
    to: Tuple<A>,
) -> Result<(), DropReason> {
    let from = packet.tuple;
    let csum = packet.l4 + if packet.proto == PROTO_TCP { 16 } else { 6 };
    // A UDP checksum of zero means "none" and must stay zero (IPv4 only: IPv6 requires one).
    let l4_flags = if packet.proto == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    if from.saddr != to.saddr {
        A::replace_addr(ctx, csum, l4_flags, true, from.saddr, to.saddr)?;
    }
    if from.daddr != to.daddr {
        A::replace_addr(ctx, csum, l4_flags, false, from.daddr, to.daddr)?;
    }
    if from.sport != to.sport {
        replace_port(ctx, csum, l4_flags, packet.l4, from.sport, to.sport)?;
    }
    if from.dport != to.dport {
        replace_port(ctx, csum, l4_flags, packet.l4 + 2, from.dport, to.dport)?;
    }
    Ok(())
}

/// Rewrites the port at `offset`; only the L4 checksum covers ports.
#[inline(always)]
fn replace_port(
    ctx: &TcContext,
    l4_csum: usize,
    l4_flags: u64,
    offset: usize,
    from: u16,
    to: u16,
) -> Result<(), DropReason> {
    let fail = |_| DropReason::RewriteFailed;
    ctx.l4_csum_replace(l4_csum, u64::from(from), u64::from(to), l4_flags | 2)
        .map_err(fail)?;
    ctx.store(offset, &to, 0).map_err(fail)
}
