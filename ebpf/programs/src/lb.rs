//! Service load balancing: the service map in slot layout, the backend map, backend choice and
//! session affinity.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use strait_ebpf_common::{
    drop::DropReason,
    maps::{AFFINITY_MAX, BACKENDS_MAX, LB_MAP_FLAGS, MAGLEV_SIZE, MAGLEV_TABLES, SERVICES_MAX},
    service::{Backend4, SVC_F_AFFINITY, Service4Key, Service4Value},
    sock::{Affinity4Key, Affinity4Value},
};

#[map]
static STRAIT_SVC4: HashMap<Service4Key, Service4Value> =
    HashMap::pinned(SERVICES_MAX, LB_MAP_FLAGS);

#[map]
static STRAIT_BE4: HashMap<u32, Backend4> = HashMap::pinned(BACKENDS_MAX, LB_MAP_FLAGS);

/// Sized by the agent at load (tables × table size); declared at the defaults.
#[map]
static STRAIT_MAGLEV4: Array<u32> = Array::pinned(MAGLEV_TABLES * MAGLEV_SIZE, 0);

#[map]
static STRAIT_AFF4: LruHashMap<Affinity4Key, Affinity4Value> = LruHashMap::pinned(AFFINITY_MAX, 0);

/// What a destination resolves to.
pub(crate) enum Lookup {
    /// Not a service address: leave the traffic alone.
    NotService,
    /// A service (its master entry); this backend was chosen.
    Backend {
        backend: Backend4,
        master: Service4Value,
    },
    /// A service that cannot be served.
    Refuse(DropReason),
}

/// Resolves `address:port/proto` (network order) to one of the service's backends: the one
/// `client` used last if the service has ClientIP affinity and it has not timed out; else, for
/// a flow from outside (`flow_hash` given) to a service with a Maglev table, the table's entry
/// for the flow, so every node picks the same backend for it; else one chosen at random.
/// Three or four lookups whatever the number of services.
#[inline(always)]
pub(crate) fn select_backend4(
    address: u32,
    port: u16,
    proto: u8,
    client: u64,
    flow_hash: Option<u32>,
) -> Lookup {
    let master_key = Service4Key::new(address, port, proto, 0);
    // SAFETY: the value is copied out at once; a concurrent update can only replace it whole.
    let Some(master) = (unsafe { STRAIT_SVC4.get(master_key) }).copied() else {
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
        // SAFETY: as above, copied out at once.
        && let Some(previous) = (unsafe { STRAIT_AFF4.get(affinity_key) }).copied()
        // The master's backend_id holds the affinity timeout.
        && now.wrapping_sub(previous.last_used) <= master.backend_id
        // SAFETY: as above, copied out at once.
        && let Some(backend) = (unsafe { STRAIT_BE4.get(previous.backend_id) }).copied()
    {
        remember(affinity_key, previous.backend_id, now);
        return Lookup::Backend { backend, master };
    }
    let maglev_size = crate::config::node().maglev_size;
    if master.maglev != 0
        && maglev_size != 0
        && let Some(hash) = flow_hash
    {
        let index = u32::from(master.maglev - 1) * maglev_size + hash % maglev_size;
        let Some(&backend_id) = STRAIT_MAGLEV4.get(index) else {
            return Lookup::Refuse(DropReason::BackendMissing);
        };
        // SAFETY: as above, copied out at once.
        return match (unsafe { STRAIT_BE4.get(backend_id) }).copied() {
            Some(backend) => {
                if affinity {
                    remember(affinity_key, backend_id, now);
                }
                Lookup::Backend { backend, master }
            }
            None => Lookup::Refuse(DropReason::BackendMissing),
        };
    }
    // SAFETY: a plain helper call with no arguments.
    let random = unsafe { bpf_get_prandom_u32() };
    // Slots are 1..=count; the writer fills slots before it raises the count.
    let slot = (random % u32::from(master.count)) as u16 + 1;
    let slot_key = Service4Key::new(address, port, proto, slot);
    // SAFETY: as above, copied out at once.
    let Some(entry) = (unsafe { STRAIT_SVC4.get(slot_key) }).copied() else {
        return Lookup::Refuse(DropReason::BackendMissing);
    };
    // SAFETY: as above, copied out at once.
    match (unsafe { STRAIT_BE4.get(entry.backend_id) }).copied() {
        Some(backend) => {
            if affinity {
                remember(affinity_key, entry.backend_id, now);
            }
            Lookup::Backend { backend, master }
        }
        None => Lookup::Refuse(DropReason::BackendMissing),
    }
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
