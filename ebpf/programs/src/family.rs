//! What differs between IPv4 and IPv6 in the per-packet path, behind one trait, so the path
//! itself (conntrack, service selection, NAT, forwarding) is written once for both.

use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, bpf_fib_lookup},
    helpers::generated::bpf_csum_diff,
    macros::map,
    maps::LruHashMap,
    programs::TcContext,
};
use strait_ebpf_common::{
    config::NodeConfig,
    ct::{CtEntry, CtKey, Tuple},
    drop::DropReason,
    maps::CT_MAX,
    sock::AFFINITY_BY_ADDRESS,
};

use crate::{
    lb,
    packet::{ETH_HLEN, IP_CSUM_OFF, IP_DADDR_OFF, IP_SADDR_OFF},
};

/// LRU: when full, the least recently used entry goes, never the new flow. The agent exports
/// the fill level as the pressure figure (and sizes the maps from memory at load time).
#[map]
static STRAIT_CT4: LruHashMap<CtKey<u32>, CtEntry<u32>> = LruHashMap::pinned(CT_MAX, 0);

#[map]
static STRAIT_CT6: LruHashMap<CtKey<[u32; 4]>, CtEntry<[u32; 4]>> = LruHashMap::pinned(CT_MAX, 0);

const IP6_SADDR_OFF: usize = ETH_HLEN + 8;
const IP6_DADDR_OFF: usize = ETH_HLEN + 24;

/// An address family of the per-packet path, implemented by its address type.
pub(crate) trait Addr: Copy + PartialEq + Sized {
    /// The service and backend maps of the family.
    type Lb: lb::Family<Address = Self>;
    /// `AF_INET` or `AF_INET6`, for the FIB lookup.
    const AF: u8;

    fn ct_get(key: CtKey<Self>) -> Option<CtEntry<Self>>;
    fn ct_get_mut(key: CtKey<Self>) -> Option<*mut CtEntry<Self>>;
    fn ct_insert(key: CtKey<Self>, entry: CtEntry<Self>, flags: u64) -> Result<(), i32>;
    /// The node's address of this family, if configured.
    fn node(config: &NodeConfig) -> Option<Self>;
    /// The affinity identity of a client outside the node: its address.
    fn affinity_client(saddr: Self) -> u64;
    /// The flow hash Maglev uses: the same on every node for the same flow.
    fn flow_hash(tuple: &Tuple<Self>, proto: u8) -> Option<u32>;
    /// Rewrites the source (`source`) or destination address, keeping the checksums right.
    fn replace_addr(
        ctx: &TcContext,
        l4_csum: usize,
        l4_flags: u64,
        source: bool,
        from: Self,
        to: Self,
    ) -> Result<(), DropReason>;
    /// Fills the addresses of a FIB lookup.
    fn fib_addrs(params: &mut bpf_fib_lookup, saddr: Self, daddr: Self);
    /// Rewrites an address of the packet an ICMP error quotes (at `inner_ip`), keeping the
    /// quoted header checksum (IPv4) and the ICMP checksum right.
    fn icmp_quoted_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        inner_ip: usize,
        source: bool,
        from: Self,
        to: Self,
    ) -> Result<(), DropReason>;
    /// Rewrites an outer address of an ICMP error: the IPv4 header checksum, or the ICMPv6
    /// checksum, which covers the addresses through its pseudo header.
    fn icmp_outer_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        source: bool,
        from: Self,
        to: Self,
    ) -> Result<(), DropReason>;
}

/// The checksum difference of replacing 16-byte `from` with `to`.
#[inline(always)]
fn diff16(from: [u32; 4], to: [u32; 4]) -> Result<u64, DropReason> {
    let (mut from, mut to) = (from, to);
    // SAFETY: both pointers are to 16-byte stack arrays, as the lengths say.
    let diff = unsafe { bpf_csum_diff((&raw mut from).cast(), 16, (&raw mut to).cast(), 16, 0) };
    u64::try_from(diff).map_err(|_| DropReason::RewriteFailed)
}

