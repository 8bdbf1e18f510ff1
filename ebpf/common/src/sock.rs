//! Socket-level reverse translation and session affinity.
//!
//! `connect4`/`sendmsg4` point a socket at a backend; `recvmsg4`/`getpeername4` must then show
//! the service address again, or applications that compare peers break (the reason Cilium added
//! them). The reverse entry is keyed by the socket's cookie and the backend it was sent to.

/// Key of the socket reverse-NAT map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockRevNat4Key {
    /// `bpf_get_socket_cookie` of the socket.
    pub cookie: u64,
    /// The backend the socket was translated to, network order.
    pub address: u32,
    pub port: u16,
    /// Explicit padding, always zero.
    pub pad: u16,
}
const _: () = assert!(size_of::<SockRevNat4Key>() == 16);

/// Value of the socket reverse-NAT map: the service address to show.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRevNat4Value {
    pub address: u32,
    pub port: u16,
    pub rev_nat: u16,
}
const _: () = assert!(size_of::<SockRevNat4Value>() == 8);

/// Key of the IPv6 socket reverse-NAT map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockRevNat6Key {
    pub cookie: u64,
    /// The backend, four words in network byte order.
    pub address: [u32; 4],
    pub port: u16,
    /// Explicit padding, always zero.
    pub pad: [u8; 6],
}
const _: () = assert!(size_of::<SockRevNat6Key>() == 32);

/// Value of the IPv6 socket reverse-NAT map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRevNat6Value {
    pub address: [u32; 4],
    pub port: u16,
    pub rev_nat: u16,
}
const _: () = assert!(size_of::<SockRevNat6Value>() == 20);

/// Key of the session-affinity map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Affinity4Key {
    /// Who the client is: the network namespace cookie at the socket layer (one pod), the
    /// source address in the per-packet path (with [`AFFINITY_BY_ADDRESS`] set).
    pub client: u64,
    /// The service's reverse-NAT index.
    pub rev_nat: u16,
    /// Explicit padding, always zero.
    pub pad: [u8; 6],
}
const _: () = assert!(size_of::<Affinity4Key>() == 16);

/// Marks an affinity client id that is an address rather than a netns cookie (cookies are
/// allocated from 1 upwards and never reach this bit).
pub const AFFINITY_BY_ADDRESS: u64 = 1 << 63;

/// Value of the session-affinity map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affinity4Value {
    pub backend_id: u32,
    /// Last use, in seconds of `bpf_ktime_get_ns`.
    pub last_used: u32,
}
const _: () = assert!(size_of::<Affinity4Value>() == 8);
