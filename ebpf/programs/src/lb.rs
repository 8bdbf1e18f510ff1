//! Service load balancing: the service map in slot layout, the backend map, and backend choice.

use aya_ebpf::{helpers::bpf_get_prandom_u32, macros::map, maps::HashMap};
use strait_ebpf_common::{
    drop::DropReason,
    maps::{BACKENDS_MAX, LB_MAP_FLAGS, SERVICES_MAX},
    service::{Backend4, Service4Key, Service4Value},
};

#[map]
static STRAIT_SVC4: HashMap<Service4Key, Service4Value> =
    HashMap::pinned(SERVICES_MAX, LB_MAP_FLAGS);

#[map]
static STRAIT_BE4: HashMap<u32, Backend4> = HashMap::pinned(BACKENDS_MAX, LB_MAP_FLAGS);

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

/// Resolves `address:port/proto` (network order) to one of the service's backends, chosen at
/// random: three hash lookups whatever the number of services.
#[inline(always)]
pub(crate) fn select_backend4(address: u32, port: u16, proto: u8) -> Lookup {
    let master_key = Service4Key::new(address, port, proto, 0);
    // SAFETY: the value is copied out at once; a concurrent update can only replace it whole.
    let Some(master) = (unsafe { STRAIT_SVC4.get(master_key) }).copied() else {
        return Lookup::NotService;
    };
    if master.count == 0 {
        return Lookup::Refuse(DropReason::NoBackend);
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
        Some(backend) => Lookup::Backend { backend, master },
        None => Lookup::Refuse(DropReason::BackendMissing),
    }
}
