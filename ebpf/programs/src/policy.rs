//! NetworkPolicy on each pod's host-side veth (see `strait_ebpf_common::policy` for the maps).
//!
//! ```text
//!   pod ──▶ [tc ingress on the host veth: strait_from_pod] the pod's egress
//!   pod ◀── [tc egress on the host veth: strait_to_pod]    the pod's ingress
//! ```
//!
//! A new connection is judged once, at each end's hook: the peer's identity from the
//! ipcache, then the endpoint's policy trie for that identity and for any identity. The
//! verdict goes into the policy conntrack, keyed by the tuple and the hook, so later packets
//! and replies (found under the reversed tuple and the other hook) pass with one lookup, and
//! into the flow ring buffer for the agent. IPv4 is judged, every protocol: TCP, UDP and SCTP
//! by port, others (ICMP) as port 0, which only rules without ports admit. Fragments after the
//! first and IPv6 (pods have no IPv6 addresses yet) pass.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map},
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::TcContext,
};
use strait_ebpf_common::{
    ct::{CT_F_CLOSING, CtKey, Tuple},
    drop::DropReason,
    maps::{CT_MAX, ENDPOINTS_MAX, FLOWS_BYTES, IPCACHE_MAX, POLICY_MAX},
    policy::{
        DIR_EGRESS, DIR_INGRESS, EP_F_ENFORCE_EGRESS, EP_F_ENFORCE_INGRESS, EndpointValue,
        FlowRecord, IDENTITY_ANY, IDENTITY_HOST, IDENTITY_WORLD, IpcacheValue, POLICY_PREFIX_FULL,
        PolicyCtValue, PolicyKey, PolicyValue, RULE_DEFAULT_DENY, RULE_HOST, RULE_NOT_ISOLATED,
        VERDICT_ALLOWED, VERDICT_DENIED,
    },
    service::{PROTO_TCP, PROTO_UDP},
};

use crate::{
    ct::{TCP_FIN_RST, lifetime, now_secs, opens},
    drop,
    packet::{ETH_HLEN, ETH_P_IP, IP_DADDR_OFF, IP_SADDR_OFF, Packet},
};

/// Fragment offset bits of the IPv4 `frag_off` field: non-zero on every fragment but the first.
const IP_OFFSET_MASK: u16 = 0x1fff;
/// ICMP, and its echo types.
const PROTO_ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// SCTP, whose ports sit where TCP's and UDP's do.
const PROTO_SCTP: u8 = 132;

#[map]
static STRAIT_IPCACHE4: LpmTrie<u32, IpcacheValue> = LpmTrie::pinned(IPCACHE_MAX, 0);

#[map]
static STRAIT_POLICY: LpmTrie<PolicyKey, PolicyValue> = LpmTrie::pinned(POLICY_MAX, 0);

#[map]
static STRAIT_ENDPOINTS: HashMap<u32, EndpointValue> = HashMap::pinned(ENDPOINTS_MAX, 0);

/// LRU, like the service conntrack: when full the least recently used connection is judged
/// again on its next packet, never refused for want of room.
#[map]
static STRAIT_PCT4: LruHashMap<CtKey<u32>, PolicyCtValue> = LruHashMap::pinned(CT_MAX, 0);

#[map]
static STRAIT_FLOWS: RingBuf = RingBuf::pinned(FLOWS_BYTES, 0);

/// Records lost to a full ring buffer, per CPU.
#[map]
static STRAIT_FLOWS_LOST: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);

/// Packets the pod sends.
#[classifier]
pub(crate) fn strait_from_pod(ctx: TcContext) -> i32 {
    enforce(&ctx, DIR_EGRESS)
}

/// Packets delivered to the pod.
#[classifier]
pub(crate) fn strait_to_pod(ctx: TcContext) -> i32 {
    enforce(&ctx, DIR_INGRESS)
}

