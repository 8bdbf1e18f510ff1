//! Pure planning of service map updates: which entries to write and delete, in which order.
//!
//! The order is the invariant that lets BPF programs read the maps while we write them
//! (Cilium's slot layout): new backends first, then the slots that changed, then the master entry
//! with the new count, then slots beyond the new count, then backends no service uses any more.
//! A reader that looked up the master and indexes slots `1..=count` never finds a hole.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use strait_ebpf_common::{
    maps::{BACKENDS_MAX, BACKENDS_V4, SERVICES_MAX, SERVICES_V4},
    service::{
        BACKEND_F_LOCAL, Backend4, Backend6, PROTO_TCP, PROTO_UDP, SVC_F_AFFINITY, SVC_F_EXTERNAL,
        SVC_F_LOCAL_ONLY, Service4Key, Service6Key, ServiceValue, ipv6_octets, ipv6_words,
    },
};

use super::{
    DataplaneError,
    maglev::{self, MaglevBackend},
};

/// Most backends one service may have: slots are numbered by a `u16`.
pub const MAX_BACKENDS: usize = u16::MAX as usize;

/// Transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number, as the maps store it.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => PROTO_TCP,
            Self::Udp => PROTO_UDP,
        }
    }

    /// The protocol for an IP protocol number read back from a map.
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            PROTO_TCP => Some(Self::Tcp),
            PROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Spelled as in the Kubernetes API (`ServicePort.protocol`).
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Self::Tcp),
            "UDP" => Ok(Self::Udp),
            _ => Err(format!("unknown protocol `{s}` (expected TCP or UDP)")),
        }
    }
}

/// Where clients reach a service: address, port and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl Frontend {
    fn key(self, slot: u16) -> ServiceKey {
        let (port, proto) = (self.port.to_be(), self.protocol.number());
        match self.address {
            IpAddr::V4(a) => {
                ServiceKey::V4(Service4Key::new(u32::from(a).to_be(), port, proto, slot))
            }
            IpAddr::V6(a) => {
                ServiceKey::V6(Service6Key::new(ipv6_words(a.octets()), port, proto, slot))
            }
        }
    }

    /// The frontend a map key belongs to, if its protocol is one we write.
    pub fn from_key(key: &ServiceKey) -> Option<Self> {
        let (address, port, proto) = match key {
            ServiceKey::V4(k) => (
                IpAddr::from(Ipv4Addr::from(u32::from_be(k.address))),
                k.port,
                k.proto,
            ),
            ServiceKey::V6(k) => (
                IpAddr::from(Ipv6Addr::from(ipv6_octets(k.address))),
                k.port,
                k.proto,
            ),
        };
        Some(Self {
            address,
            port: u16::from_be(port),
            protocol: Protocol::from_number(proto)?,
        })
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `SocketAddr`'s form: brackets around IPv6 addresses.
        write!(
            f,
            "{}/{}",
            SocketAddr::new(self.address, self.port),
            self.protocol
        )
    }
}

/// A key of the IPv4 or the IPv6 service map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    V4(Service4Key),
    V6(Service6Key),
}

impl ServiceKey {
    /// 0 for the master entry, 1..=count for slots.
    pub const fn slot(&self) -> u16 {
        match self {
            Self::V4(k) => k.slot,
            Self::V6(k) => k.slot,
        }
    }

    /// The same service's key for `slot`.
    pub const fn with_slot(self, slot: u16) -> Self {
        match self {
            Self::V4(k) => Self::V4(Service4Key { slot, ..k }),
            Self::V6(k) => Self::V6(Service6Key { slot, ..k }),
        }
    }
}

/// An entry of the IPv4 or the IPv6 backend map (backend ids are shared by both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendEntry {
    V4(Backend4),
    V6(Backend6),
}

impl BackendEntry {
    /// The backend's address and protocol, if the protocol is one we write.
    pub fn addr(&self) -> Option<(SocketAddr, Protocol)> {
        let (address, port, proto) = match self {
            Self::V4(b) => (
                IpAddr::from(Ipv4Addr::from(u32::from_be(b.address))),
                b.port,
                b.proto,
            ),
            Self::V6(b) => (
                IpAddr::from(Ipv6Addr::from(ipv6_octets(b.address))),
                b.port,
                b.proto,
            ),
        };
        Some((
            SocketAddr::new(address, u16::from_be(port)),
            Protocol::from_number(proto)?,
        ))
    }

