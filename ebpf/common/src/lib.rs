//! Types shared by Strait's BPF programs and the userspace that reads and writes their maps.
//!
//! Everything here is `no_std`, `#[repr(C)]`, padded explicitly and asserted for size, so the
//! BPF side and the agent agree byte for byte. No API type ever enters this crate: the agent's
//! dataplane module is the only place that turns Kubernetes objects into these values.
//!
//! Byte order: addresses and ports are stored in network byte order, as they appear in packets
//! and in `bpf_sock_addr`; every other integer is in host order.

#![no_std]

pub mod config;
pub mod ct;
pub mod drop;
pub mod maps;
pub mod policy;
pub mod service;
pub mod sock;

/// Pod implementations for userspace, kept in one place so the list is easy to audit.
#[cfg(feature = "user")]
mod pod {
    use crate::{
        config::NodeConfig,
        ct::{CtEntry, CtKey, Tuple},
        policy::{EndpointValue, FlowRecord, IpcacheValue, PolicyCtValue, PolicyKey, PolicyValue},
        service::{Backend4, Backend6, Service4Key, Service6Key, ServiceStats, ServiceValue},
        sock::{
            Affinity4Key, Affinity4Value, SockRevNat4Key, SockRevNat4Value, SockRevNat6Key,
            SockRevNat6Value,
        },
    };

    // SAFETY: each type is `#[repr(C)]`, `Copy`, has no implicit padding (padding is an explicit
    // zeroed field, checked by the size assertions next to the type) and every bit pattern is valid.
    unsafe impl aya::Pod for Service4Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ServiceValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Backend4 {}
    // SAFETY: as above, for both address types (`u32`, `[u32; 4]`); the size assertions next to
    // the types cover both instantiations.
    unsafe impl aya::Pod for Tuple<u32> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Tuple<[u32; 4]> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CtKey<u32> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CtKey<[u32; 4]> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CtEntry<u32> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CtEntry<[u32; 4]> {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NodeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ServiceStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Service6Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Backend6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockRevNat6Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockRevNat6Value {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockRevNat4Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockRevNat4Value {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Affinity4Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Affinity4Value {}
    // SAFETY: as above.
    unsafe impl aya::Pod for IpcacheValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PolicyKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PolicyValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for EndpointValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PolicyCtValue {}
}

#[cfg(test)]
mod tests {
    use crate::service::{ipv6_octets, ipv6_words};

    #[test]
    fn ipv6_words_keep_the_wire_byte_order_in_memory() {
        let octets: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let words = ipv6_words(octets);
        assert_eq!(words[0].to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(ipv6_octets(words), octets);
    }
}
