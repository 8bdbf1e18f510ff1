//! Reading and rewriting IPv4 TCP/UDP headers of an skb.
//!
//! Loads and stores go through `bpf_skb_load_bytes`/`bpf_skb_store_bytes`, so no packet pointer
//! is held across the checksum helpers (which invalidate them).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use strait_ebpf_common::{
    ct::Tuple4,
    drop::DropReason,
    service::{PROTO_TCP, PROTO_UDP},
};

pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub(crate) const IP_SADDR_OFF: usize = ETH_HLEN + 12;
pub(crate) const IP_DADDR_OFF: usize = ETH_HLEN + 16;
/// Fragment offset bits of the IPv4 `frag_off` field: non-zero on every fragment but the first.
const IP_OFFSET_MASK: u16 = 0x1fff;

/// The parts of an IPv4 TCP or UDP packet the service path uses.
pub(crate) struct Packet4 {
    /// Offset of the L4 header (IP options are skipped by the header length).
    pub(crate) l4: usize,
    pub(crate) proto: u8,
    pub(crate) tuple: Tuple4,
    /// TCP flags (0 for UDP).
    pub(crate) tcp_flags: u8,
    /// Length of the whole packet, for byte counters.
    pub(crate) len: u32,
}

/// Parses the packet; `Ok(None)` for traffic the service path does not handle (not IPv4, not
/// TCP or UDP, or a non-first fragment, which carries no ports).
#[inline(always)]
pub(crate) fn parse4(ctx: &TcContext) -> Result<Option<Packet4>, DropReason> {
    let eth_proto: u16 = ctx.load(12).map_err(|_| DropReason::Malformed)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Ok(None);
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).map_err(|_| DropReason::Malformed)?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return Err(DropReason::Malformed);
    }
    let frag_off: u16 = ctx.load(ETH_HLEN + 6).map_err(|_| DropReason::Malformed)?;
    if u16::from_be(frag_off) & IP_OFFSET_MASK != 0 {
        return Ok(None);
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).map_err(|_| DropReason::Malformed)?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Ok(None);
    }
    let l4 = ETH_HLEN + ihl;
    let ports: [u16; 2] = ctx.load(l4).map_err(|_| DropReason::Malformed)?;
    let tcp_flags = if proto == PROTO_TCP {
        ctx.load::<u8>(l4 + 13).map_err(|_| DropReason::Malformed)?
    } else {
        0
    };
    Ok(Some(Packet4 {
        l4,
        proto,
        tuple: Tuple4 {
            saddr: ctx.load(IP_SADDR_OFF).map_err(|_| DropReason::Malformed)?,
            daddr: ctx.load(IP_DADDR_OFF).map_err(|_| DropReason::Malformed)?,
            sport: ports[0],
            dport: ports[1],
        },
        tcp_flags,
        len: ctx.len(),
    }))
}

/// Rewrites the packet's addresses and ports from `packet.tuple` to `to`, updating the IPv4
/// header checksum and the L4 checksum (which covers the addresses through the pseudo header).
#[inline(always)]
pub(crate) fn rewrite4(ctx: &TcContext, packet: &Packet4, to: Tuple4) -> Result<(), DropReason> {
    let from = packet.tuple;
    let csum = packet.l4 + if packet.proto == PROTO_TCP { 16 } else { 6 };
    // A UDP checksum of zero means "none" and must stay zero.
    let l4_flags = if packet.proto == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    if from.saddr != to.saddr {
        replace_addr(ctx, csum, l4_flags, IP_SADDR_OFF, from.saddr, to.saddr)?;
    }
    if from.daddr != to.daddr {
        replace_addr(ctx, csum, l4_flags, IP_DADDR_OFF, from.daddr, to.daddr)?;
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

#[inline(always)]
fn replace_addr(
    ctx: &TcContext,
    l4_csum: usize,
    l4_flags: u64,
    offset: usize,
    from: u32,
    to: u32,
) -> Result<(), DropReason> {
    let fail = |_| DropReason::RewriteFailed;
    ctx.l4_csum_replace(
        l4_csum,
        u64::from(from),
        u64::from(to),
        l4_flags | u64::from(BPF_F_PSEUDO_HDR) | 4,
    )
    .map_err(fail)?;
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4)
        .map_err(fail)?;
    ctx.store(offset, &to, 0).map_err(fail)
}