    /// `BACKEND_F_*` bits.
    pub const fn flags(&self) -> u8 {
        match self {
            Self::V4(b) => b.flags,
            Self::V6(b) => b.flags,
        }
    }
}

/// A service as the dataplane sees it: a frontend and its backends, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub frontend: Frontend,
    /// Of the frontend's address family.
    pub backends: Vec<SocketAddr>,
    pub options: ServiceOptions,
}

/// How flows to a frontend are handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Traffic from outside the cluster arrives here (NodePort, LoadBalancer, external IP).
    pub external: bool,
    /// The traffic policy is Local: backends are node-local and flows keep the client address.
    pub local_only: bool,
    /// `sessionAffinity: ClientIP`, with its timeout in seconds.
    pub affinity_timeout: Option<u32>,
}

impl ServiceOptions {
    fn master(self, count: u16, rev_nat: u16, maglev: u16) -> ServiceValue {
        let mut flags = 0;
        if self.external {
            flags |= SVC_F_EXTERNAL;
        }
        if self.local_only {
            flags |= SVC_F_LOCAL_ONLY;
        }
        if self.affinity_timeout.is_some() {
            flags |= SVC_F_AFFINITY;
        }
        ServiceValue::master(
            count,
            rev_nat,
            flags,
            self.affinity_timeout.unwrap_or(0),
            maglev,
        )
    }

    fn from_master(master: &ServiceValue) -> Self {
        Self {
            external: master.flags & SVC_F_EXTERNAL != 0,
            local_only: master.flags & SVC_F_LOCAL_ONLY != 0,
            affinity_timeout: (master.flags & SVC_F_AFFINITY != 0).then_some(master.backend_id),
        }
    }
}

/// One of the node's own pod ranges (a dual-stack node has one per family): backends inside
/// it are local (reached without SNAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodCidr {
    pub network: IpAddr,
    pub prefix_len: u8,
}

impl PodCidr {
    /// Whether `address` is inside the range (never for an address of the other family).
    pub fn contains(self, address: IpAddr) -> bool {
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len.min(32)))
                    .unwrap_or(0);
                u32::from(address) & mask == u32::from(network) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len.min(128)))
                    .unwrap_or(0);
                u128::from(address) & mask == u128::from(network) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for PodCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (network, len) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected ADDRESS/PREFIX"))?;
        let network: IpAddr = network
            .parse()
            .map_err(|e| format!("`{s}`: bad address ({e})"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`{s}`: prefix length must be 0 to {max}"))?;
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

/// One write or delete on a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    PutBackend {
        id: u32,
        backend: BackendEntry,
    },
    PutService {
        key: ServiceKey,
        value: ServiceValue,
    },
    /// Fill Maglev table `table` (0-based) with backend ids.
    PutMaglev {
        table: u16,
        entries: Vec<u32>,
    },
    DeleteService {
        key: ServiceKey,
    },
    DeleteBackend {
        id: u32,
        /// Which backend map holds it.
        ipv6: bool,
    },
}

fn backend_entry(addr: SocketAddr, protocol: Protocol, local: bool) -> BackendEntry {
    let (port, proto) = (addr.port().to_be(), protocol.number());
    let flags = if local { BACKEND_F_LOCAL } else { 0 };
    match addr.ip() {
        IpAddr::V4(a) => BackendEntry::V4(Backend4 {
            address: u32::from(a).to_be(),
            port,
            proto,
            flags,
        }),
        IpAddr::V6(a) => BackendEntry::V6(Backend6 {
            address: ipv6_words(a.octets()),
            port,
            proto,
            flags,
        }),
    }
}

#[derive(Clone, Debug)]
struct ServiceState {
    rev_nat: u16,
    options: ServiceOptions,
    /// 1 + index of the Maglev table, 0 for none (as in the master entry).
    maglev: u16,
    /// Backend ids in slot order: `slots[0]` is slot 1.
    slots: Vec<u32>,
}

/// What the maps hold, mirrored in memory, and the planner of changes to it.
#[derive(Debug)]
pub struct ServiceTable {
    /// Entries the service and backend maps can hold; a plan that would exceed them is refused
    /// before anything is written.
    capacity: (usize, usize),
    /// Service map entries in use (masters and slots).
    service_entries: usize,
    pod_cidrs: Vec<PodCidr>,
    services: BTreeMap<Frontend, ServiceState>,
    /// Backend id by (address, protocol), with the number of slots pointing at it.
    backends: HashMap<(SocketAddr, Protocol), (u32, usize)>,
    /// The reverse of `backends`, so releasing an id costs one lookup, not a scan.
    backend_keys: HashMap<u32, (SocketAddr, Protocol)>,
    next_backend_id: u32,
    free_backend_ids: Vec<u32>,
    next_rev_nat: u16,
    free_rev_nats: Vec<u16>,
    /// Maglev table size (0: no Maglev) and how many tables the map holds.
    maglev_size: u32,
    maglev_tables: u16,
    next_maglev: u16,
    free_maglev: Vec<u16>,
}

