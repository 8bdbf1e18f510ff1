//! Service load balancing: the service maps in slot layout (IPv4 and IPv6), the backend maps,
//! backend choice and session affinity. One selection routine serves both families through the
//! [`Family`] trait, so the slot walk is written once.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use strait_ebpf_common::{
    drop::DropReason,
    maps::{AFFINITY_MAX, BACKENDS_MAX, LB_MAP_FLAGS, MAGLEV_SIZE, MAGLEV_TABLES, SERVICES_MAX},
    service::{Backend4, Backend6, SVC_F_AFFINITY, Service4Key, Service6Key, ServiceValue},
    sock::{Affinity4Key, Affinity4Value},
};

#[map]
static STRAIT_SVC4: HashMap<Service4Key, ServiceValue> =
    HashMap::pinned(SERVICES_MAX, LB_MAP_FLAGS);

#[map]
static STRAIT_BE4: HashMap<u32, Backend4> = HashMap::pinned(BACKENDS_MAX, LB_MAP_FLAGS);

#[map]
static STRAIT_SVC6: HashMap<Service6Key, ServiceValue> =
    HashMap::pinned(SERVICES_MAX, LB_MAP_FLAGS);

#[map]
static STRAIT_BE6: HashMap<u32, Backend6> = HashMap::pinned(BACKENDS_MAX, LB_MAP_FLAGS);

/// Sized by the agent at load (tables × table size); declared at the defaults.
#[map]
static STRAIT_MAGLEV4: Array<u32> = Array::pinned(MAGLEV_TABLES * MAGLEV_SIZE, 0);

/// Affinity for both families: keyed by client and reverse-NAT index, valued by a backend id
/// (ids are shared between the families).
#[map]
static STRAIT_AFF4: LruHashMap<Affinity4Key, Affinity4Value> = LruHashMap::pinned(AFFINITY_MAX, 0);

/// An address family's maps.
pub(crate) trait Family {
    type Address: Copy;
    type Backend: Copy;
    /// A backend's address, port (network order) and `BACKEND_F_*` flags.
    fn parts(backend: &Self::Backend) -> (Self::Address, u16, u8);
    fn service(address: Self::Address, port: u16, proto: u8, slot: u16) -> Option<ServiceValue>;
    fn backend(id: u32) -> Option<Self::Backend>;
}

pub(crate) struct V4;
pub(crate) struct V6;

impl Family for V4 {
    type Address = u32;
    type Backend = Backend4;

    #[inline(always)]
    fn parts(backend: &Backend4) -> (u32, u16, u8) {
        (backend.address, backend.port, backend.flags)
    }

    #[inline(always)]
    fn service(address: u32, port: u16, proto: u8, slot: u16) -> Option<ServiceValue> {
        // SAFETY: the value is copied out at once; a concurrent update replaces it whole.
        unsafe { STRAIT_SVC4.get(Service4Key::new(address, port, proto, slot)) }.copied()
    }

    #[inline(always)]
    fn backend(id: u32) -> Option<Backend4> {
        // SAFETY: as above.
        unsafe { STRAIT_BE4.get(id) }.copied()
    }
}

impl Family for V6 {
    type Address = [u32; 4];
    type Backend = Backend6;

    #[inline(always)]
    fn parts(backend: &Backend6) -> ([u32; 4], u16, u8) {
        (backend.address, backend.port, backend.flags)
    }

    #[inline(always)]
    fn service(address: [u32; 4], port: u16, proto: u8, slot: u16) -> Option<ServiceValue> {
        // SAFETY: as for V4.
        unsafe { STRAIT_SVC6.get(Service6Key::new(address, port, proto, slot)) }.copied()
    }

    #[inline(always)]
    fn backend(id: u32) -> Option<Backend6> {
        // SAFETY: as for V4.
        unsafe { STRAIT_BE6.get(id) }.copied()
    }
}

/// What a destination resolves to.
pub(crate) enum Lookup<B> {
    /// Not a service address: leave the traffic alone.
    NotService,
    /// A service (its master entry); this backend was chosen.
    Backend { backend: B, master: ServiceValue },
    /// A service that cannot be served.
    Refuse(DropReason),
}

