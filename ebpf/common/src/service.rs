//! Service and backend map types, in the slot layout Cilium proved.
//!
//! A service with N backends is N + 1 entries of the service map, all with the same address,
//! port and protocol: slot 0 (the master) holds the backend count, slots 1..=N hold backend ids.
//! Writers update backends, then slots, then the master's count, then delete stale slots, so a
//! reader that only indexes slots `1..=count` never sees a hole.

/// IP protocol number of TCP, as in the IPv4 header.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Master flag: the traffic policy for this frontend is Local (only node-local backends are
/// listed, and flows are never source-NATed, so backends see the client address).
pub const SVC_F_LOCAL_ONLY: u8 = 1;
/// Master flag: the frontend takes traffic from outside the cluster (NodePort, LoadBalancer,
/// external IP).
pub const SVC_F_EXTERNAL: u8 = 2;
/// Master flag: `sessionAffinity: ClientIP`; the timeout in seconds is in `backend_id`.
pub const SVC_F_AFFINITY: u8 = 4;

/// Backend flag: the backend runs on this node (no SNAT needed to reach it).
pub const BACKEND_F_LOCAL: u8 = 1;

/// Key of the IPv4 service map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Service4Key {
    /// Service address (ClusterIP, external IP or node address), network order.
    pub address: u32,
    /// Service port, network order.
    pub port: u16,
    /// 0 for the master entry, 1..=count for backend slots. Host order.
    pub slot: u16,
    /// IP protocol ([`PROTO_TCP`] or [`PROTO_UDP`]).
    pub proto: u8,
    /// Reserved for the traffic-policy scope (external/internal); 0 for now.
    pub scope: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<Service4Key>() == 12);

impl Service4Key {
    /// The key of slot `slot` of the service at `address:port/proto` (both network order).
    pub const fn new(address: u32, port: u16, proto: u8, slot: u16) -> Self {
        Self {
            address,
            port,
            slot,
            proto,
            scope: 0,
            pad: [0; 2],
        }
    }

    /// The master entry of the same service.
    pub const fn master(self) -> Self {
        Self::new(self.address, self.port, self.proto, 0)
    }
}

/// Value of the IPv4 and IPv6 service maps; its meaning depends on the slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceValue {
    /// Slot 1..=count: the backend id. Master: the affinity timeout in seconds, if
    /// [`SVC_F_AFFINITY`] is set.
    pub backend_id: u32,
    /// Master: number of backend slots. Slots: 0.
    pub count: u16,
    /// Reverse-NAT index that restores the service address on replies.
    pub rev_nat: u16,
    /// Master: `SVC_F_*` bits.
    pub flags: u8,
    /// Explicit padding, always zero.
    pub pad: u8,
    /// Master: 1 + the index of the service's Maglev table in the Maglev map, or 0 when new
    /// flows pick backends at random.
    pub maglev: u16,
}
const _: () = assert!(size_of::<ServiceValue>() == 12);

impl ServiceValue {
    /// The master entry of a service with `count` backends.
    pub const fn master(
        count: u16,
        rev_nat: u16,
        flags: u8,
        affinity_timeout: u32,
        maglev: u16,
    ) -> Self {
        Self {
            backend_id: affinity_timeout,
            count,
            rev_nat,
            flags,
            pad: 0,
            maglev,
        }
    }

    /// A slot entry pointing at `backend_id`.
    pub const fn slot(backend_id: u32, rev_nat: u16) -> Self {
        Self {
            backend_id,
            count: 0,
            rev_nat,
            flags: 0,
            pad: 0,
            maglev: 0,
        }
    }
}

/// Key of the IPv6 service map: as [`Service4Key`], with a 16-byte address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Service6Key {
    /// Service address as four words in network byte order (`bpf_sock_addr.user_ip6`'s
    /// layout): the 16 bytes in memory are the address as on the wire.
    pub address: [u32; 4],
    /// Service port, network order.
    pub port: u16,
    /// 0 for the master entry, 1..=count for backend slots. Host order.
    pub slot: u16,
    /// IP protocol.
    pub proto: u8,
    /// Reserved for the traffic-policy scope; 0 for now.
    pub scope: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<Service6Key>() == 24);

impl Service6Key {
    /// The key of slot `slot` of the service at `address:port/proto` (network order).
    pub const fn new(address: [u32; 4], port: u16, proto: u8, slot: u16) -> Self {
        Self {
            address,
            port,
            slot,
            proto,
            scope: 0,
            pad: [0; 2],
        }
    }
}

/// Value of the IPv6 backend map, keyed by backend id (ids are shared with IPv4 backends).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend6 {
    /// Backend address, four words in network byte order.
    pub address: [u32; 4],
    /// Backend port, network order.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// `BACKEND_F_*` bits.
    pub flags: u8,
}
const _: () = assert!(size_of::<Backend6>() == 20);

/// An IPv6 address's bytes (network order) as the four words the maps and `bpf_sock_addr`
/// hold: each word's memory is four bytes of the address, in order.
pub const fn ipv6_words(octets: [u8; 16]) -> [u32; 4] {
    let o = octets;
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The inverse of [`ipv6_words`].
pub const fn ipv6_octets(words: [u32; 4]) -> [u8; 16] {
    let [a, b, c, d] = [
        words[0].to_ne_bytes(),
        words[1].to_ne_bytes(),
        words[2].to_ne_bytes(),
        words[3].to_ne_bytes(),
    ];
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

/// Value of the IPv4 backend map, keyed by backend id (`u32`, host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend4 {
    /// Backend (pod) address, network order.
    pub address: u32,
    /// Backend port, network order.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// `BACKEND_F_*` bits.
    pub flags: u8,
}
const _: () = assert!(size_of::<Backend4>() == 8);

/// Per-CPU traffic counters of one service frontend, indexed by its reverse-NAT index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Connections (and unconnected datagrams) translated at the socket, and new flows
    /// tracked by the per-packet path.
    pub flows: u64,
    /// Packets and bytes translated by the per-packet path (socket-translated traffic is not
    /// seen per packet: that is the point of translating at the socket).
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<ServiceStats>() == 24);