impl Default for ServiceTable {
    fn default() -> Self {
        Self::with_capacity(SERVICES_MAX as usize, BACKENDS_MAX as usize)
    }
}

impl ServiceTable {
    /// An empty table for maps of the given sizes.
    pub fn with_capacity(services: usize, backends: usize) -> Self {
        Self {
            capacity: (services, backends),
            service_entries: 0,
            pod_cidrs: Vec::new(),
            services: BTreeMap::new(),
            backends: HashMap::new(),
            backend_keys: HashMap::new(),
            next_backend_id: 0,
            free_backend_ids: Vec::new(),
            next_rev_nat: 0,
            free_rev_nats: Vec::new(),
            maglev_size: 0,
            maglev_tables: 0,
            next_maglev: 0,
            free_maglev: Vec::new(),
        }
    }

    /// Gives frontends reached from outside a Maglev table of `size` entries each, in a map
    /// of `tables` tables. Services beyond that pick backends at random.
    pub fn set_maglev(&mut self, size: u32, tables: u16) {
        self.maglev_size = size;
        self.maglev_tables = tables;
    }

    fn alloc_maglev(&mut self) -> u16 {
        if let Some(index) = self.free_maglev.pop() {
            return index;
        }
        if self.next_maglev < self.maglev_tables {
            self.next_maglev += 1;
            return self.next_maglev;
        }
        0
    }

    /// Sets the node's pod range; backends written from now on inside it are marked local.
    pub fn set_pod_cidrs(&mut self, cidrs: Vec<PodCidr>) {
        self.pod_cidrs = cidrs;
    }

    /// Rebuilds the table from entries read back from pinned maps, so a restarted agent keeps
    /// the ids the programs already use. Slots that point at unknown backends are skipped.
    pub fn recover(
        services: impl IntoIterator<Item = (ServiceKey, ServiceValue)>,
        backends: impl IntoIterator<Item = (u32, BackendEntry)>,
    ) -> Self {
        let backends: HashMap<u32, BackendEntry> = backends.into_iter().collect();
        let mut masters = BTreeMap::new();
        let mut slots: BTreeMap<Frontend, BTreeMap<u16, u32>> = BTreeMap::new();
        for (key, value) in services {
            let Some(frontend) = Frontend::from_key(&key) else {
                continue;
            };
            if key.slot() == 0 {
                masters.insert(frontend, value);
            } else {
                slots
                    .entry(frontend)
                    .or_default()
                    .insert(key.slot(), value.backend_id);
            }
        }
        let mut table = Self::default();
        for (frontend, master) in masters {
            let by_slot = slots.remove(&frontend).unwrap_or_default();
            let ids: Vec<u32> = (1..=master.count)
                .map_while(|slot| by_slot.get(&slot).copied())
                .filter(|id| backends.contains_key(id))
                .collect();
            for &id in &ids {
                let Some((addr, protocol)) = backends[&id].addr() else {
                    continue;
                };
                table.backends.entry((addr, protocol)).or_insert((id, 0)).1 += 1;
                table.backend_keys.insert(id, (addr, protocol));
            }
            table.service_entries += 1 + ids.len();
            table.next_maglev = table.next_maglev.max(master.maglev);
            table.services.insert(
                frontend,
                ServiceState {
                    rev_nat: master.rev_nat,
                    options: ServiceOptions::from_master(&master),
                    maglev: master.maglev,
                    slots: ids,
                },
            );
        }
        table.next_backend_id = backends.keys().max().map_or(0, |max| max + 1);
        table.next_rev_nat = table
            .services
            .values()
            .map(|s| s.rev_nat)
            .max()
            .map_or(0, |max| max + 1);
        table
    }

    /// The services the table holds, with their backend ids in slot order.
    pub fn services(&self) -> impl Iterator<Item = (&Frontend, &[u32])> {
        self.services.iter().map(|(f, s)| (f, s.slots.as_slice()))
    }

