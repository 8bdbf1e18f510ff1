//! tc hooks on a node's devices: the per-packet service path for traffic that sockets of this
//! node did not originate (NodePort, LoadBalancer, traffic from outside).
//!
//! So far this is destination NAT to the chosen backend with correct checksums; conntrack,
//! reverse NAT and source NAT for remote backends come with the service dataplane (issue 3).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use strait_ebpf_common::{
    drop::DropReason,
    service::{PROTO_TCP, PROTO_UDP},
};

use crate::{
    drop,
    lb::{self, Lookup},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_CSUM_OFF: usize = ETH_HLEN + 10;
const IP_DADDR_OFF: usize = ETH_HLEN + 16;
/// Fragment offset bits of the IPv4 `frag_off` field: non-zero on every fragment but the first.
const IP_OFFSET_MASK: u16 = 0x1fff;

/// Packets arriving on a node device.
#[classifier]
pub(crate) fn strait_from_netdev(ctx: TcContext) -> i32 {
    match service_dnat4(&ctx) {
        Ok(()) => TC_ACT_OK,
        Err(reason) => {
            drop::record(reason);
            TC_ACT_SHOT
        }
    }
}

/// Rewrites an IPv4 TCP or UDP packet addressed to a service so it goes to a backend.
#[inline(always)]
fn service_dnat4(ctx: &TcContext) -> Result<(), DropReason> {
    let eth_proto: u16 = ctx.load(12).map_err(|_| DropReason::Malformed)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Ok(());
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).map_err(|_| DropReason::Malformed)?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return Err(DropReason::Malformed);
    }
    let frag_off: u16 = ctx.load(ETH_HLEN + 6).map_err(|_| DropReason::Malformed)?;
    if u16::from_be(frag_off) & IP_OFFSET_MASK != 0 {
        // Later fragments carry no ports to look up.
        return Ok(());
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).map_err(|_| DropReason::Malformed)?;
    let l4_csum_off = match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return Ok(()),
    };
    let daddr: u32 = ctx.load(IP_DADDR_OFF).map_err(|_| DropReason::Malformed)?;
    let l4 = ETH_HLEN + ihl;
    let dport: u16 = ctx.load(l4 + 2).map_err(|_| DropReason::Malformed)?;

    let backend = match lb::select_backend4(daddr, dport, proto) {
        Lookup::NotService => return Ok(()),
        Lookup::Refuse(reason) => return Err(reason),
        Lookup::Backend(backend) => backend,
    };

    // A UDP checksum of zero means "none" and must stay zero (BPF_F_MARK_MANGLED_0).
    let l4_flags = if proto == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let csum = l4 + l4_csum_off;
    ctx.l4_csum_replace(
        csum,
        u64::from(daddr),
        u64::from(backend.address),
        l4_flags | u64::from(BPF_F_PSEUDO_HDR) | 4,
    )
    .map_err(|_| DropReason::RewriteFailed)?;
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(daddr), u64::from(backend.address), 4)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(IP_DADDR_OFF, &backend.address, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    if backend.port != dport {
        ctx.l4_csum_replace(
            csum,
            u64::from(dport),
            u64::from(backend.port),
            l4_flags | 2,
        )
        .map_err(|_| DropReason::RewriteFailed)?;
        ctx.store(l4 + 2, &backend.port, 0)
            .map_err(|_| DropReason::RewriteFailed)?;
    }
    Ok(())
}