#[inline(always)]
fn enforce(ctx: &TcContext, direction: u8) -> i32 {
    let Some(packet) = parse(ctx) else {
        // Not judged (see the module comment); a malformed packet is the stack's to refuse.
        return TC_ACT_OK;
    };
    // SAFETY: `skb` is the live context of this program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: the value is copied out at once.
    let Some(endpoint) = (unsafe { STRAIT_ENDPOINTS.get(ifindex) }).copied() else {
        return TC_ACT_OK;
    };
    if tracked(&packet, direction) {
        return TC_ACT_OK;
    }
    let (peer_addr, enforced) = if direction == DIR_INGRESS {
        (
            packet.tuple.saddr,
            endpoint.flags & EP_F_ENFORCE_INGRESS != 0,
        )
    } else {
        (
            packet.tuple.daddr,
            endpoint.flags & EP_F_ENFORCE_EGRESS != 0,
        )
    };
    let peer = identity(peer_addr);
    let rule = if !enforced {
        RULE_NOT_ISOLATED
    } else if direction == DIR_INGRESS && peer == IDENTITY_HOST {
        RULE_HOST
    } else {
        let key = |identity| PolicyKey {
            endpoint: endpoint.endpoint,
            identity,
            direction,
            protocol: packet.proto,
            dport: packet.tuple.dport,
        };
        lookup(key(peer))
            .or_else(|| lookup(key(IDENTITY_ANY)))
            .unwrap_or(RULE_DEFAULT_DENY)
    };
    let allowed = rule != RULE_DEFAULT_DENY;
    report(&packet, direction, allowed, ifindex, &endpoint, peer, rule);
    if !allowed {
        drop::record(DropReason::PolicyDenied);
        return TC_ACT_SHOT;
    }
    let closing = packet.tcp_flags & TCP_FIN_RST != 0;
    let entry = PolicyCtValue {
        rule,
        expires: now_secs() + lifetime(packet.proto, closing),
        flags: if closing { u32::from(CT_F_CLOSING) } else { 0 },
        pad: 0,
    };
    // A full or failing map costs only a second judgement of the next packet.
    let _ = STRAIT_PCT4.insert(CtKey::new(packet.tuple, packet.proto, direction), entry, 0);
    TC_ACT_OK
}

/// What policy needs of an IPv4 packet: addresses, protocol, ports (TCP, UDP and SCTP carry
/// them in their first four bytes; other protocols, ICMP among them, are judged with port 0,
/// so only rules without ports admit them) and TCP flags. `None` for anything else and for
/// fragments after the first, which carry no ports.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Packet<u32>> {
    let eth_proto: u16 = ctx.load(12).ok()?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return None;
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).ok()?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let frag_off: u16 = ctx.load(ETH_HLEN + 6).ok()?;
    if u16::from_be(frag_off) & IP_OFFSET_MASK != 0 {
        return None;
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).ok()?;
    let l4 = ETH_HLEN + ihl;
    // ICMP errors (unreachable, time exceeded, parameter problem) belong to the flow they
    // quote, which was judged already; refusing them would break path MTU discovery.
    if proto == PROTO_ICMP && matches!(ctx.load::<u8>(l4).ok()?, 3 | 11 | 12) {
        return None;
    }
    let (ports, tcp_flags) = match proto {
        PROTO_TCP => (
            ctx.load::<[u16; 2]>(l4).ok()?,
            ctx.load::<u8>(l4 + 13).ok()?,
        ),
        PROTO_UDP | PROTO_SCTP => (ctx.load::<[u16; 2]>(l4).ok()?, 0),
        // An echo's identifier tells one ping from the next: a request is (id → 0), its
        // reply (0 → id), the reversed tuple, as conntrack needs.
        PROTO_ICMP => {
            let id: u16 = ctx.load(l4 + 4).ok()?;
            match ctx.load::<u8>(l4).ok()? {
                ICMP_ECHO_REQUEST => ([id, 0], 0),
                ICMP_ECHO_REPLY => ([0, id], 0),
                _ => ([0, 0], 0),
            }
        }
        _ => ([0, 0], 0),
    };
    Some(Packet {
        l4,
        proto,
        tuple: Tuple {
            saddr: ctx.load(IP_SADDR_OFF).ok()?,
            daddr: ctx.load(IP_DADDR_OFF).ok()?,
            sport: ports[0],
            dport: ports[1],
        },
        tcp_flags,
        len: ctx.len(),
    })
}

