//! Forwarding what the kernel's input routing would refuse.
//!
//! A packet arriving on the uplink whose source we rewrote to a node address (source NAT
//! towards a remote backend, or a restored reply whose source is the NodePort address) looks
//! "martian" to the stack: a local source address coming from outside. Cilium meets the same
//! wall the same way: route it here with `bpf_fib_lookup` and hand it to the egress device.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, bpf_fib_lookup},
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use strait_ebpf_common::ct::Tuple;

use crate::family::Addr;

const ETH_HLEN: u32 = 14;

/// Routes the (already rewritten) packet to `to.daddr` and redirects it to the egress device
/// with fresh MAC addresses. Returns the tc verdict: a redirect, or `TC_ACT_OK` to leave the
/// packet to the stack when there is no route to take (the stack then drops it and counts it).
#[inline(always)]
pub(crate) fn redirect<A: Addr>(ctx: &TcContext, proto: u8, to: Tuple<A>) -> i32 {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid value (plain integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = A::AF;
    params.l4_protocol = proto;
    params.sport = to.sport;
    params.dport = to.dport;
    params.__bindgen_anon_1.tot_len = ctx.len().saturating_sub(ETH_HLEN) as u16;
    // SAFETY: `skb` points at the context the kernel passed for this run.
    params.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    A::fib_addrs(&mut params, to.saddr, to.daddr);
    // SAFETY: `params` is a valid, writable `bpf_fib_lookup` of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            &raw mut params,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {
            let mut macs = [0u8; 12];
            macs[..6].copy_from_slice(&params.dmac);
            macs[6..].copy_from_slice(&params.smac);
            if ctx.store(0, &macs, 0).is_err() {
                return TC_ACT_OK;
            }
            // SAFETY: a plain helper call; the verdict it returns is TC_ACT_REDIRECT on success.
            unsafe { bpf_redirect(params.ifindex, 0) as i32 }
        }
        // The next hop's MAC is not resolved yet: let the neighbour subsystem do it.
        // SAFETY: a null parameter block asks the kernel to use the route's next hop.
        BPF_FIB_LKUP_RET_NO_NEIGH => unsafe {
            bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) as i32
        },
        _ => TC_ACT_OK,
    }
}