impl Addr for u32 {
    type Lb = lb::V4;
    const AF: u8 = 2;

    #[inline(always)]
    fn ct_get(key: CtKey<u32>) -> Option<CtEntry<u32>> {
        // SAFETY: the value is copied out at once.
        unsafe { STRAIT_CT4.get(key) }.copied()
    }

    #[inline(always)]
    fn ct_get_mut(key: CtKey<u32>) -> Option<*mut CtEntry<u32>> {
        STRAIT_CT4.get_ptr_mut(key)
    }

    #[inline(always)]
    fn ct_insert(key: CtKey<u32>, entry: CtEntry<u32>, flags: u64) -> Result<(), i32> {
        STRAIT_CT4.insert(key, entry, flags)
    }

    #[inline(always)]
    fn node(config: &NodeConfig) -> Option<u32> {
        (config.node_ipv4 != 0).then_some(config.node_ipv4)
    }

    #[inline(always)]
    fn affinity_client(saddr: u32) -> u64 {
        AFFINITY_BY_ADDRESS | u64::from(saddr)
    }

    #[inline(always)]
    fn flow_hash(tuple: &Tuple<u32>, proto: u8) -> Option<u32> {
        Some(lb::flow_hash(
            tuple.saddr,
            tuple.daddr,
            tuple.sport,
            tuple.dport,
            proto,
        ))
    }

    #[inline(always)]
    fn replace_addr(
        ctx: &TcContext,
        l4_csum: usize,
        l4_flags: u64,
        source: bool,
        from: u32,
        to: u32,
    ) -> Result<(), DropReason> {
        let fail = |_| DropReason::RewriteFailed;
        let pseudo = u64::from(BPF_F_PSEUDO_HDR);
        ctx.l4_csum_replace(
            l4_csum,
            u64::from(from),
            u64::from(to),
            l4_flags | pseudo | 4,
        )
        .map_err(fail)?;
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        let offset = if source { IP_SADDR_OFF } else { IP_DADDR_OFF };
        ctx.store(offset, &to, 0).map_err(fail)
    }

    #[inline(always)]
    fn fib_addrs(params: &mut bpf_fib_lookup, saddr: u32, daddr: u32) {
        params.__bindgen_anon_3.ipv4_src = saddr;
        params.__bindgen_anon_4.ipv4_dst = daddr;
    }

    #[inline(always)]
    fn icmp_quoted_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        inner_ip: usize,
        source: bool,
        from: u32,
        to: u32,
    ) -> Result<(), DropReason> {
        let fail = |_| DropReason::RewriteFailed;
        let inner_csum = inner_ip + 10;
        // The quoted IP checksum changes with the address, and the ICMP checksum covers both.
        let old_sum: u16 = ctx.load(inner_csum).map_err(fail)?;
        ctx.l3_csum_replace(inner_csum, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        let new_sum: u16 = ctx.load(inner_csum).map_err(fail)?;
        ctx.l4_csum_replace(icmp_csum, u64::from(old_sum), u64::from(new_sum), 2)
            .map_err(fail)?;
        ctx.l4_csum_replace(icmp_csum, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        let offset = inner_ip + if source { 12 } else { 16 };
        ctx.store(offset, &to, 0).map_err(fail)
    }

    #[inline(always)]
    fn icmp_outer_addr(
        ctx: &TcContext,
        _icmp_csum: usize,
        source: bool,
        from: u32,
        to: u32,
    ) -> Result<(), DropReason> {
        // ICMPv4 has no pseudo header: only the IP header checksum covers the addresses.
        let fail = |_| DropReason::RewriteFailed;
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4)
            .map_err(fail)?;
        let offset = if source { IP_SADDR_OFF } else { IP_DADDR_OFF };
        ctx.store(offset, &to, 0).map_err(fail)
    }
}

impl Addr for [u32; 4] {
    type Lb = lb::V6;
    const AF: u8 = 10;