/// Resolves `address:port/proto` (network order) to one of the service's backends: the one
/// `client` used last if the service has ClientIP affinity and it has not timed out; else, for
/// a flow from outside (`flow_hash` given) to a service with a Maglev table, the table's entry
/// for the flow, so every node picks the same backend for it; else one chosen at random.
/// Three or four lookups whatever the number of services.
#[inline(always)]
pub(crate) fn select_backend<F: Family>(
    address: F::Address,
    port: u16,
    proto: u8,
    client: u64,
    flow_hash: Option<u32>,
) -> Lookup<F::Backend> {
    let Some(master) = F::service(address, port, proto, 0) else {
        return Lookup::NotService;
    };
    if master.count == 0 {
        return Lookup::Refuse(DropReason::NoBackend);
    }
    let affinity = master.flags & SVC_F_AFFINITY != 0;
    let affinity_key = Affinity4Key {
        client,
        rev_nat: master.rev_nat,
        pad: [0; 6],
    };
    // SAFETY: a plain helper call.
    let now = (unsafe { bpf_ktime_get_ns() } / 1_000_000_000) as u32;
    if affinity
        // SAFETY: the value is copied out at once.
        && let Some(previous) = (unsafe { STRAIT_AFF4.get(affinity_key) }).copied()
        // The master's backend_id holds the affinity timeout.
        && now.wrapping_sub(previous.last_used) <= master.backend_id
        && let Some(backend) = F::backend(previous.backend_id)
    {
        remember(affinity_key, previous.backend_id, now);
        return Lookup::Backend { backend, master };
    }
    let backend_id = match maglev_entry(&master, flow_hash) {
        Some(Ok(id)) => id,
        Some(Err(reason)) => return Lookup::Refuse(reason),
        None => {
            // SAFETY: a plain helper call with no arguments.
            let random = unsafe { bpf_get_prandom_u32() };
            // Slots are 1..=count; the writer fills slots before it raises the count.
            let slot = (random % u32::from(master.count)) as u16 + 1;
            match F::service(address, port, proto, slot) {
                Some(entry) => entry.backend_id,
                None => return Lookup::Refuse(DropReason::BackendMissing),
            }
        }
    };
    match F::backend(backend_id) {
        Some(backend) => {
            if affinity {
                remember(affinity_key, backend_id, now);
            }
            Lookup::Backend { backend, master }
        }
        None => Lookup::Refuse(DropReason::BackendMissing),
    }
}

/// The backend id the service's Maglev table gives a flow, if the service has a table and the
/// caller a flow hash.
#[inline(always)]
fn maglev_entry(master: &ServiceValue, flow_hash: Option<u32>) -> Option<Result<u32, DropReason>> {
    let size = crate::config::node().maglev_size;
    let hash = flow_hash?;
    if master.maglev == 0 || size == 0 {
        return None;
    }
    let index = u32::from(master.maglev - 1) * size + hash % size;
    Some(
        STRAIT_MAGLEV4
            .get(index)
            .copied()
            .ok_or(DropReason::BackendMissing),
    )
}

#[inline(always)]
fn remember(key: Affinity4Key, backend_id: u32, now: u32) {
    let value = Affinity4Value {
        backend_id,
        last_used: now,
    };
    // An LRU insert only fails on memory pressure; the next connection then picks afresh.
    let _ignored = STRAIT_AFF4.insert(key, value, 0);
}

/// A hash of a flow's 5-tuple, the same on every node (murmur3's finalizer over each word), so
/// Maglev sends a flow to the same backend whichever node it arrives at.
#[inline(always)]
pub(crate) fn flow_hash(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut hash: u32 = 0x9e37_79b9;
    for word in [
        saddr,
        daddr,
        (u32::from(sport) << 16) | u32::from(dport),
        u32::from(proto),
    ] {
        hash ^= word;
        hash = hash.wrapping_mul(0x85eb_ca6b);
        hash ^= hash >> 13;
        hash = hash.wrapping_mul(0xc2b2_ae35);
        hash ^= hash >> 16;
    }
    hash
}
