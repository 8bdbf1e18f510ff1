//! NetworkPolicy enforcement: what the agent writes and the tc programs on each pod's host-side
//! veth read (see `strait_policy` for the semantics these maps encode).
//!
//! ```text
//!   pod ──▶ [tc ingress on the host veth: the pod's egress]  ──▶ node
//!   pod ◀── [tc egress on the host veth: the pod's ingress]  ◀── node
//! ```
//!
//! A packet's peer address becomes an identity through the ipcache (longest prefix: a pod's
//! /32, an ipBlock prefix, or nothing: [`IDENTITY_WORLD`]). The endpoint's policy is a
//! longest-prefix trie keyed by (endpoint, peer identity, direction, protocol, port), looked
//! up once for the peer's identity and once for [`IDENTITY_ANY`]; port ranges are stored as
//! aligned blocks, wildcards as shorter prefixes. A verdict is cached per connection in the
//! policy conntrack, so replies pass and later packets cost one lookup.

/// In a policy key: any peer.
pub const IDENTITY_ANY: u32 = 0;
/// The node itself: always allowed into its pods (kubelet probes).
pub const IDENTITY_HOST: u32 = 1;
/// An address no pod has and no ipBlock prefix names.
pub const IDENTITY_WORLD: u32 = 2;

/// Direction in a policy key: traffic entering the pod.
pub const DIR_INGRESS: u8 = 0;
/// Direction in a policy key: traffic leaving the pod.
pub const DIR_EGRESS: u8 = 1;

/// Endpoint flag: the pod is isolated for ingress (a policy selects it for ingress).
pub const EP_F_ENFORCE_INGRESS: u32 = 1;
/// Endpoint flag: the pod is isolated for egress.
pub const EP_F_ENFORCE_EGRESS: u32 = 2;

/// A flow's reason when no rule decided: the direction is not isolated.
pub const RULE_NOT_ISOLATED: u32 = u32::MAX;
/// A flow's reason: the node talking to its own pod.
pub const RULE_HOST: u32 = u32::MAX - 1;
/// A flow's reason: a reply (or later packet) of a connection already allowed.
pub const RULE_TRACKED: u32 = u32::MAX - 2;
/// A flow's reason: isolated, and no rule allows it (default deny).
pub const RULE_DEFAULT_DENY: u32 = 0;

/// Flow verdict: forwarded.
pub const VERDICT_ALLOWED: u8 = 0;
/// Flow verdict: dropped.
pub const VERDICT_DENIED: u8 = 1;

/// Value of the ipcache.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcacheValue {
    pub identity: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}
const _: () = assert!(size_of::<IpcacheValue>() == 8);

/// The ipcache (an LPM trie) is keyed by an IPv4 address in network order behind a `u32`
/// prefix length, the layout `bpf_lpm_trie_key` prescribes.
///
/// Bits of a [`PolicyKey`] before the protocol: endpoint, identity and direction.
pub const POLICY_PREFIX_FIXED: u32 = 32 + 32 + 8;
/// Bits of a [`PolicyKey`] with the protocol: a rule for every port of one protocol.
pub const POLICY_PREFIX_PROTOCOL: u32 = POLICY_PREFIX_FIXED + 8;
/// Bits of a full [`PolicyKey`]: one port.
pub const POLICY_PREFIX_FULL: u32 = POLICY_PREFIX_PROTOCOL + 16;

/// Data of a policy map key (an LPM trie: the key is this behind a `u32` prefix length).
/// It is compared bit by bit from the first byte: `endpoint`, `identity` and `direction`
/// always in full, then `protocol` (absent: every protocol), then the high bits of `dport`
/// (network order, so an aligned block of ports is a prefix).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    /// The endpoint's id (see [`EndpointValue::endpoint`]).
    pub endpoint: u32,
    /// The peer's identity, or [`IDENTITY_ANY`].
    pub identity: u32,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port, network order.
    pub dport: u16,
}
const _: () = assert!(size_of::<PolicyKey>() == 12);