    #[inline(always)]
    fn ct_get(key: CtKey<[u32; 4]>) -> Option<CtEntry<[u32; 4]>> {
        // SAFETY: the value is copied out at once.
        unsafe { STRAIT_CT6.get(key) }.copied()
    }

    #[inline(always)]
    fn ct_get_mut(key: CtKey<[u32; 4]>) -> Option<*mut CtEntry<[u32; 4]>> {
        STRAIT_CT6.get_ptr_mut(key)
    }

    #[inline(always)]
    fn ct_insert(key: CtKey<[u32; 4]>, entry: CtEntry<[u32; 4]>, flags: u64) -> Result<(), i32> {
        STRAIT_CT6.insert(key, entry, flags)
    }

    #[inline(always)]
    fn node(config: &NodeConfig) -> Option<[u32; 4]> {
        (config.node_ipv6 != [0; 4]).then_some(config.node_ipv6)
    }

    #[inline(always)]
    fn affinity_client(saddr: [u32; 4]) -> u64 {
        // Folded to the affinity key's width; a collision only shares a backend choice.
        let folded = (u64::from(saddr[0] ^ saddr[2]) << 32) | u64::from(saddr[1] ^ saddr[3]);
        AFFINITY_BY_ADDRESS | (folded & !AFFINITY_BY_ADDRESS)
    }

    #[inline(always)]
    fn flow_hash(tuple: &Tuple<[u32; 4]>, proto: u8) -> Option<u32> {
        let fold = |a: [u32; 4]| a[0] ^ a[1] ^ a[2] ^ a[3];
        Some(lb::flow_hash(
            fold(tuple.saddr),
            fold(tuple.daddr),
            tuple.sport,
            tuple.dport,
            proto,
        ))
    }

    #[inline(always)]
    fn replace_addr(
        ctx: &TcContext,
        l4_csum: usize,
        l4_flags: u64,
        source: bool,
        from: [u32; 4],
        to: [u32; 4],
    ) -> Result<(), DropReason> {
        let fail = |_| DropReason::RewriteFailed;
        // IPv6 has no header checksum; the L4 checksum covers the addresses through the
        // pseudo header, so fold the 16-byte difference into it.
        let diff = diff16(from, to)?;
        ctx.l4_csum_replace(l4_csum, 0, diff, l4_flags | u64::from(BPF_F_PSEUDO_HDR))
            .map_err(fail)?;
        let offset = if source { IP6_SADDR_OFF } else { IP6_DADDR_OFF };
        ctx.store(offset, &to, 0).map_err(fail)
    }

    #[inline(always)]
    fn fib_addrs(params: &mut bpf_fib_lookup, saddr: [u32; 4], daddr: [u32; 4]) {
        params.__bindgen_anon_3.ipv6_src = saddr;
        params.__bindgen_anon_4.ipv6_dst = daddr;
    }

    #[inline(always)]
    fn icmp_quoted_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        inner_ip: usize,
        source: bool,
        from: [u32; 4],
        to: [u32; 4],
    ) -> Result<(), DropReason> {
        // The quoted IPv6 header has no checksum; the ICMPv6 checksum covers its bytes.
        let fail = |_| DropReason::RewriteFailed;
        ctx.l4_csum_replace(icmp_csum, 0, diff16(from, to)?, 0)
            .map_err(fail)?;
        let offset = inner_ip + if source { 8 } else { 24 };
        ctx.store(offset, &to, 0).map_err(fail)
    }

    #[inline(always)]
    fn icmp_outer_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        source: bool,
        from: [u32; 4],
        to: [u32; 4],
    ) -> Result<(), DropReason> {
        let fail = |_| DropReason::RewriteFailed;
        let pseudo = u64::from(BPF_F_PSEUDO_HDR);
        ctx.l4_csum_replace(icmp_csum, 0, diff16(from, to)?, pseudo)
            .map_err(fail)?;
        let offset = if source { IP6_SADDR_OFF } else { IP6_DADDR_OFF };
        ctx.store(offset, &to, 0).map_err(fail)
    }
}
