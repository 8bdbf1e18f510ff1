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

/// An L4 tuple, addresses and ports in network order. `A` is the address: `u32` for IPv4,
/// `[u32; 4]` for IPv6 (words in network byte order, as `bpf_sock_addr.user_ip6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple<A> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
}
/// An IPv4 tuple.
pub type Tuple4 = Tuple<u32>;
/// An IPv6 tuple.
pub type Tuple6 = Tuple<[u32; 4]>;
const _: () = assert!(size_of::<Tuple4>() == 12);
const _: () = assert!(size_of::<Tuple6>() == 36);

impl<A: Copy> Tuple<A> {
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

/// Key of a conntrack map (`STRAIT_CT4`, `STRAIT_CT6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtKey<A> {
    pub tuple: Tuple<A>,
    /// IP protocol.
    pub proto: u8,
    /// [`CT_FORWARD`] or [`CT_REPLY`].
    pub dir: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 2],
}
pub type Ct4Key = CtKey<u32>;
pub type Ct6Key = CtKey<[u32; 4]>;
const _: () = assert!(size_of::<Ct4Key>() == 16);
const _: () = assert!(size_of::<Ct6Key>() == 40);

impl<A: Copy> CtKey<A> {
    pub const fn new(tuple: Tuple<A>, proto: u8, dir: u8) -> Self {
        Self {
            tuple,
            proto,
            dir,
            pad: [0; 2],
        }
    }
}

/// Value of a conntrack map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntry<A> {
    /// The tuple packets of this direction are rewritten to.
    pub nat: Tuple<A>,
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
pub type Ct4Entry = CtEntry<u32>;
pub type Ct6Entry = CtEntry<[u32; 4]>;
// Tuple + 2 + 1 + 1 + 4 + 4 + 8 + 8, with no implicit padding for either family.
const _: () = assert!(size_of::<Ct4Entry>() == 40);
const _: () = assert!(size_of::<Ct6Entry>() == 64);
