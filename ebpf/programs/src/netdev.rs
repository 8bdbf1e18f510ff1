//! tc hooks on a node's uplink: the per-packet service path for traffic that sockets of this
//! node did not originate (NodePort, LoadBalancer, external IPs, ClusterIP from outside), for
//! IPv4 and IPv6 alike.
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
    ct::{CT_F_SNAT, CT_FORWARD, CT_REPLY, Tuple},
    drop::DropReason,
    service::{BACKEND_F_LOCAL, SVC_F_LOCAL_ONLY},
};

use crate::{
    config, ct, drop,
    family::Addr,
    fib, icmp,
    lb::{self, Family as _, Lookup},
    packet::{self, Packet, Parsed},
    stats,
};

/// Packets arriving on the uplink.
#[classifier]
pub(crate) fn strait_from_netdev(ctx: TcContext) -> i32 {
    verdict(match packet::parse(&ctx) {
        Ok(Parsed::V4(packet)) => from_netdev(&ctx, &packet),
        Ok(Parsed::V6(packet)) => from_netdev(&ctx, &packet),
        Ok(Parsed::Other) => icmp_error(&ctx, true),
        Err(reason) => Err(reason),
    })
}

/// Packets leaving through the uplink.
#[classifier]
pub(crate) fn strait_to_netdev(ctx: TcContext) -> i32 {
    verdict(match packet::parse(&ctx) {
        Ok(Parsed::V4(packet)) => to_netdev(&ctx, &packet),
        Ok(Parsed::V6(packet)) => to_netdev(&ctx, &packet),
        Ok(Parsed::Other) => icmp_error(&ctx, false),
        Err(reason) => Err(reason),
    })
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
fn from_netdev<A: Addr>(ctx: &TcContext, packet: &Packet<A>) -> Result<i32, DropReason> {
    // Replies of flows we source-NATed come back to the node address; later packets of a
    // flow keep the backend its first packet got.
    let tracked = match ct::lookup(packet, CT_REPLY) {
        Some(to) => Some(to),
        None => ct::lookup(packet, CT_FORWARD),
    };
    if let Some((to, rev_nat)) = tracked {
        stats::packet(rev_nat, packet.len);
        return forward(ctx, packet, to);
    }
    let tuple = packet.tuple;
    let (backend, master) = match lb::select_backend::<A::Lb>(
        tuple.daddr,
        tuple.dport,
        packet.proto,
        // Outside the node there are no sockets: affinity goes by the client's address.
        A::affinity_client(tuple.saddr),
        A::flow_hash(&tuple, packet.proto),
    ) {
        Lookup::NotService => return Ok(TC_ACT_OK),
        Lookup::Refuse(reason) => return Err(reason),
        Lookup::Backend { backend, master } => (backend, master),
    };
    let (address, port, backend_flags) = A::Lb::parts(&backend);
    let to = new_flow(
        packet,
        address,
        port,
        backend_flags,
        master.flags,
        master.rev_nat,
    )?;
    stats::flow(master.rev_nat);
    stats::packet(master.rev_nat, packet.len);
    forward(ctx, packet, to)
}

/// Rewrites an arriving packet and sends it on: through the stack, or, when its new source is
/// a node address the stack would take for a martian, straight to the egress device.
#[inline(always)]
fn forward<A: Addr>(ctx: &TcContext, packet: &Packet<A>, to: Tuple<A>) -> Result<i32, DropReason> {
    packet::rewrite(ctx, packet, to)?;
    if to.saddr == packet.tuple.saddr {
        return Ok(TC_ACT_OK);
    }
    Ok(fib::redirect(ctx, packet.proto, to))
}

/// Tracks the first packet of a flow to a service and returns its rewrite. Remote backends of a
/// frontend whose traffic policy is Cluster are reached with the node address as source, so
/// their replies return through this node; Local frontends keep the client address.
#[inline(always)]
fn new_flow<A: Addr>(
    packet: &Packet<A>,
    address: A,
    port: u16,
    backend_flags: u8,
    service_flags: u8,
    rev_nat: u16,
) -> Result<Tuple<A>, DropReason> {
    let config = config::node();
    let snat_from = A::node(&config)
        .filter(|_| backend_flags & BACKEND_F_LOCAL == 0 && service_flags & SVC_F_LOCAL_ONLY == 0);
    if let Some(node) = snat_from {
        return ct::create_snat(
            packet,
            node,
            (address, port),
            (config.snat_port_min, config.snat_port_max),
            rev_nat,
            CT_F_SNAT,
        );
    }
    let to = Tuple {
        daddr: address,
        dport: port,
        ..packet.tuple
    };
    ct::create(packet, to, rev_nat, 0, false)?;
    Ok(to)
}

/// Translates an ICMP error about a tracked flow.
#[inline(always)]
fn icmp_error(ctx: &TcContext, arriving: bool) -> Result<i32, DropReason> {
    match icmp::parse_error(ctx)? {
        icmp::Parsed::V4(error) => icmp_forward(ctx, &error, arriving, 1),
        icmp::Parsed::V6(error) => icmp_forward(ctx, &error, arriving, 58),
        icmp::Parsed::None => Ok(TC_ACT_OK),
    }
}

/// Rewrites an ICMP error; arriving ones whose source became a node address are redirected,
/// as in [`forward`].
#[inline(always)]
fn icmp_forward<A: Addr>(
    ctx: &TcContext,
    error: &icmp::IcmpError<A>,
    arriving: bool,
    proto: u8,
) -> Result<i32, DropReason> {
    match icmp::translate(ctx, error)? {
        Some(to) if arriving && to.saddr != error.outer.saddr => Ok(fib::redirect(ctx, proto, to)),
        _ => Ok(TC_ACT_OK),
    }
}

#[inline(always)]
fn to_netdev<A: Addr>(ctx: &TcContext, packet: &Packet<A>) -> Result<i32, DropReason> {
    // Replies of local backends leave with the frontend restored as their source.
    if let Some((to, rev_nat)) = ct::lookup(packet, CT_REPLY) {
        stats::packet(rev_nat, packet.len);
        packet::rewrite(ctx, packet, to)?;
    }
    Ok(TC_ACT_OK)
}