    fn alloc_backend(
        &mut self,
        addr: SocketAddr,
        protocol: Protocol,
        ops: &mut Vec<MapOp>,
    ) -> Result<u32, DataplaneError> {
        if let Some((id, refs)) = self.backends.get_mut(&(addr, protocol)) {
            *refs += 1;
            return Ok(*id);
        }
        let id = match self.free_backend_ids.pop() {
            Some(id) => id,
            None => {
                let id = self.next_backend_id;
                self.next_backend_id = id
                    .checked_add(1)
                    .ok_or(DataplaneError::BackendIdsExhausted { map: BACKENDS_V4 })?;
                id
            }
        };
        self.backends.insert((addr, protocol), (id, 1));
        self.backend_keys.insert(id, (addr, protocol));
        let local = self.pod_cidrs.iter().any(|cidr| cidr.contains(addr.ip()));
        ops.push(MapOp::PutBackend {
            id,
            backend: backend_entry(addr, protocol, local),
        });
        Ok(id)
    }

    /// Drops one reference to backend `id`. When no slot uses it any more, frees the id and
    /// returns whether it was an IPv6 backend (which map to delete it from).
    fn release_backend(&mut self, id: u32) -> Option<bool> {
        let key = self.backend_keys.get(&id).copied()?;
        let entry = self.backends.get_mut(&key)?;
        entry.1 -= 1;
        if entry.1 > 0 {
            return None;
        }
        self.backends.remove(&key);
        self.backend_keys.remove(&id);
        self.free_backend_ids.push(id);
        Some(key.0.is_ipv6())
    }

    fn alloc_rev_nat(&mut self) -> u16 {
        self.free_rev_nats.pop().unwrap_or_else(|| {
            // Index 0 means "no reverse NAT"; ids start at 1.
            self.next_rev_nat = self.next_rev_nat.max(1);
            let id = self.next_rev_nat;
            self.next_rev_nat = self.next_rev_nat.wrapping_add(1);
            id
        })
    }

    /// Plans the writes that make the maps hold `spec`, and records it as applied.
    pub fn upsert(&mut self, spec: &ServiceSpec) -> Result<Vec<MapOp>, DataplaneError> {
        let frontend = spec.frontend;
        if spec.backends.len() > MAX_BACKENDS {
            return Err(DataplaneError::TooManyBackends {
                frontend: frontend.to_string(),
                count: spec.backends.len(),
                max: MAX_BACKENDS,
            });
        }
        if let Some(backend) = spec
            .backends
            .iter()
            .find(|b| b.is_ipv4() != frontend.address.is_ipv4())
        {
            return Err(DataplaneError::FamilyMismatch {
                frontend: frontend.to_string(),
                backend: *backend,
            });
        }
        let old = self.services.get(&frontend).cloned();
        let old_slots = old
            .as_ref()
            .map(|state| state.slots.clone())
            .unwrap_or_default();
        let old_len = old_slots.len();
        self.check_capacity(spec, old_len)?;
        let mut ops = Vec::new();
        let rev_nat = match self.services.get(&frontend) {
            Some(state) => state.rev_nat,
            None => self.alloc_rev_nat(),
        };

        // 1. Backends (new ones are written here, before anything points at them).
        let mut new_slots = Vec::with_capacity(spec.backends.len());
        for &addr in &spec.backends {
            new_slots.push(self.alloc_backend(addr, frontend.protocol, &mut ops)?);
        }
        // 1b. The Maglev table, before the master can point at it.
        let maglev = self.plan_maglev(spec, old.as_ref(), &new_slots, &mut ops)?;
        // 2. Slots whose backend changed.
        for (index, &id) in new_slots.iter().enumerate() {
            if old_slots.get(index) != Some(&id) {
                ops.push(MapOp::PutService {
                    key: frontend.key(slot_number(index)),
                    value: ServiceValue::slot(id, rev_nat),
                });
            }
        }
        // 3. The master, with the new count (unless count and options are as they were).
        let master_unchanged = old.as_ref().is_some_and(|o| {
            o.slots.len() == new_slots.len() && o.options == spec.options && o.maglev == maglev
        });
        if !master_unchanged {
            ops.push(MapOp::PutService {
                key: frontend.key(0),
                value: spec.options.master(new_slots.len() as u16, rev_nat, maglev),
            });
        }
        // 4. Slots beyond the new count.
        for index in new_slots.len()..old_slots.len() {
            ops.push(MapOp::DeleteService {
                key: frontend.key(slot_number(index)),
            });
        }
        // 5. Backends nothing points at any more (old references released last).
        for id in old_slots {
            if let Some(ipv6) = self.release_backend(id) {
                ops.push(MapOp::DeleteBackend { id, ipv6 });
            }
        }
        // A new service adds its master too; an existing one already counted it.
        let old_entries = if old_len == 0 && !self.services.contains_key(&frontend) {
            0
        } else {
            old_len + 1
        };
        self.service_entries = self.service_entries + new_slots.len() + 1 - old_entries;
        self.services.insert(
            frontend,
            ServiceState {
                rev_nat,
                options: spec.options,
                maglev,
                slots: new_slots,
            },
        );
        Ok(ops)
    }