/// Value of the policy map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyValue {
    /// The rule that allows it, an index into the agent's rule table (≥ 1).
    pub rule: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}
const _: () = assert!(size_of::<PolicyValue>() == 8);

/// Value of the endpoint map, keyed by the host-side veth's ifindex (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointValue {
    /// The id its policy entries carry (the ifindex, today).
    pub endpoint: u32,
    /// The pod's own identity (for flow records).
    pub identity: u32,
    /// `EP_F_*` bits.
    pub flags: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}
const _: () = assert!(size_of::<EndpointValue>() == 16);

/// Value of the policy conntrack (keyed by [`crate::ct::Ct4Key`] whose direction is the hook
/// that allowed the connection: [`DIR_INGRESS`] or [`DIR_EGRESS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyCtValue {
    /// The rule (or `RULE_*` reason) that allowed the connection.
    pub rule: u32,
    /// When the entry stops being valid, in seconds of `bpf_ktime_get_ns`.
    pub expires: u32,
    /// `CT_F_*` bits of [`crate::ct`] (closing).
    pub flags: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}
const _: () = assert!(size_of::<PolicyCtValue>() == 16);

/// A verdict, as the programs report it to the agent through the flow ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Source and destination addresses (network order) and ports (network order).
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`], from the pod's point of view.
    pub direction: u8,
    /// [`VERDICT_ALLOWED`] or [`VERDICT_DENIED`].
    pub verdict: u8,
    /// Explicit padding, always zero.
    pub pad: u8,
    /// The endpoint's ifindex.
    pub ifindex: u32,
    /// The pod's identity and the peer's.
    pub identity: u32,
    pub peer_identity: u32,
    /// The deciding rule (an index into the agent's table) or a `RULE_*` reason.
    pub rule: u32,
    /// `bpf_ktime_get_ns` when it was decided.
    pub timestamp_ns: u64,
}
const _: () = assert!(size_of::<FlowRecord>() == 40);

impl FlowRecord {
    /// The record in `bytes` (one ring buffer item), if it is one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is that of a record, every bit pattern of its plain integer
        // fields is valid, and `read_unaligned` copes with any alignment of the buffer.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast()) })
    }
}

/// The aligned blocks covering ports `lo..=hi`, as (first port, prefix bits over the 16-bit
/// port): what a range becomes in the policy trie. At most 30 blocks for any range.
pub fn port_blocks(lo: u16, hi: u16, mut out: impl FnMut(u16, u32)) {
    let (mut start, end) = (u32::from(lo), u32::from(hi));
    while start <= end {
        // The largest aligned block starting at `start` that stays within `end`.
        let mut size = if start == 0 {
            1 << 16
        } else {
            1 << start.trailing_zeros()
        };
        while start + size - 1 > end {
            size >>= 1;
        }
        out(start as u16, 16 - size.trailing_zeros());
        start += size;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::port_blocks;

    fn blocks(lo: u16, hi: u16) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        port_blocks(lo, hi, |p, bits| out.push((p, bits)));
        out
    }

    #[test]
    fn ranges_become_the_fewest_aligned_blocks() {
        assert_eq!(blocks(80, 80), [(80, 16)]);
        assert_eq!(blocks(80, 81), [(80, 15)]);
        assert_eq!(blocks(81, 82), [(81, 16), (82, 16)]);
        assert_eq!(blocks(0, 65535), [(0, 0)]);
        assert_eq!(blocks(1024, 2047), [(1024, 6)]);
        let all = blocks(1, 65535);
        assert_eq!(all.len(), 16);
        let covered: u32 = all.iter().map(|(_, bits)| 1u32 << (16 - bits)).sum();
        assert_eq!(covered, 65535);
        assert!(blocks(1, 65534).len() <= 30);
    }
}
