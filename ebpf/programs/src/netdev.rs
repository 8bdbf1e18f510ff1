//! tc hooks on a node's uplink: the per-packet service path for traffic that sockets of this
//! node did not originate (NodePort, LoadBalancer, external IPs, ClusterIP from outside).
//!
//! ```text
//!  client ──▶ [ingress: strait_from_netdev] DNAT to a backend (+ SNAT to the node for remote
//!             backends), conntrack FORWARD + REPLY entries ──▶ local pod, or out to its node
//!  client ◀── [egress: strait_to_netdev] replies of local backends restored (REPLY entry)
//!  client ◀── [ingress] replies of remote backends, addressed to the node, restored and sent
//!             back out of the uplink
//! ```

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use strait_ebpf_common::{
    ct::{CT_F_SNAT, CT_FORWARD, CT_REPLY, Tuple4},
    drop::DropReason,
    service::{BACKEND_F_LOCAL, SVC_F_LOCAL_ONLY},
    sock::AFFINITY_BY_ADDRESS,
};

use crate::{
    config, ct, drop, fib, icmp,
    lb::{self, Lookup},
    packet::{self, Packet4},
    stats,
};

/// Packets arriving on the uplink.
#[classifier]
pub(crate) fn strait_from_netdev(ctx: TcContext) -> i32 {
    verdict(from_netdev(&ctx))
}

/// Packets leaving through the uplink.
#[classifier]
pub(crate) fn strait_to_netdev(ctx: TcContext) -> i32 {
    verdict(to_netdev(&ctx).map(|()| TC_ACT_OK))
}

/// The one exit of both hooks: a drop is counted under its reason.
#[inline(always)]
fn verdict(result: Result<i32, DropReason>) -> i32 {
    match result {
        Ok(action) => action,
        Err(reason) => {
            drop::record(reason);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn from_netdev(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(packet) = packet::parse4(ctx)? else {
        return icmp_error(ctx, true);
    };
    // Replies of flows we source-NATed come back to the node address; later packets of a
    // flow keep the backend its first packet got.
    let tracked = match ct::lookup(&packet, CT_REPLY) {
        Some(to) => Some(to),
        None => ct::lookup(&packet, CT_FORWARD),
    };
    if let Some((to, rev_nat)) = tracked {
        stats::packet(rev_nat, packet.len);
        return forward(ctx, &packet, to);
    }
    let (backend, master) = match lb::select_backend::<lb::V4>(
        packet.tuple.daddr,
        packet.tuple.dport,
        packet.proto,
        // Outside the node there are no sockets: affinity goes by the client's address.
        AFFINITY_BY_ADDRESS | u64::from(packet.tuple.saddr),
        Some(lb::flow_hash(
            packet.tuple.saddr,
            packet.tuple.daddr,
            packet.tuple.sport,
            packet.tuple.dport,
            packet.proto,
        )),
    ) {
        Lookup::NotService => return Ok(TC_ACT_OK),
        Lookup::Refuse(reason) => return Err(reason),
        Lookup::Backend { backend, master } => (backend, master),
    };
    let to = new_flow(
        &packet,
        backend.address,
        backend.port,
        backend.flags,
        master.flags,
        master.rev_nat,
    )?;
    stats::flow(master.rev_nat);
    stats::packet(master.rev_nat, packet.len);
    forward(ctx, &packet, to)
}

/// Rewrites an arriving packet and sends it on: through the stack, or, when its new source is
/// a node address the stack would take for a martian, straight to the egress device.
#[inline(always)]
fn forward(ctx: &TcContext, packet: &Packet4, to: Tuple4) -> Result<i32, DropReason> {
    packet::rewrite4(ctx, packet, to)?;
    if to.saddr == packet.tuple.saddr {
        return Ok(TC_ACT_OK);
    }
    Ok(fib::redirect4(ctx, packet.proto, to))
}

/// Tracks the first packet of a flow to a service and returns its rewrite. Remote backends of a
/// frontend whose traffic policy is Cluster are reached with the node address as source, so
/// their replies return through this node; Local frontends keep the client address.
#[inline(always)]
fn new_flow(
    packet: &Packet4,
    address: u32,
    port: u16,
    backend_flags: u8,
    service_flags: u8,
    rev_nat: u16,
) -> Result<Tuple4, DropReason> {
    let node = config::node();
    let snat = backend_flags & BACKEND_F_LOCAL == 0
        && service_flags & SVC_F_LOCAL_ONLY == 0
        && node.node_ipv4 != 0;
    if snat {
        return ct::create_snat(
            packet,
            node.node_ipv4,
            (address, port),
            (node.snat_port_min, node.snat_port_max),
            rev_nat,
            CT_F_SNAT,
        );
    }
    let to = Tuple4 {
        daddr: address,
        dport: port,
        ..packet.tuple
    };
    ct::create(packet, to, rev_nat, 0, false)?;
    Ok(to)
}

/// Translates an ICMP error about a tracked flow; arriving ones whose source became a node
/// address are redirected, as in [`forward`].
#[inline(always)]
fn icmp_error(ctx: &TcContext, arriving: bool) -> Result<i32, DropReason> {
    let Some(error) = icmp::parse_error4(ctx)? else {
        return Ok(TC_ACT_OK);
    };
    match icmp::translate4(ctx, &error)? {
        Some(to) if arriving && to.saddr != error.outer.saddr => Ok(fib::redirect4(ctx, 1, to)),
        _ => Ok(TC_ACT_OK),
    }
}

#[inline(always)]
fn to_netdev(ctx: &TcContext) -> Result<(), DropReason> {
    let Some(packet) = packet::parse4(ctx)? else {
        return icmp_error(ctx, false).map(|_| ());
    };
    // Replies of local backends leave with the frontend restored as their source.
    match ct::lookup(&packet, CT_REPLY) {
        Some((to, rev_nat)) => {
            stats::packet(rev_nat, packet.len);
            packet::rewrite4(ctx, &packet, to)
        }
        None => Ok(()),
    }
}