    /// Refuses, before any write, a spec the maps could not hold whole.
    fn check_capacity(&self, spec: &ServiceSpec, old_len: usize) -> Result<(), DataplaneError> {
        let existing = self.services.contains_key(&spec.frontend);
        let old_entries = if existing { old_len + 1 } else { 0 };
        let needed = self.service_entries - old_entries + spec.backends.len() + 1;
        if needed > self.capacity.0 {
            return Err(DataplaneError::MapFull {
                map: SERVICES_V4,
                frontend: spec.frontend.to_string(),
                capacity: self.capacity.0,
            });
        }
        let new_backends = spec
            .backends
            .iter()
            .filter(|b| !self.backends.contains_key(&(**b, spec.frontend.protocol)))
            .count();
        if self.backends.len() + new_backends > self.capacity.1 {
            return Err(DataplaneError::MapFull {
                map: BACKENDS_V4,
                frontend: spec.frontend.to_string(),
                capacity: self.capacity.1,
            });
        }
        Ok(())
    }

    /// Plans the changes that make the maps hold exactly `desired`: every spec upserted, every
    /// other service deleted (after the upserts, so a renamed frontend never leaves a gap).
    pub fn sync(&mut self, desired: &[ServiceSpec]) -> Result<Vec<MapOp>, DataplaneError> {
        let mut ops = Vec::new();
        for spec in desired {
            ops.extend(self.upsert(spec)?);
        }
        let wanted: std::collections::BTreeSet<Frontend> =
            desired.iter().map(|s| s.frontend).collect();
        let stale: Vec<Frontend> = self
            .services
            .keys()
            .filter(|f| !wanted.contains(f))
            .copied()
            .collect();
        for frontend in stale {
            ops.extend(self.delete(frontend));
        }
        Ok(ops)
    }

    /// Plans the removal of a service: the master first, so lookups stop at once, then its
    /// slots, then backends no other service uses. Unknown services plan nothing.
    pub fn delete(&mut self, frontend: Frontend) -> Vec<MapOp> {
        let Some(state) = self.services.remove(&frontend) else {
            return Vec::new();
        };
        self.service_entries -= state.slots.len() + 1;
        let mut ops = vec![MapOp::DeleteService {
            key: frontend.key(0),
        }];
        for index in 0..state.slots.len() {
            ops.push(MapOp::DeleteService {
                key: frontend.key(slot_number(index)),
            });
        }
        for id in state.slots {
            if let Some(ipv6) = self.release_backend(id) {
                ops.push(MapOp::DeleteBackend { id, ipv6 });
            }
        }
        self.free_rev_nats.push(state.rev_nat);
        if state.maglev != 0 {
            self.free_maglev.push(state.maglev);
        }
        ops
    }

    /// Plans the Maglev table of a frontend reached from outside and returns its master value
    /// (1 + table index, or 0 for random choice). The table is rewritten only when the
    /// backends changed; entries are the node-local ids of backends keyed by address, so every
    /// node's table sends a flow to the same backend.
    fn plan_maglev(
        &mut self,
        spec: &ServiceSpec,
        old: Option<&ServiceState>,
        ids: &[u32],
        ops: &mut Vec<MapOp>,
    ) -> Result<u16, DataplaneError> {
        let old_maglev = old.map_or(0, |o| o.maglev);
        let wanted = spec.options.external && self.maglev_size != 0 && !ids.is_empty();
        if !wanted {
            if old_maglev != 0 {
                self.free_maglev.push(old_maglev);
            }
            return Ok(0);
        }
        let maglev = if old_maglev != 0 {
            old_maglev
        } else {
            self.alloc_maglev()
        };
        let unchanged = old.is_some_and(|o| o.maglev == maglev && o.slots == ids);
        if maglev == 0 || unchanged {
            return Ok(maglev);
        }
        let backends: Vec<MaglevBackend> = spec
            .backends
            .iter()
            .zip(ids)
            .map(|(addr, &id)| MaglevBackend::new(id, format!("{addr}/{}", spec.frontend.protocol)))
            .collect();
        let entries = maglev::table(&backends, self.maglev_size).map_err(|source| {
            DataplaneError::Maglev {
                frontend: spec.frontend.to_string(),
                source,
            }
        })?;
        ops.push(MapOp::PutMaglev {
            table: maglev - 1,
            entries,
        });
        Ok(maglev)
    }
}