/// Whether the packet belongs to a connection already allowed here: one this hook allowed
/// (same tuple), or one the other hook of this endpoint allowed (the reply's tuple). Refreshes
/// the entry's lifetime.
///
/// A connection that closed leaves its entry for [`CT_LIFETIME_CLOSING`] seconds, and a client
/// may reuse the tuple within them (as soon as the server closed first). Its SYN is a new
/// connection, which the policy of now must judge, not the old verdict (Cilium's CT_REOPENED):
/// the closing entry is removed, so the judgement's verdict replaces it, or a denial leaves
/// none for later packets of the tuple.
///
/// [`CT_LIFETIME_CLOSING`]: strait_ebpf_common::ct::CT_LIFETIME_CLOSING
#[inline(always)]
fn tracked(packet: &Packet<u32>, direction: u8) -> bool {
    let reply_direction = if direction == DIR_INGRESS {
        DIR_EGRESS
    } else {
        DIR_INGRESS
    };
    let now = now_secs();
    let opening = opens(packet);
    for key in [
        CtKey::new(packet.tuple, packet.proto, direction),
        CtKey::new(packet.tuple.reversed(), packet.proto, reply_direction),
    ] {
        if let Some(entry) = STRAIT_PCT4.get_ptr_mut(key) {
            // SAFETY: a live map value; a concurrent refresh on another CPU writes the same.
            let entry = unsafe { &mut *entry };
            if entry.expires < now {
                continue;
            }
            let was_closing = entry.flags & u32::from(CT_F_CLOSING) != 0;
            if was_closing && opening {
                // The entry is not used after this. Failing to remove it (another CPU did)
                // changes nothing: the packet is judged either way.
                let _ = STRAIT_PCT4.remove(key);
                continue;
            }
            let closing = was_closing || packet.tcp_flags & TCP_FIN_RST != 0;
            if closing {
                entry.flags |= u32::from(CT_F_CLOSING);
            }
            entry.expires = now + lifetime(packet.proto, closing);
            return true;
        }
    }
    false
}

/// The identity of an address: the most specific ipcache prefix holding it, or the world.
#[inline(always)]
fn identity(addr: u32) -> u32 {
    let key = Key::new(32, addr);
    STRAIT_IPCACHE4
        .get(&key)
        .map_or(IDENTITY_WORLD, |value| value.identity)
}

/// The rule allowing `key`, if any: the longest matching entry (a port beats a block of
/// ports, which beats the whole protocol, which beats every protocol).
#[inline(always)]
fn lookup(key: PolicyKey) -> Option<u32> {
    STRAIT_POLICY
        .get(Key::new(POLICY_PREFIX_FULL, key))
        .map(|value| value.rule)
}

/// Sends the verdict to the agent; a full ring buffer loses the record, never the packet
/// (the agent counts what the ring buffer reports lost).
#[inline(always)]
fn report(
    packet: &Packet<u32>,
    direction: u8,
    allowed: bool,
    ifindex: u32,
    endpoint: &EndpointValue,
    peer: u32,
    rule: u32,
) {
    let Some(mut slot) = STRAIT_FLOWS.reserve::<FlowRecord>(0) else {
        if let Some(lost) = STRAIT_FLOWS_LOST.get_ptr_mut(0) {
            // SAFETY: this CPU's slot of a per-CPU array; programs on one CPU do not interleave.
            unsafe { *lost += 1 };
        }
        return;
    };
    slot.write(FlowRecord {
        saddr: packet.tuple.saddr,
        daddr: packet.tuple.daddr,
        sport: packet.tuple.sport,
        dport: packet.tuple.dport,
        protocol: packet.proto,
        direction,
        verdict: if allowed {
            VERDICT_ALLOWED
        } else {
            VERDICT_DENIED
        },
        pad: 0,
        ifindex,
        identity: endpoint.identity,
        peer_identity: peer,
        rule,
        // SAFETY: a plain helper call.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    });
    slot.submit(0);
}
