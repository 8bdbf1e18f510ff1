//! Connection tracking for the per-packet path: one entry per direction of a translated flow.
//!
//! A flow from a client to a service frontend gets two entries. The FORWARD entry is keyed by the
//! tuple as the client sent it and says what to write into later packets of that direction (the
//! backend as destination; the node address as source when the flow is source-NATed). The REPLY
//! entry is keyed by the tuple the backend's replies carry and says how to restore them (the
//! frontend as source, the client as destination). Entries hold the rewrite itself, not a
//! backend id, so removing a backend from a service never breaks a flow already tracked.

/// Key direction: the tuple as the client sent it.
pub const CT_FORWARD: u8 = 0;
/// Key direction: the tuple the backend's replies carry.
pub const CT_REPLY: u8 = 1;

/// Entry flag: the flow's source was rewritten to the node address (SNAT).
pub const CT_F_SNAT: u8 = 1;
/// Entry flag: a FIN or RST was seen; the entry expires soon.
pub const CT_F_CLOSING: u8 = 2;

/// Seconds an established TCP entry lives without traffic (Cilium's default, 6 h).
pub const CT_LIFETIME_TCP: u32 = 21_600;
/// Seconds a closing TCP entry lives.
pub const CT_LIFETIME_CLOSING: u32 = 10;
/// Seconds a UDP entry lives without traffic.
pub const CT_LIFETIME_UDP: u32 = 60;

/// An IPv4 L4 tuple, addresses and ports in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple4 {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
}
const _: () = assert!(size_of::<Tuple4>() == 12);

impl Tuple4 {
    /// The same flow seen from the other end.
    pub const fn reversed(self) -> Self {
        Self {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// Key of the IPv4 conntrack map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ct4Key {
    pub tuple: Tuple4,
    /// IP protocol.
    pub proto: u8,
    /// [`CT_FORWARD`] or [`CT_REPLY`].
    pub dir: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<Ct4Key>() == 16);

impl Ct4Key {
    pub const fn new(tuple: Tuple4, proto: u8, dir: u8) -> Self {
        Self {
            tuple,
            proto,
            dir,
            pad: [0; 2],
        }
    }
}

/// Value of the IPv4 conntrack map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ct4Entry {
    /// The tuple packets of this direction are rewritten to.
    pub nat: Tuple4,
    /// Reverse-NAT index of the service (as in the service map).
    pub rev_nat: u16,
    /// `CT_F_*` bits.
    pub flags: u8,
    /// Explicit padding, always zero.
    pub pad: u8,
    /// When the entry stops being valid, in seconds of `bpf_ktime_get_ns` (monotonic boot time).
    pub expires: u32,
    /// Explicit padding to the counters' 8-byte alignment, always zero.
    pub pad2: u32,
    /// Packets and bytes seen in this direction.
    pub packets: u64,
    pub bytes: u64,
}
// 12 + 2 + 1 + 1 + 4 + 4 + 8 + 8: no implicit padding.
const _: () = assert!(size_of::<Ct4Entry>() == 40);