/// Slot number of the backend at `index` in a service's list (slots start at 1).
fn slot_number(index: usize) -> u16 {
    // `upsert` rejects more than MAX_BACKENDS backends, so this cannot overflow.
    u16::try_from(index + 1).expect("slot index bounded by MAX_BACKENDS")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend(port: u16) -> Frontend {
        Frontend {
            address: Ipv4Addr::new(10, 96, 0, 10).into(),
            port,
            protocol: Protocol::Tcp,
        }
    }

    fn spec(port: u16, backends: &[&str]) -> ServiceSpec {
        ServiceSpec {
            frontend: frontend(port),
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
            options: ServiceOptions::default(),
        }
    }

    /// A short, readable form of a plan: "B+0" puts backend 0, "S1=0" points slot 1 at
    /// backend 0, "M2" writes the master with count 2, "S3-" deletes slot 3, "B-0" deletes backend 0.
    fn shape(ops: &[MapOp]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                MapOp::PutBackend { id, .. } => format!("B+{id}"),
                MapOp::PutService { key, value } if key.slot() == 0 => format!("M{}", value.count),
                MapOp::PutService { key, value } => format!("S{}={}", key.slot(), value.backend_id),
                MapOp::DeleteService { key } if key.slot() == 0 => "M-".to_owned(),
                MapOp::DeleteService { key } => format!("S{}-", key.slot()),
                MapOp::DeleteBackend { id, .. } => format!("B-{id}"),
                MapOp::PutMaglev { table, .. } => format!("T{table}"),
            })
            .collect()
    }

    #[test]
    fn a_new_service_writes_backends_then_slots_then_master() {
        let mut table = ServiceTable::default();
        let ops = table
            .upsert(&spec(80, &["10.0.1.2:8080", "10.0.1.3:8080"]))
            .unwrap();
        assert_eq!(shape(&ops), ["B+0", "B+1", "S1=0", "S2=1", "M2"]);
    }

    #[test]
    fn shrinking_lowers_the_count_before_deleting_slots_and_backends() {
        let mut table = ServiceTable::default();
        table
            .upsert(&spec(
                80,
                &["10.0.1.2:8080", "10.0.1.3:8080", "10.0.1.4:8080"],
            ))
            .unwrap();
        let ops = table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        assert_eq!(shape(&ops), ["M1", "S2-", "S3-", "B-1", "B-2"]);
    }

    #[test]
    fn replacing_a_backend_rewrites_only_its_slot() {
        let mut table = ServiceTable::default();
        table
            .upsert(&spec(80, &["10.0.1.2:8080", "10.0.1.3:8080"]))
            .unwrap();
        let ops = table
            .upsert(&spec(80, &["10.0.1.2:8080", "10.0.1.9:8080"]))
            .unwrap();
        assert_eq!(
            shape(&ops),
            ["B+2", "S2=2", "B-1"],
            "the count is unchanged: no master write"
        );
    }

    #[test]
    fn backends_shared_by_services_live_until_the_last_user_goes() {
        let mut table = ServiceTable::default();
        table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        let ops = table.upsert(&spec(81, &["10.0.1.2:8080"])).unwrap();
        assert_eq!(
            shape(&ops),
            ["S1=0", "M1"],
            "the backend is reused, not written again"
        );
        assert_eq!(shape(&table.delete(frontend(80))), ["M-", "S1-"]);
        assert_eq!(shape(&table.delete(frontend(81))), ["M-", "S1-", "B-0"]);
    }

    #[test]
    fn a_service_without_backends_has_a_master_with_count_zero() {
        let mut table = ServiceTable::default();
        let ops = table.upsert(&spec(80, &[])).unwrap();
        assert_eq!(shape(&ops), ["M0"]);
    }

    #[test]
    fn deleting_an_unknown_service_plans_nothing() {
        assert!(ServiceTable::default().delete(frontend(80)).is_empty());
    }

    #[test]
    fn freed_backend_ids_are_reused() {
        let mut table = ServiceTable::default();
        table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        table.delete(frontend(80));
        let ops = table.upsert(&spec(81, &["10.0.1.7:8080"])).unwrap();
        assert_eq!(shape(&ops), ["B+0", "S1=0", "M1"]);
    }

    #[test]
    fn recovery_from_maps_keeps_ids_and_plans_no_rewrite() {
        let mut table = ServiceTable::default();
        let ops = table
            .upsert(&spec(80, &["10.0.1.2:8080", "10.0.1.3:8080"]))
            .unwrap();
        let mut services = Vec::new();
        let mut backends = Vec::new();
        for op in ops {
            match op {
                MapOp::PutService { key, value } => services.push((key, value)),
                MapOp::PutBackend { id, backend } => backends.push((id, backend)),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut recovered = ServiceTable::recover(services, backends);
        let ops = recovered
            .upsert(&spec(80, &["10.0.1.2:8080", "10.0.1.3:8080"]))
            .unwrap();
        assert!(
            ops.is_empty(),
            "an unchanged service plans nothing: {:?}",
            shape(&ops)
        );
        let ops = recovered.upsert(&spec(81, &["10.0.1.5:8080"])).unwrap();
        assert_eq!(shape(&ops), ["B+2", "S1=2", "M1"], "new ids do not collide");
    }

    #[test]
    fn too_many_backends_is_an_error_naming_the_service() {
        let mut table = ServiceTable::default();
        let many = ServiceSpec {
            frontend: frontend(80),
            backends: vec!["10.0.0.1:1".parse().unwrap(); MAX_BACKENDS + 1],
            options: ServiceOptions::default(),
        };
        let err = table.upsert(&many).unwrap_err().to_string();
        assert!(err.contains("10.96.0.10:80/TCP"), "{err}");
    }

    #[test]
    fn a_service_that_would_overflow_the_map_is_refused_before_any_write() {
        let mut table = ServiceTable::with_capacity(4, 16);
        table
            .upsert(&spec(80, &["10.0.1.2:8080", "10.0.1.3:8080"]))
            .unwrap();
        let err = table
            .upsert(&spec(81, &["10.0.1.4:8080"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STRAIT_SVC4") && err.contains("10.96.0.10:81/TCP") && err.contains('4'),
            "{err}"
        );
        assert_eq!(
            table.services().count(),
            1,
            "nothing recorded for the refused service"
        );
        // Shrinking the first service frees room.
        table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        table.upsert(&spec(81, &["10.0.1.4:8080"])).unwrap();
    }

    #[test]
    fn backends_in_the_node_pod_cidr_are_marked_local() {
        let mut table = ServiceTable::default();
        table.set_pod_cidrs(vec![
            "10.244.1.0/24".parse().unwrap(),
            "fd00:244:1::/64".parse().unwrap(),
        ]);
        let ops = table
            .upsert(&spec(80, &["10.244.1.5:80", "10.244.2.5:80"]))
            .unwrap();
        let flags: Vec<u8> = ops
            .iter()
            .filter_map(|op| match op {
                MapOp::PutBackend { backend, .. } => Some(backend.flags()),
                _ => None,
            })
            .collect();
        assert_eq!(flags, [BACKEND_F_LOCAL, 0]);
    }

    #[test]
    fn options_become_master_flags_and_survive_recovery() {
        let mut table = ServiceTable::default();
        let mut external = spec(30080, &["10.0.1.2:8080"]);
        external.options = ServiceOptions {
            external: true,
            local_only: true,
            affinity_timeout: Some(10_800),
        };
        let ops = table.upsert(&external).unwrap();
        let master = ops
            .iter()
            .find_map(|op| match op {
                MapOp::PutService { key, value } if key.slot() == 0 => Some(*value),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            master.flags,
            SVC_F_EXTERNAL | SVC_F_LOCAL_ONLY | SVC_F_AFFINITY
        );
        assert_eq!(
            master.backend_id, 10_800,
            "the master carries the affinity timeout"
        );
        assert_eq!(ServiceOptions::from_master(&master), external.options);
    }

    #[test]
    fn sync_deletes_what_is_no_longer_desired() {
        let mut table = ServiceTable::default();
        table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        table.upsert(&spec(81, &["10.0.1.3:8080"])).unwrap();
        let ops = table.sync(&[spec(80, &["10.0.1.2:8080"])]).unwrap();
        assert_eq!(shape(&ops), ["M-", "S1-", "B-1"]);
        assert_eq!(table.services().count(), 1);
    }

    #[test]
    fn pod_cidr_membership() {
        let cidr: PodCidr = "10.244.1.0/24".parse().unwrap();
        assert!(cidr.contains(Ipv4Addr::new(10, 244, 1, 200).into()));
        assert!(!cidr.contains(Ipv4Addr::new(10, 244, 2, 1).into()));
        assert!(
            !cidr.contains("fd00::1".parse().unwrap()),
            "IPv6 is never in an IPv4 range"
        );
        assert!("10.244.1.0/33".parse::<PodCidr>().is_err());
        let v6: PodCidr = "fd00:244:1::/64".parse().unwrap();
        assert!(v6.contains("fd00:244:1::9".parse().unwrap()));
        assert!(!v6.contains("fd00:244:2::9".parse().unwrap()));
        assert!(!v6.contains(Ipv4Addr::new(10, 244, 1, 1).into()));
        let all: PodCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(192, 0, 2, 1).into()));
    }

    #[test]
    fn external_frontends_get_a_maglev_table_of_their_backends() {
        let mut table = ServiceTable::default();
        table.set_maglev(251, 2);
        let mut external = spec(30080, &["10.0.1.2:8080", "10.0.1.3:8080"]);
        external.options.external = true;
        let ops = table.upsert(&external).unwrap();
        assert_eq!(
            shape(&ops),
            ["B+0", "B+1", "T0", "S1=0", "S2=1", "M2"],
            "table before master"
        );
        let entries = ops
            .iter()
            .find_map(|op| match op {
                MapOp::PutMaglev { entries, .. } => Some(entries.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(entries.len(), 251);
        assert!(entries.iter().all(|id| *id == 0 || *id == 1));

        let unchanged = table.upsert(&external).unwrap();
        assert!(unchanged.is_empty(), "same backends: no table rewrite");

        // Cluster-internal frontends pick at random: no table.
        let internal = table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        assert!(!shape(&internal).iter().any(|op| op.starts_with('T')));
    }

    #[test]
    fn maglev_tables_run_out_gracefully_and_are_reused() {
        let mut table = ServiceTable::default();
        table.set_maglev(7, 1);
        let mut a = spec(30080, &["10.0.1.2:8080"]);
        a.options.external = true;
        let mut b = spec(30081, &["10.0.1.3:8080"]);
        b.options.external = true;
        assert!(shape(&table.upsert(&a).unwrap()).contains(&"T0".to_owned()));
        assert!(
            !shape(&table.upsert(&b).unwrap())
                .iter()
                .any(|op| op.starts_with('T')),
            "no table left: b falls back to random choice"
        );
        table.delete(a.frontend);
        table.delete(b.frontend);
        assert!(
            shape(&table.upsert(&b).unwrap()).contains(&"T0".to_owned()),
            "a's table is reused"
        );
    }

    #[test]
    fn ipv6_services_use_the_ipv6_maps_and_share_backend_ids() {
        let mut table = ServiceTable::default();
        table.upsert(&spec(80, &["10.0.1.2:8080"])).unwrap();
        let v6 = ServiceSpec {
            frontend: Frontend {
                address: "fd00:96::10".parse().unwrap(),
                port: 80,
                protocol: Protocol::Tcp,
            },
            backends: vec!["[fd00:1::2]:8080".parse().unwrap()],
            options: ServiceOptions::default(),
        };
        let ops = table.upsert(&v6).unwrap();
        assert_eq!(
            shape(&ops),
            ["B+1", "S1=1", "M1"],
            "ids continue across families"
        );
        assert!(ops.iter().all(|op| match op {
            MapOp::PutService { key, .. } => matches!(key, ServiceKey::V6(_)),
            MapOp::PutBackend { backend, .. } => matches!(backend, BackendEntry::V6(_)),
            _ => false,
        }));
        assert_eq!(v6.frontend.to_string(), "[fd00:96::10]:80/TCP");
        let ops = table.delete(v6.frontend);
        assert!(ops.contains(&MapOp::DeleteBackend { id: 1, ipv6: true }));
    }

    #[test]
    fn a_backend_of_the_other_family_is_refused() {
        let mut table = ServiceTable::default();
        let err = table
            .upsert(&spec(80, &["[fd00::2]:8080"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10.96.0.10:80/TCP") && err.contains("[fd00::2]:8080"),
            "{err}"
        );
    }
}
